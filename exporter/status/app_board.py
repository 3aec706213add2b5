"""What the status page knows of each app pushing over OTLP: its pools, query and request
rates, query p99 and cache hit ratios, sampled from the OTLP store at most every
`SPACING_SECONDS` while the page is open."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from exporter.otlp.state import Peeked
from exporter.status.ring import Ring, fell

V = TypeVar("V")
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
COUNTERS = (QUERY_COUNT, REQUEST_COUNT, ERROR_COUNT, TIMEOUTS)
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

    def observe(self, series: Iterable[Peeked], seen: Sequence[ProducerSeen]) -> None:
        now = self.clock()
        tallies: dict[tuple[str, str], _Tally] = {}
        for name, label_pairs, value, les, counts in series:
            labels = dict(label_pairs)
            key = (labels.get("service_name", ""), labels.get("service_instance_id", ""))
            tally = tallies.get(key)
            if tally is None:
                if len(tallies) >= MAX_PRODUCERS:
                    continue
                tally = tallies[key] = _Tally()
            _HANDLERS[name](tally, name, labels, value, les, counts)
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

    def views(self, view: Callable[[ProducerReading], V]) -> list[V]:
        """`view` of every reading, under the lock a sample in a worker thread takes to apply
        (its rings must not change while a view reads them)."""
        with self._lock:
            return [view(reading) for reading in self.producers.values()]


def _update(reading: ProducerReading, tally: _Tally, now: float) -> None:
    reading.pools = tally.pools
    reading.has_http, reading.has_queries = tally.has_http, tally.has_queries
    timeouts = sum(p.timeouts for p in tally.pools.values())
    point: Point = (now, tally.queries, tally.requests, tally.errors, timeouts)
    if reading.latest is not None and fell(reading.latest, point, COUNTERS):
        reading.history.points.clear()  # the producer restarted: its history starts again
        reading.marks.points.clear()
    reading.latest = point
    reading.history.add(point)
    reading.buckets = _cumulative(tally.buckets)
    reading.caches = tuple((name, hm[0], hm[1]) for name, hm in sorted(tally.caches.items()))
    reading.marks.add((now, reading.buckets, reading.caches))


def _cumulative(per_bound: dict[float, float]) -> Buckets:
    total, out = 0.0, []
    for bound, n in sorted(per_bound.items()):
        total += n
        out.append((bound, total))
    return tuple(out)


Handler = Callable[[_Tally, str, dict[str, str], float, tuple[str, ...], tuple[int, ...]], None]


def _pool_gauge(tally: _Tally, name: str, labels: dict[str, str], value: float,
                les: tuple[str, ...], counts: tuple[int, ...]) -> None:
    pool = tally.pool(labels)
    if pool is None:
        return
    if name == "db_client_connection_count":
        if labels.get("db_client_connection_state") == "used":
            pool.used += value
        else:
            pool.idle += value
    elif name == "db_client_connection_max":
        pool.max = (pool.max or 0.0) + value
    elif name == "db_client_connection_pending_requests":
        pool.pending += value
    else:
        pool.timeouts += value


def _queries(tally: _Tally, name: str, labels: dict[str, str], value: float,
             les: tuple[str, ...], counts: tuple[int, ...]) -> None:
    tally.has_queries = True
    tally.queries += value
    if len(counts) != len(les) + 1:
        return
    for le, n in zip((*les, "+Inf"), counts, strict=True):
        bound = math.inf if le == "+Inf" else _float(le)
        if bound is not None:
            tally.buckets[bound] = tally.buckets.get(bound, 0.0) + n


def _requests(tally: _Tally, name: str, labels: dict[str, str], value: float,
              les: tuple[str, ...], counts: tuple[int, ...]) -> None:
    tally.has_http = True
    tally.requests += value
    status = labels.get("http_response_status_code", "")
    if status.startswith("5") or (not status and labels.get("error_type")):
        tally.errors += value


def _cache(tally: _Tally, name: str, labels: dict[str, str], value: float,
           les: tuple[str, ...], counts: tuple[int, ...]) -> None:
    cache = labels.get("cache_name", "")
    found = tally.caches.get(cache)
    if found is None:
        if len(tally.caches) >= MAX_CACHES:
            return
        found = tally.caches[cache] = [0.0, 0.0]
    result = labels.get("cache_result")
    if result in ("hit", "miss"):
        found[result == "miss"] += value


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


_HANDLERS: dict[str, Handler] = {
    "db_client_connection_count": _pool_gauge,
    "db_client_connection_max": _pool_gauge,
    "db_client_connection_pending_requests": _pool_gauge,
    "db_client_connection_timeouts_total": _pool_gauge,
    QUERIES: _queries,
    REQUESTS: _requests,
    "cache_gets_total": _cache,
}
