"""What the status page knows of each app pushing over OTLP: its pools, query and request
rates, query p99 and cache hit ratios, sampled from the OTLP store at most every
`SPACING_SECONDS` (on `/metrics`, and when the page is opened)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from exporter.exposition import Family, Sample
from exporter.status.ring import Ring

SPACING_SECONDS = 5.0
HISTORY_POINTS = 60  # 5 minutes of points 5 s apart
MARK_SPACING_SECONDS = 30.0  # histogram and cache marks: 11 of them cover 5 minutes
MARK_POINTS = 11
GONE_KEPT_SECONDS = 600.0  # a producer that stopped pushing is shown this long
MAX_PRODUCERS = 1000
MAX_POOLS = 16  # per producer
MAX_CACHES = 16  # per producer

QUERIES = "db_client_operation_duration_seconds"
REQUESTS = "http_server_request_duration_seconds"
FAMILIES = (
    "db_client_connection_count", "db_client_connection_max",
    "db_client_connection_pending_requests", "db_client_connection_timeouts_total",
    QUERIES, REQUESTS, "cache_gets_total",
)
POOL_NAME, DB_SYSTEM = "db_client_connection_pool_name", "db_system_name"

# A point: (time, queries, requests, request errors, pool timeouts)
T, QUERY_COUNT, REQUEST_COUNT, ERROR_COUNT, TIMEOUTS = range(5)
Point = tuple[float, float, float, float, float]
Buckets = tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last
Caches = tuple[tuple[str, float, float], ...]  # (cache name, hits, misses)
Mark = tuple[float, Buckets, Caches]


@dataclass(frozen=True, slots=True)
class ProducerSeen:
    """A producer the OTLP store follows: its last push (wall clock) and learned interval."""

    service: str
    instance: str
    last_push: float
    interval: float | None


@dataclass(slots=True)
class Pool:
    name: str
    system: str = ""
    used: float = 0.0
    idle: float = 0.0
    max: float | None = None
    pending: float = 0.0
    timeouts: float = 0.0


@dataclass(slots=True)
class ProducerReading:
    service: str
    instance: str
    last_push: float = 0.0
    interval: float | None = None
    pushing: bool = True
    has_http: bool = False
    has_queries: bool = False
    pools: dict[str, Pool] = field(default_factory=dict)
    latest: Point | None = None
    buckets: Buckets = ()
    caches: Caches = ()
    history: Ring[Point] = field(default_factory=lambda: Ring(HISTORY_POINTS, SPACING_SECONDS))
    marks: Ring[Mark] = field(default_factory=lambda: Ring(MARK_POINTS, MARK_SPACING_SECONDS))


@dataclass(slots=True)
class _Tally:
    pools: dict[str, Pool] = field(default_factory=dict)
    queries: float = 0.0
    requests: float = 0.0
    errors: float = 0.0
    has_http: bool = False
    has_queries: bool = False
    buckets: dict[float, float] = field(default_factory=dict)
    caches: dict[str, list[float]] = field(default_factory=dict)

    def pool(self, labels: dict[str, str]) -> Pool | None:
        name = labels.get(POOL_NAME, "")
        pool = self.pools.get(name)
        if pool is None and len(self.pools) < MAX_POOLS:
            pool = self.pools[name] = Pool(name, labels.get(DB_SYSTEM, ""))
        return pool


class AppBoard:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.producers: dict[tuple[str, str], ProducerReading] = {}
        self.sampled = 0.0
        self._lock = threading.Lock()

    def due(self) -> bool:
        return self.clock() - self.sampled >= SPACING_SECONDS

    def observe(self, families: Iterable[Family], seen: Sequence[ProducerSeen]) -> None:
        now = self.clock()
        tallies: dict[tuple[str, str], _Tally] = {}
        for fam in families:
            handle = _HANDLERS.get(fam.name)
            if handle is None:
                continue
            for sample in fam.samples:
                labels = dict(sample.labels)
                key = (labels.get("service_name", ""), labels.get("service_instance_id", ""))
                tally = tallies.get(key)
                if tally is None:
                    if len(tallies) >= MAX_PRODUCERS:
                        continue
                    tally = tallies[key] = _Tally()
                handle(tally, fam.name, sample, labels)
        with self._lock:
            self.sampled = now
            self._apply(now, tallies, seen)

    def _apply(self, now: float, tallies: dict[tuple[str, str], _Tally],
               seen: Sequence[ProducerSeen]) -> None:
        alive = {(p.service, p.instance): p for p in seen}
        for key, reading in list(self.producers.items()):
            if key not in alive:
                reading.pushing = False
                if now - reading.last_push > GONE_KEPT_SECONDS:
                    del self.producers[key]
        for key, who in alive.items():
            found = self.producers.get(key)
            if found is None:
                if len(self.producers) >= MAX_PRODUCERS:
                    continue
                found = self.producers[key] = ProducerReading(*key)
            reading = found
            reading.last_push, reading.interval, reading.pushing = (
                who.last_push, who.interval, True)
            _update(reading, tallies.get(key) or _Tally(), now)

    def readings(self) -> list[ProducerReading]:
        with self._lock:
            return list(self.producers.values())


def _update(reading: ProducerReading, tally: _Tally, now: float) -> None:
    reading.pools = tally.pools
    reading.has_http, reading.has_queries = tally.has_http, tally.has_queries
    timeouts = sum(p.timeouts for p in tally.pools.values())
    point: Point = (now, tally.queries, tally.requests, tally.errors, timeouts)
    reading.latest = point
    reading.history.add(point)
    reading.buckets = tuple(sorted(tally.buckets.items()))
    reading.caches = tuple((name, hm[0], hm[1]) for name, hm in sorted(tally.caches.items()))
    reading.marks.add((now, reading.buckets, reading.caches))


def _pool_gauge(tally: _Tally, name: str, sample: Sample, labels: dict[str, str]) -> None:
    pool = tally.pool(labels)
    if pool is None:
        return
    if name == "db_client_connection_count":
        if labels.get("db_client_connection_state") == "used":
            pool.used += sample.value
        else:
            pool.idle += sample.value
    elif name == "db_client_connection_max":
        pool.max = (pool.max or 0.0) + sample.value
    elif name == "db_client_connection_pending_requests":
        pool.pending += sample.value
    else:
        pool.timeouts += sample.value


def _queries(tally: _Tally, name: str, sample: Sample, labels: dict[str, str]) -> None:
    tally.has_queries = True
    if sample.suffix == "_count":
        tally.queries += sample.value
    elif sample.suffix == "_bucket":
        le = labels.get("le", "")
        bound = math.inf if le == "+Inf" else _float(le)
        if bound is not None:
            tally.buckets[bound] = tally.buckets.get(bound, 0.0) + sample.value


def _requests(tally: _Tally, name: str, sample: Sample, labels: dict[str, str]) -> None:
    if sample.suffix != "_count":
        return
    tally.has_http = True
    tally.requests += sample.value
    status = labels.get("http_response_status_code", "")
    if status.startswith("5") or (not status and labels.get("error_type")):
        tally.errors += sample.value


def _cache(tally: _Tally, name: str, sample: Sample, labels: dict[str, str]) -> None:
    cache = labels.get("cache_name", "")
    counts = tally.caches.get(cache)
    if counts is None:
        if len(tally.caches) >= MAX_CACHES:
            return
        counts = tally.caches[cache] = [0.0, 0.0]
    result = labels.get("cache_result")
    if result in ("hit", "miss"):
        counts[result == "miss"] += sample.value


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


_HANDLERS: dict[str, Callable[[_Tally, str, Sample, dict[str, str]], None]] = {
    "db_client_connection_count": _pool_gauge,
    "db_client_connection_max": _pool_gauge,
    "db_client_connection_pending_requests": _pool_gauge,
    "db_client_connection_timeouts_total": _pool_gauge,
    QUERIES: _queries,
    REQUESTS: _requests,
    "cache_gets_total": _cache,
}
