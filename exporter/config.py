"""The sidecar's configuration: one typed object, built once at start-up from flags, environment
and the YAML file, validated here so that nothing later has to."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.otlp.state import OtlpLimits, SlowQueryLimits
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
    scrape_timeout: float = 5.0
    log_level: str = "info"
    log_format: str = "logfmt"
    otlp: OtlpLimits = field(default_factory=OtlpLimits)
    slow_queries: SlowQueryLimits = field(default_factory=SlowQueryLimits)


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | float | int, name: str) -> float:
    """Seconds from `5s`, `500ms`, `1m30s` (Prometheus style) or a bare number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            if not _DURATION.match(text):
                msg = f"{name}: invalid duration {text!r} (use e.g. 5s, 500ms)"
                raise ConfigError(msg) from None
            seconds = sum(float(n) * _UNIT[u] for n, u in _PART.findall(text))
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
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    tls_raw = entry.get("tls") or {}
    if not isinstance(tls_raw, dict) or set(tls_raw) - _TLS_KEYS:
        raise ConfigError(f"{where}: tls takes only {', '.join(sorted(_TLS_KEYS))}")
    for key in ("ca_file", "cert_file", "key_file"):
        if tls_raw.get(key) and not Path(tls_raw[key]).is_file():
            raise ConfigError(f"{where}: tls.{key} {tls_raw[key]} does not exist")
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


def otlp_from_yaml(raw: Any) -> OtlpLimits:
    if raw is None:
        return OtlpLimits()
    if not isinstance(raw, dict):
        raise ConfigError("--config.file: otlp must be a mapping")
    base = OtlpLimits()
    return OtlpLimits(
        max_body_bytes=_positive_int(raw.get("max_body_bytes", base.max_body_bytes),
                                     "otlp.max_body_bytes"),
        max_series_per_metric=_positive_int(
            raw.get("max_series_per_metric", base.max_series_per_metric),
            "otlp.max_series_per_metric"),
        staleness_seconds=parse_duration(raw.get("staleness", base.staleness_seconds),
                                         "otlp.staleness"),
        max_inflight_requests=_positive_int(
            raw.get("max_inflight_requests", base.max_inflight_requests),
            "otlp.max_inflight_requests"),
    )


def slow_queries_from_yaml(raw: Any) -> SlowQueryLimits:
    if raw is None:
        return SlowQueryLimits()
    if not isinstance(raw, dict):
        raise ConfigError("--config.file: slow_queries must be a mapping")
    base = SlowQueryLimits()
    return SlowQueryLimits(
        threshold_seconds=parse_duration(raw.get("threshold", base.threshold_seconds),
                                         "slow_queries.threshold"),
        max_fingerprints=_positive_int(raw.get("max_fingerprints", base.max_fingerprints),
                                       "slow_queries.max_fingerprints"),
        max_collections=_positive_int(raw.get("max_collections", base.max_collections),
                                      "slow_queries.max_collections"),
    )


def targets_from_yaml(raw: Any, key: str) -> list[RedisTarget]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"--config.file: {key} must be a list")
    return [target_from_yaml(entry, f"{key}[{i}]") for i, entry in enumerate(raw)]
