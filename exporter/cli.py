"""Command line: dotted flags in the Prometheus exporters' style, each with an environment
variable, folded with the YAML file into one `Config`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from exporter import __version__
from exporter.config import (
    Config,
    ConfigError,
    load_yaml,
    otlp_from_yaml,
    parse_duration,
    parse_listen_address,
    section_from_yaml,
    slow_queries_from_yaml,
    target_from,
    targets_from_yaml,
)
from exporter.limits import AuthLimits, RedisLimits, ServerLimits
from exporter.migration import translate_argv, translate_env
from exporter.redis.target import RedisTarget, TargetError, TLSOptions

PROG = "tradesense-exporter"
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("logfmt", "json")
DEFAULT_SCRAPE_TIMEOUT = "5s"
FILE_KEYS = frozenset({"targets", "scrape_targets", "scrape_timeout", "otlp", "slow_queries",
                       "server", "redis", "auth"})


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        head, sep, rest = message.partition("unrecognized arguments: ")
        if sep:  # name the flags, never echo their values (`--redis.password=...`)
            flags = [arg.split("=", 1)[0] for arg in rest.split() if arg.startswith("-")]
            message = f"{head}unrecognized arguments: {' '.join(flags) or '(values)'}"
        raise ConfigError(message)


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description="Redis, connection-pool and query metrics for Prometheus.",
    )
    add = p.add_argument
    add(
        "--redis.addr",
        dest="redis_addr",
        action="append",
        metavar="URL",
        help="redis://, rediss:// or unix:// address to scrape on /metrics; repeatable "
        "(env REDIS_ADDR, comma-separated; default redis://localhost:6379; '' for none)",
    )
    add(
        "--redis.user",
        dest="redis_user",
        metavar="USER",
        default=env.get("REDIS_USER"),
        help="ACL user name (env REDIS_USER)",
    )
    add(
        "--redis.password-file",
        dest="redis_password_file",
        metavar="FILE",
        default=env.get("REDIS_PASSWORD_FILE"),
        help="file holding the password, or redis_exporter's JSON map of address to password "
        "(env REDIS_PASSWORD_FILE)",
    )
    add(
        "--redis.tls-ca-file",
        dest="tls_ca_file",
        metavar="FILE",
        default=env.get("REDIS_TLS_CA_FILE"),
        help="CA bundle for rediss:// targets (env REDIS_TLS_CA_FILE)",
    )
    add(
        "--redis.tls-cert-file",
        dest="tls_cert_file",
        metavar="FILE",
        default=env.get("REDIS_TLS_CERT_FILE"),
        help="client certificate for rediss:// targets (env REDIS_TLS_CERT_FILE)",
    )
    add(
        "--redis.tls-key-file",
        dest="tls_key_file",
        metavar="FILE",
        default=env.get("REDIS_TLS_KEY_FILE"),
        help="client key for rediss:// targets (env REDIS_TLS_KEY_FILE)",
    )
    add(
        "--redis.tls-insecure-skip-verify",
        dest="tls_skip_verify",
        action="store_true",
        default=env.get("REDIS_TLS_INSECURE_SKIP_VERIFY", "").lower() in ("1", "true"),
        help="do not verify the server certificate",
    )
    add(
        "--redis.tls-server-name",
        dest="tls_server_name",
        metavar="NAME",
        default=env.get("REDIS_TLS_SERVER_NAME"),
        help="name to send (SNI) and verify the server certificate against, instead of the "
        "address's host (env REDIS_TLS_SERVER_NAME)",
    )
    add(
        "--config.file",
        dest="config_file",
        metavar="FILE",
        default=env.get("EXPORTER_CONFIG_FILE"),
        help="YAML: targets, credentials, /scrape allow-list, limits (env EXPORTER_CONFIG_FILE)",
    )
    add(
        "--web.listen-address",
        dest="web_listen_address",
        metavar="ADDR",
        default=env.get("EXPORTER_WEB_LISTEN_ADDRESS", ":9121"),
        help="address of /metrics, /scrape, /api/slow-queries (default :9121)",
    )
    add(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="TLS and basic auth, in the Prometheus exporter-toolkit web-config format",
    )
    add(
        "--otlp.listen-address",
        dest="otlp_listen_address",
        metavar="ADDR",
        default=env.get("EXPORTER_OTLP_LISTEN_ADDRESS", "127.0.0.1:4318"),
        help="OTLP/HTTP listener (default 127.0.0.1:4318)",
    )
    add(
        "--otlp.config.file",
        dest="otlp_config_file",
        metavar="FILE",
        default=env.get("EXPORTER_OTLP_CONFIG_FILE"),
        help="TLS, basic auth and bearer_token_file for the OTLP listener, in the web-config "
        "format (env EXPORTER_OTLP_CONFIG_FILE)",
    )
    add(
        "--scrape.timeout",
        dest="scrape_timeout",
        metavar="DURATION",
        default=env.get("EXPORTER_SCRAPE_TIMEOUT"),
        help="upper bound on one Redis scrape (default 5s, or the config file's scrape_timeout)",
    )
    add(
        "--log.level",
        dest="log_level",
        metavar="LEVEL",
        default=env.get("EXPORTER_LOG_LEVEL", "info"),
        help=f"one of {', '.join(LOG_LEVELS)}",
    )
    add(
        "--log.format",
        dest="log_format",
        metavar="FORMAT",
        default=env.get("EXPORTER_LOG_FORMAT", "logfmt"),
        help=f"one of {', '.join(LOG_FORMATS)}",
    )
    add("--version", action="version", version=f"{PROG} {__version__}")
    return p


def _addresses(
    args: argparse.Namespace, env: Mapping[str, str], has_file_targets: bool
) -> list[str]:
    if args.redis_addr is not None:
        raw = args.redis_addr
    elif "REDIS_ADDR" in env:
        raw = env["REDIS_ADDR"].split(",")
    elif has_file_targets:
        return []
    else:
        raw = ["redis://localhost:6379"]
    return [a.strip() for a in raw if a.strip()]


def _flag_targets(
    args: argparse.Namespace, env: Mapping[str, str], addresses: list[str]
) -> list[RedisTarget]:
    tls = TLSOptions(
        ca_file=args.tls_ca_file,
        cert_file=args.tls_cert_file,
        key_file=args.tls_key_file,
        insecure_skip_verify=args.tls_skip_verify,
        server_name=args.tls_server_name or None,
    )
    for name, path in (
        ("--redis.tls-ca-file", tls.ca_file),
        ("--redis.tls-cert-file", tls.cert_file),
        ("--redis.tls-key-file", tls.key_file),
    ):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{name}: {path} does not exist")
    targets = []
    for address in addresses:
        try:
            targets.append(
                target_from(
                    address,
                    username=args.redis_user,
                    password=env.get("REDIS_PASSWORD") or None,
                    password_file=args.redis_password_file,
                    tls=tls,
                )
            )
        except TargetError as exc:
            raise ConfigError(f"--redis.addr: {exc}") from None
    return targets


def _choice(value: str, allowed: Sequence[str], flag: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{flag}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _from_file(path: str | None, env: Mapping[str, str]) -> dict[str, Any]:
    """The config file's sections, parsed; every error names the file and the key."""
    if not path:
        return {"data": {}}
    data = load_yaml(path)
    try:
        unknown = set(data) - FILE_KEYS
        if unknown:
            raise ConfigError(f"unknown key {sorted(unknown)[0]} (top-level keys are "
                              f"{', '.join(sorted(FILE_KEYS))})")
        return {
            "data": data,
            "targets": targets_from_yaml(data.get("targets"), "targets"),
            "scrape_targets": targets_from_yaml(data.get("scrape_targets"), "scrape_targets"),
            "scrape_timeout": parse_duration(data["scrape_timeout"], "scrape_timeout",
                                             unit_required=True)
            if "scrape_timeout" in data else None,
            "otlp": otlp_from_yaml(data.get("otlp")),
            "slow_queries": slow_queries_from_yaml(data.get("slow_queries")),
            "server": section_from_yaml(data.get("server"), "server", ServerLimits),
            "redis": section_from_yaml(data.get("redis"), "redis", RedisLimits),
            "auth": section_from_yaml(data.get("auth"), "auth", AuthLimits),
        }
    except ConfigError as exc:
        raise ConfigError(f"--config.file {path}: {exc}") from None


def _scrape_timeout(args: argparse.Namespace, env: Mapping[str, str],
                    from_file: float | None) -> float:
    if args.scrape_timeout is None:
        return from_file or parse_duration(DEFAULT_SCRAPE_TIMEOUT, "scrape_timeout")
    from_env = args.scrape_timeout == env.get("EXPORTER_SCRAPE_TIMEOUT")
    name = "EXPORTER_SCRAPE_TIMEOUT" if from_env else "--scrape.timeout"
    return parse_duration(args.scrape_timeout, name)


def load_config(argv: Sequence[str], env: Mapping[str, str]) -> Config:
    env = translate_env(env)
    parser = build_parser(env)
    args = parser.parse_args(translate_argv(argv, frozenset(parser._option_string_actions)))
    file = _from_file(args.config_file, env)
    file_targets = file.get("targets", [])
    flag_targets = _flag_targets(args, env, _addresses(args, env, bool(file_targets)))
    targets = tuple({t.address: t for t in [*flag_targets, *file_targets]}.values())
    scrape_targets = {t.address: t for t in file.get("scrape_targets", [])}
    parse_listen_address(args.web_listen_address, "--web.listen-address")
    parse_listen_address(args.otlp_listen_address, "--otlp.listen-address")
    if args.web_config_file and not os.path.isfile(args.web_config_file):
        raise ConfigError(f"--web.config.file: {args.web_config_file} does not exist")
    if args.otlp_config_file and not os.path.isfile(args.otlp_config_file):
        raise ConfigError(f"--otlp.config.file: {args.otlp_config_file} does not exist")
    sections = {k: file[k] for k in ("otlp", "slow_queries", "server", "redis", "auth")
                if k in file}
    return Config(
        targets=targets,
        scrape_targets=scrape_targets,
        web_listen_address=args.web_listen_address,
        web_config_file=args.web_config_file,
        otlp_listen_address=args.otlp_listen_address,
        otlp_config_file=args.otlp_config_file,
        scrape_timeout=_scrape_timeout(args, env, file.get("scrape_timeout")),
        log_level=_choice(args.log_level, LOG_LEVELS, "--log.level"),
        log_format=_choice(args.log_format, LOG_FORMATS, "--log.format"),
        **sections,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(sys.argv[1:] if argv is None else argv, os.environ)
        from exporter.server import run
        from exporter.webconfig import WebConfigError

        try:
            return run(config)
        except WebConfigError as exc:
            raise ConfigError(f"--web.config.file {config.web_config_file}: {exc}") from None
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
