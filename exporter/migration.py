"""redis_exporter's flags and `REDIS_EXPORTER_*` variables, so that a fleet moves over without
surprises: each one either means the same here (translated to this exporter's flag or variable)
or stops start-up with one line saying what to use instead. None is ignored. docs/migrating.md
holds the same table for people; tests/test_migration.py runs every row of it against the CLI.

Go's flag package takes `-name` as well as `--name`, `-name=value` or `-name value`, and a bare
`-name` for a boolean; the same spellings are taken here for its flags and for ours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from exporter.config import ConfigError

METRICS_DOC = "docs/metrics.md (Not exported)"
WEB_CONFIG = "--web.config.file (tls_server_config)"
BASIC_AUTH = "--web.config.file (basic_auth_users)"
_TRUE = {"1", "t", "true", "yes"}  # Go's strconv.ParseBool, lower-cased, plus yes
_FALSE = {"0", "f", "false", "no"}


@dataclass(frozen=True, slots=True)
class GoFlag:
    """`ours`: the flag here that takes the value (after `convert`); a boolean Go flag mapped to
    one of our switches passes `--ours` when true. Without `ours`, only the values in
    `accepted` (which behave the same here) are taken; any other stops start-up with `hint`."""

    name: str
    env: str | None
    default: str
    ours: str | None = None
    our_env: str | None = None
    switch: bool = False
    convert: Callable[[str], str | None] | None = None
    accepted: frozenset[str] = frozenset()
    hint: str = ""

    @property
    def boolean(self) -> bool:
        return self.default in ("true", "false")


def _bool(value: str, where: str) -> str:
    low = value.strip().lower()
    if low in _TRUE:
        return "true"
    if low in _FALSE:
        return "false"
    raise ConfigError(f"{where}: {value!r} is not true or false")


def _log_level(value: str) -> str:
    low = value.strip().lower()
    return {"trace": "debug", "warning": "warn", "fatal": "error", "panic": "error"}.get(low, low)


def _debug(value: str) -> str | None:
    return "debug" if value == "true" else None


def _log_format(value: str) -> str:
    return "logfmt" if value.strip().lower() in ("txt", "text", "logfmt") else value


def _same(name: str, env: str | None, default: str, our_env: str | None = None) -> GoFlag:
    return GoFlag(name, env, default, ours=f"--{name}", our_env=our_env)


def _unbuilt(name: str, env: str, default: str, hint: str = METRICS_DOC,
             also: Sequence[str] = ()) -> GoFlag:
    return GoFlag(name, env, default, accepted=frozenset([default, *also]), hint=hint)


def _env(suffix: str) -> str:
    return f"REDIS_EXPORTER_{suffix}"


GO_FLAGS: tuple[GoFlag, ...] = (
    _same("redis.addr", "REDIS_ADDR", "redis://localhost:6379", "REDIS_ADDR"),
    _same("redis.user", "REDIS_USER", "", "REDIS_USER"),
    GoFlag("redis.password", "REDIS_PASSWORD", "", our_env="REDIS_PASSWORD",
           hint="--redis.password-file (a password on a command line shows in `ps`; the "
           "REDIS_PASSWORD variable works)"),
    _same("redis.password-file", "REDIS_PASSWORD_FILE", "", "REDIS_PASSWORD_FILE"),
    _unbuilt("namespace", _env("NAMESPACE"), "redis",
             hint="nothing: metric names keep redis_exporter's `redis_` prefix (docs/metrics.md)"),
    _unbuilt("check-keys", _env("CHECK_KEYS"), ""),
    _unbuilt("check-single-keys", _env("CHECK_SINGLE_KEYS"), ""),
    _unbuilt("check-key-groups", _env("CHECK_KEY_GROUPS"), ""),
    _unbuilt("check-streams", _env("CHECK_STREAMS"), ""),
    _unbuilt("check-single-streams", _env("CHECK_SINGLE_STREAMS"), ""),
    _unbuilt("streams-exclude-consumer-metrics", _env("STREAMS_EXCLUDE_CONSUMER_METRICS"),
             "false"),
    _unbuilt("count-keys", _env("COUNT_KEYS"), ""),
    _unbuilt("check-keys-batch-size", _env("CHECK_KEYS_BATCH_SIZE"), "1000"),
    _unbuilt("script", _env("SCRIPT"), ""),
    _unbuilt("lua-script-read-only", _env("LUA_SCRIPT_READ_ONLY"), "false"),
    GoFlag("web.listen-address", _env("WEB_LISTEN_ADDRESS"), ":9121",
           ours="--web.listen-address", our_env="EXPORTER_WEB_LISTEN_ADDRESS"),
    _unbuilt("web.telemetry-path", _env("WEB_TELEMETRY_PATH"), "/metrics",
             hint="nothing: metrics are served on /metrics only; set the Prometheus job's "
             "metrics_path to /metrics"),
    _unbuilt("config-command", _env("CONFIG_COMMAND"), "CONFIG",
             hint="nothing: CONFIG GET is sent as CONFIG, and where it is refused or renamed "
             "away the config metrics are left out (docs/metrics.md)"),
    GoFlag("connection-timeout", _env("CONNECTION_TIMEOUT"), "15s",
           hint="--scrape.timeout (it bounds the whole scrape, connecting included)"),
    GoFlag("tls-client-key-file", _env("TLS_CLIENT_KEY_FILE"), "",
           ours="--redis.tls-key-file", our_env="REDIS_TLS_KEY_FILE"),
    GoFlag("tls-client-cert-file", _env("TLS_CLIENT_CERT_FILE"), "",
           ours="--redis.tls-cert-file", our_env="REDIS_TLS_CERT_FILE"),
    GoFlag("tls-ca-cert-file", _env("TLS_CA_CERT_FILE"), "",
           ours="--redis.tls-ca-file", our_env="REDIS_TLS_CA_FILE"),
    GoFlag("tls-server-name", _env("TLS_SERVER_NAME"), "",
           ours="--redis.tls-server-name", our_env="REDIS_TLS_SERVER_NAME"),
    _unbuilt("tls-server-key-file", _env("TLS_SERVER_KEY_FILE"), "", hint=WEB_CONFIG),
    _unbuilt("tls-server-cert-file", _env("TLS_SERVER_CERT_FILE"), "", hint=WEB_CONFIG),
    _unbuilt("tls-server-ca-cert-file", _env("TLS_SERVER_CA_CERT_FILE"), "",
             hint="--web.config.file (tls_server_config.client_ca_file)"),
    _unbuilt("tls-server-min-version", _env("TLS_SERVER_MIN_VERSION"), "TLS1.2",
             hint="--web.config.file (tls_server_config.min_version)"),
    _unbuilt("max-distinct-key-groups", _env("MAX_DISTINCT_KEY_GROUPS"), "100"),
    GoFlag("debug", _env("DEBUG"), "false", ours="--log.level", our_env="EXPORTER_LOG_LEVEL",
           convert=_debug),
    GoFlag("log-level", _env("LOG_LEVEL"), "INFO", ours="--log.level",
           our_env="EXPORTER_LOG_LEVEL", convert=_log_level),
    GoFlag("log-format", _env("LOG_FORMAT"), "txt", ours="--log.format",
           our_env="EXPORTER_LOG_FORMAT", convert=_log_format),
    _unbuilt("set-client-name", _env("SET_CLIENT_NAME"), "true", also=["false"]),
    _unbuilt("is-tile38", _env("IS_TILE38"), "false"),
    _unbuilt("is-cluster", _env("IS_CLUSTER"), "false"),
    _unbuilt("cluster-discover-hostnames", _env("CLUSTER_DISCOVER_HOSTNAMES"), "false"),
    _unbuilt("export-client-list", _env("EXPORT_CLIENT_LIST"), "false"),
    _unbuilt("export-client-port", _env("EXPORT_CLIENT_PORT"), "false"),
    _same("version", None, "false"),
    _unbuilt("redis-only-metrics", _env("REDIS_ONLY_METRICS"), "false",
             hint="nothing: the sidecar's own process_* metrics are always exported; drop "
             "the flag (docs/metrics.md)"),
    _unbuilt("include-go-runtime-metrics", _env("INCLUDE_GO_RUNTIME_METRICS"), "false"),
    _unbuilt("ping-on-connect", _env("PING_ON_CONNECT"), "false"),
    _unbuilt("include-config-metrics", _env("INCL_CONFIG_METRICS"), "false"),
    _unbuilt("include-modules-metrics", _env("INCL_MODULES_METRICS"), "false"),
    _unbuilt("include-search-indexes-metrics", _env("INCL_SEARCH_INDEXES_METRICS"), "false"),
    _unbuilt("include-sentinel-peer-info", _env("INCL_SENTINEL_PEER_INFO"), "false"),
    _unbuilt("check-search-indexes", _env("CHECK_SEARCH_INDEXES"), ".*"),
    _unbuilt("disable-exporting-key-values", _env("DISABLE_EXPORTING_KEY_VALUES"), "false"),
    _unbuilt("exclude-latency-histogram-metrics", _env("EXCLUDE_LATENCY_HISTOGRAM_METRICS"),
             "false", also=["true"]),
    _unbuilt("redact-config-metrics", _env("REDACT_CONFIG_METRICS"), "true"),
    _unbuilt("include-system-metrics", _env("INCL_SYSTEM_METRICS"), "false", also=["true"]),
    _unbuilt("include-rdb-file-size-metric", _env("INCL_RDB_FILE_SIZE_METRIC"), "false"),
    GoFlag("skip-tls-verification", _env("SKIP_TLS_VERIFICATION"), "false",
           ours="--redis.tls-insecure-skip-verify", our_env="REDIS_TLS_INSECURE_SKIP_VERIFY",
           switch=True),
    _unbuilt("skip-checkkeys-for-role-master", _env("SKIP_CHECKKEYS_FOR_ROLE_MASTER"), "false"),
    _unbuilt("basic-auth-username", _env("BASIC_AUTH_USERNAME"), "", hint=BASIC_AUTH),
    _unbuilt("basic-auth-password", _env("BASIC_AUTH_PASSWORD"), "", hint=BASIC_AUTH),
    _unbuilt("basic-auth-hash-password", _env("BASIC_AUTH_HASH_PASSWORD"), "", hint=BASIC_AUTH),
    _unbuilt("disable-scrape-endpoint", _env("DISABLE_SCRAPE_ENDPOINT"), "false",
             hint="nothing: /scrape serves only the config file's scrape_targets and refuses "
             "every target without them; drop the flag"),
    _unbuilt("include-metrics-for-empty-databases", _env("INCL_METRICS_FOR_EMPTY_DATABASES"),
             "true", also=["false"]),
    _unbuilt("append-instance-role-label", _env("APPEND_INSTANCE_ROLE_LABEL"), "false"),
)
BY_NAME: Mapping[str, GoFlag] = {f.name: f for f in GO_FLAGS}


def _refusal(flag: GoFlag, where: str, value: str) -> ConfigError:
    if flag.name == "redis.password":
        return ConfigError(f"{where} is not taken on a command line: use {flag.hint}")
    shown = "" if "password" in flag.name else f" {value!r}"
    if flag.hint.startswith("nothing:"):
        return ConfigError(f"{where}{shown} is redis_exporter's, not taken here: "
                           f"{flag.hint.removeprefix('nothing: ')}")
    verb = "see" if flag.hint.startswith("docs/") else "use"
    return ConfigError(f"{where}{shown} is redis_exporter's, not built here: {verb} {flag.hint}")


def _translate(flag: GoFlag, value: str, where: str) -> str | None:
    """The value for our flag (None: nothing to pass), or ConfigError."""
    if flag.boolean:
        value = _bool(value, where)
    if flag.ours is None or flag.name == "redis.password":
        if flag.name != "redis.password" and value in flag.accepted:
            return None
        raise _refusal(flag, where, value)
    if flag.switch:
        return "true" if value == "true" else None
    return flag.convert(value) if flag.convert else value


def translate_argv(argv: Sequence[str], our_flags: frozenset[str]) -> list[str]:
    """Our flags with one dash get two; redis_exporter's are replaced by ours or refused."""
    out: list[str] = []
    late: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "--":
            return out + late + args[i - 1:]
        if not token.startswith("-") or len(token) < 2 or token[1].isdigit():
            out.append(token)
            continue
        body = token[2:] if token.startswith("--") else token[1:]
        if not body or body.startswith("-"):
            out.append(token)
            continue
        name, eq, value = body.partition("=")
        flag = BY_NAME.get(name)
        if flag is None or flag.ours == f"--{name}":
            out.append(f"--{body}" if flag or f"--{name}" in our_flags else token)
            continue
        if not eq:
            if flag.boolean:
                value = "true"
            elif i < len(args):
                value, i = args[i], i + 1
            else:
                raise ConfigError(f"--{name}: expected a value")
        ours = _translate(flag, value, f"--{name}")
        if ours is not None:
            # redis_exporter's -debug wins over its -log-level, wherever it stands
            target = late if flag.name == "debug" else out
            target.append(str(flag.ours) if flag.switch else f"{flag.ours}={ours}")
    return out + late


def translate_env(env: Mapping[str, str]) -> dict[str, str]:
    """Our variables, with redis_exporter's translated; a variable of each kind for the same
    setting must agree."""
    out = dict(env)
    known = {f.env for f in GO_FLAGS}
    for name in sorted(env):
        if name.startswith("REDIS_EXPORTER_") and name not in known:
            raise ConfigError(f"{name} is not a variable of redis_exporter's (see "
                              "docs/migrating.md) nor of this exporter's")
    for flag in GO_FLAGS:
        if flag.env is None or flag.env not in env or flag.env == flag.our_env:
            continue
        ours = _translate(flag, env[flag.env], flag.env)
        if ours is None or flag.our_env is None:
            continue
        if flag.switch:
            ours = "true"
        have = env.get(flag.our_env)
        if have is not None and have != ours:
            raise ConfigError(f"{flag.env} and {flag.our_env} disagree: set only {flag.our_env}")
        out[flag.our_env] = ours
    return out
