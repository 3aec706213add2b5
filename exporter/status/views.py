"""The page's data, as `/api/status` serves it and the HTML shows it. Fields ending in `_at`
are Unix times (ISO 8601 in JSON); the rest are in base units (seconds, bytes, ratios 0..1)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from exporter.status.fmt import iso_or_none, rounded

Trend = list[float | None]


@dataclass(slots=True)
class TargetView:
    address: str
    state: str  # "up", "down" or "not scraped yet"
    error: str = ""
    changed_at: float = 0.0  # when it went up or down (or was first seen down) as far as
    # the sidecar saw; 0 for a target up since it was first seen
    role: str = ""
    server: str = ""  # "Redis 7.0.15", "Valkey 8.0.1"
    uptime_seconds: float | None = None
    hit_ratio: float | None = None
    hit_ratio_trend: Trend = field(default_factory=list)
    memory_used_bytes: float | None = None
    memory_max_bytes: float | None = None  # None: no maxmemory
    memory_trend: Trend = field(default_factory=list)
    evictions_per_second: float | None = None
    commands_per_second: float | None = None
    commands_trend: Trend = field(default_factory=list)
    connected_clients: float | None = None
    last_scrape_at: float = 0.0
    last_scrape_duration_seconds: float | None = None
    degraded: list[str] = field(default_factory=list)


@dataclass(slots=True)
class PoolView:
    name: str
    system: str
    used: float
    idle: float
    max: float | None
    pending_requests: float
    timeouts_in_window: float | None


@dataclass(slots=True)
class CacheView:
    name: str
    hit_ratio: float | None
    lookups_per_second: float | None


@dataclass(slots=True)
class AppView:
    service: str
    instance: str
    state: str  # "pushing" or "stopped pushing"
    last_push_at: float
    export_interval_seconds: float | None = None
    pools: list[PoolView] = field(default_factory=list)
    query_rate_per_second: float | None = None
    query_p99_seconds: float | None = None
    query_p99_above_largest_bucket: bool = False
    query_trend: Trend = field(default_factory=list)
    sends_http: bool = False
    request_rate_per_second: float | None = None
    error_ratio: float | None = None
    request_trend: Trend = field(default_factory=list)
    caches: list[CacheView] = field(default_factory=list)


@dataclass(slots=True)
class ServiceView:
    """A service's instances summed: the line to read first when there are many."""

    service: str
    pushing: int = 0
    stopped: int = 0
    pool_used: float = 0.0
    pool_max: float = 0.0
    pending_requests: float = 0.0
    timeouts_in_window: float = 0.0
    request_rate_per_second: float | None = None
    error_rate_per_second: float | None = None
    query_rate_per_second: float | None = None
    error_ratio: float | None = None


@dataclass(slots=True)
class SlowQueryView:
    service: str
    fingerprint: str
    calls: int
    mean_seconds: float
    max_seconds: float
    last_seen_at: float


@dataclass(slots=True)
class CountView:
    what: str  # "metrics: malformed", "series_limit"
    total: int
    in_window: float | None


@dataclass(slots=True)
class ReceiverView:
    accepting: bool
    reasons: list[str] = field(default_factory=list)  # why not accepting, or what it drops
    requests: int = 0
    points_accepted: int = 0
    spans_accepted: int = 0
    rejected: list[CountView] = field(default_factory=list)
    dropped: list[CountView] = field(default_factory=list)
    series: int = 0
    series_limit: int = 0
    series_bytes: int = 0
    series_bytes_limit: int = 0
    producers: int = 0
    trouble_trend: Trend = field(default_factory=list)  # rejected + dropped per second


@dataclass(slots=True)
class Status:
    generated_at: float
    version: str
    started_at: float
    window_seconds: float
    ready: bool
    targets: list[TargetView]
    apps: list[AppView]
    slow_queries: list[SlowQueryView]
    slow_query_fingerprints: int
    receiver: ReceiverView
    services: list[ServiceView] = field(default_factory=list)

    @property
    def targets_down(self) -> list[TargetView]:
        return [t for t in self.targets if t.state == "down"]


def as_json(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name.endswith("_at") and isinstance(value, float):
                out[f.name] = iso_or_none(value)
            else:
                out[f.name] = as_json(value)
        return out
    if isinstance(obj, list):
        return [as_json(v) for v in obj]
    if isinstance(obj, float):
        return rounded(obj)
    return obj
