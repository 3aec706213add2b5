"""The ceilings of the sidecar's inputs, one dataclass per concern. The config file sets them by
section (`server:`, `redis:`, `auth:`, `otlp:`, `slow_queries:`), one
key per field; a `_seconds` field takes a duration (`10s`, `500ms`) under its name without the
suffix. docs/limits.md lists every limit, its default, what happens when it is reached and the
counter that shows it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Both listeners' connections, enforced before a request reaches the app."""

    max_connections: int = 512
    max_connections_per_client: int = 64
    header_timeout_seconds: float = 10.0
    max_header_bytes: int = 64 * 1024
    tls_handshake_timeout_seconds: float = 10.0
    # Above the app's 10 s export interval, the OpenTelemetry SDK's default of 60 s and the
    # usual scrape intervals, so a pusher or scraper keeps its connection (nginx's default).
    keep_alive_timeout_seconds: float = 75.0


@dataclass(frozen=True, slots=True)
class RedisLimits:
    """Per target: the bytes one round trip's replies may take, and the least time between the
    starts of two round trips (scrapes arriving in between share the next one)."""

    max_reply_bytes: int = 16 * 1024 * 1024
    min_round_trip_interval_seconds: float = 0.2


@dataclass(frozen=True, slots=True)
class AuthLimits:
    """bcrypt checks queued or running: in all, and from one client address, so that one
    source of wrong passwords cannot hold every place a legitimate first login needs."""

    max_pending_checks: int = 32
    max_pending_checks_per_client: int = 8


@dataclass(frozen=True, slots=True)
class OtlpLimits:
    max_body_bytes: int = 8 * 1024 * 1024
    max_series_per_metric: int = 2000
    max_series_total: int = 50_000
    max_metrics: int = 2000
    staleness_seconds: float = 300.0
    max_inflight_requests: int = 16
    body_timeout_seconds: float = 30.0
    max_label_name_length: int = 128
    max_resource_attributes: int = 64
    max_exposition_bytes: int = 8 * 1024 * 1024
    max_future_skew_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class SlowQueryLimits:
    threshold_seconds: float = 0.5
    max_fingerprints: int = 1000
    max_fingerprint_length: int = 2048
    max_collections: int = 200
    max_operations: int = 32
    max_statement_length: int = 65536
    max_services: int = 32
