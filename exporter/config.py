"""The sidecar's configuration: one typed object, built once at start-up from flags, environment
and the YAML file, validated here so that nothing later has to."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from exporter.limits import (
    AuthLimits,
    OtlpLimits,
    RedisLimits,
    ServerLimits,
    SlowQueryLimits,
)
from exporter.redis.target import (
    RedisTarget,
    TargetError,
    TLSOptions,
    parse_address,
    read_password_file,
)


class ConfigError(ValueError):
    """Start-up stops with this one-line message, which names the culprit."""


@dataclass(frozen=True, slots=True)
class Config:
    targets: tuple[RedisTarget, ...] = ()
    scrape_targets: Mapping[str, RedisTarget] = field(default_factory=dict)
    web_listen_address: str = ":9121"
    web_config_file: str | None = None
    otlp_listen_address: str = "127.0.0.1:4318"
    otlp_config_file: str | None = None
    scrape_timeout: float = 5.0
    log_level: str = "info"
    log_format: str = "logfmt"
    otlp: OtlpLimits = field(default_factory=OtlpLimits)
    slow_queries: SlowQueryLimits = field(default_factory=SlowQueryLimits)
    server: ServerLimits = field(default_factory=ServerLimits)
    redis: RedisLimits = field(default_factory=RedisLimits)
    auth: AuthLimits = field(default_factory=AuthLimits)


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | float | int, name: str, unit_required: bool = False) -> float:
    """Seconds from `5s`, `500ms`, `1m30s` (Prometheus style), or from a bare number of seconds
    unless `unit_required` (the config file's durations need a unit: `threshold: 500` would
    otherwise mean 500 seconds to someone who meant milliseconds)."""
    text = str(value).strip()
    bare = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not bare:
        try:
            float(text)
            bare = True
        except ValueError:
            bare = False
    if bare and unit_required:
        raise ConfigError(f"{name}: {text} has no unit (use e.g. {text}ms or {text}s)")
    if bare:
        seconds = float(text)
    elif _DURATION.match(text):
        seconds = sum(float(n) * _UNIT[u] for n, u in _PART.findall(text))
    else:
        raise ConfigError(f"{name}: invalid duration {text!r} (use e.g. 5s, 500ms)")
    if seconds <= 0:
        raise ConfigError(f"{name}: duration must be positive")
    return seconds


def parse_listen_address(value: str, name: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{name}: invalid listen address {value!r} (use host:port or :port)")
    return host.strip("[]") or "0.0.0.0", int(port_text)


def load_yaml(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"--config.file: cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"--config.file: {path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config.file: {path} must hold a mapping")
    return data


def target_from(
    address: str,
    username: str | None = None,
    password: str | None = None,
    password_file: str | None = None,
    tls: TLSOptions | None = None,
) -> RedisTarget:
    """A target from an address plus credentials given beside it (which win over the URL's)."""
    parsed = parse_address(address)
    if password_file:
        password = read_password_file(password_file, parsed.address) or password
    return RedisTarget(
        address=parsed.address,
        scheme=parsed.scheme,
        host=parsed.host,
        port=parsed.port,
        path=parsed.path,
        db=parsed.db,
        username=username or parsed.username,
        password=password if password is not None else parsed.password,
        tls=tls or TLSOptions(),
    )


_TARGET_KEYS = {"address", "username", "password", "password_file", "tls"}
_TLS_KEYS = {"ca_file", "cert_file", "key_file", "insecure_skip_verify", "server_name"}


def target_from_yaml(entry: Any, where: str) -> RedisTarget:
    if isinstance(entry, str):
        entry = {"address": entry}
    if not isinstance(entry, dict) or "address" not in entry:
        raise ConfigError(f"{where}: each target needs an address")
    unknown = set(entry) - _TARGET_KEYS
    if unknown:
        raise ConfigError(f"unknown key {where}.{sorted(unknown)[0]}")
    tls_raw = entry.get("tls") or {}
    if not isinstance(tls_raw, dict):
        raise ConfigError(f"{where}.tls must be a mapping")
    unknown = set(tls_raw) - _TLS_KEYS
    if unknown:
        raise ConfigError(f"unknown key {where}.tls.{sorted(unknown)[0]} (tls takes "
                          f"{', '.join(sorted(_TLS_KEYS))})")
    for key in ("ca_file", "cert_file", "key_file"):
        if tls_raw.get(key) and not Path(tls_raw[key]).is_file():
            raise ConfigError(f"{where}.tls.{key}: {tls_raw[key]} does not exist")
    tls = TLSOptions(**{k: v for k, v in tls_raw.items() if v is not None})
    try:
        return target_from(
            str(entry["address"]),
            username=entry.get("username"),
            password=entry.get("password"),
            password_file=entry.get("password_file"),
            tls=tls,
        )
    except TargetError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name}: must be a positive integer")
    return value


L = TypeVar("L")


def section_from_yaml(raw: Any, section: str, kind: type[L]) -> L:
    """A limits dataclass from its config-file section: one key per field, `_seconds` fields
    by their name without the suffix, as durations; every value positive."""
    if raw is None:
        return kind()
    if not isinstance(raw, dict):
        raise ConfigError(f"{section} must be a mapping")
    keys = {f.name.removesuffix("_seconds"): f for f in fields(kind)}  # type: ignore[arg-type]
    unknown = set(raw) - set(keys)
    if unknown:
        raise ConfigError(f"unknown key {section}.{sorted(unknown)[0]}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = keys[key].name
        if name.endswith("_seconds"):
            values[name] = parse_duration(value, f"{section}.{key}", unit_required=True)
        else:
            values[name] = _positive_int(value, f"{section}.{key}")
    return kind(**values)


def otlp_from_yaml(raw: Any) -> OtlpLimits:
    return section_from_yaml(raw, "otlp", OtlpLimits)


def slow_queries_from_yaml(raw: Any) -> SlowQueryLimits:
    return section_from_yaml(raw, "slow_queries", SlowQueryLimits)


def targets_from_yaml(raw: Any, key: str) -> list[RedisTarget]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{key} must be a list")
    return [target_from_yaml(entry, f"{key}[{i}]") for i, entry in enumerate(raw)]
