"""Slow SQL statements, per service and fingerprint, in bounded memory, and
`GET /api/slow-queries`.

An entry is one (service, fingerprint) pair: the same statement run by two services is two
entries. The service is the producer's `service_name`, as the app's series carry it. At most
`max_services` distinct services are admitted per store, first come first kept; a later one is
recorded (entries and counter) as service `_other`.

The store holds at most `max_fingerprints` entries; when a new entry arrives at a full
store, the entry with the least total time is evicted (the view is sorted by total time, so
what it shows first is what the store keeps longest). Fingerprints are cut at
`max_fingerprint_length` characters. Callers pass fingerprints, never statements:
`exporter.otlp.spans` fingerprints every statement before it reaches this module.

`tradesense_slow_queries_total` is labelled by service, operation and collection; past
`max_services`, `max_collections` (or `max_operations`) distinct values, new ones are counted
as `_other`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exporter.bounded import BoundedNames
from exporter.exposition import Family, counter, gauge

OTHER = "_other"
UNKNOWN_SERVICE = "unknown_service"  # as exporter.otlp.resource names a producer without one
DEFAULT_LIMIT = 50
MAX_LABEL_VALUE_LENGTH = 128
_LATEST = 253402300799.0  # 9999-12-31T23:59:59Z


@dataclass(slots=True)
class SlowQuery:
    service_name: str
    fingerprint: str
    calls: int
    total_seconds: float
    max_seconds: float
    last_seen: float
    example_trace_id: str
    db_operation_name: str
    db_collection_name: str
    db_system_name: str

    def as_json(self) -> dict[str, object]:
        return {
            "service_name": self.service_name,
            "fingerprint": self.fingerprint,
            "calls": self.calls,
            "total_seconds": self.total_seconds,
            "mean_seconds": self.total_seconds / self.calls,
            "max_seconds": self.max_seconds,
            "last_seen": datetime.fromtimestamp(self.last_seen, UTC).isoformat(),
            "example_trace_id": self.example_trace_id,
            "db_operation_name": self.db_operation_name,
            "db_collection_name": self.db_collection_name,
            "db_system_name": self.db_system_name,
        }


class SlowQueryStore:
    def __init__(
        self,
        max_fingerprints: int = 1000,
        max_fingerprint_length: int = 2048,
        max_collections: int = 200,
        max_operations: int = 32,
        wall_clock: Callable[[], float] = time.time,
        max_services: int = 32,
    ) -> None:
        self.max_fingerprints = max_fingerprints
        self.max_fingerprint_length = max_fingerprint_length
        self.wall_clock = wall_clock
        self._entries: dict[tuple[str, str], SlowQuery] = {}
        self._counts: dict[tuple[str, str, str], int] = {}
        self._services = BoundedNames(max_services, OTHER, MAX_LABEL_VALUE_LENGTH)
        self._operations = BoundedNames(max_operations, OTHER, MAX_LABEL_VALUE_LENGTH)
        self._collections = BoundedNames(max_collections, OTHER, MAX_LABEL_VALUE_LENGTH)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def record(
        self,
        fingerprint: str,
        seconds: float,
        trace_id: str = "",
        operation: str = "",
        collection: str = "",
        db_system: str = "",
        when: float | None = None,
        service: str = UNKNOWN_SERVICE,
    ) -> None:
        """Ignored when `seconds` is not a finite, non-negative number. `when` (Unix seconds)
        defaults to now, as does a `when` a datetime cannot hold. `service` is the producer's
        `service_name`; past `max_services` distinct ones it is recorded as `_other`."""
        if not 0.0 <= seconds < math.inf:
            return
        fingerprint = fingerprint[: self.max_fingerprint_length]
        cut = MAX_LABEL_VALUE_LENGTH
        operation, collection, db_system = operation[:cut], collection[:cut], db_system[:cut]
        if when is None or not 0.0 <= when <= _LATEST:
            when = self.wall_clock()
        with self._lock:
            service = self._services.admit(service or UNKNOWN_SERVICE)
            self._count(service, operation, collection)
            key = (service, fingerprint)
            entry = self._entries.get(key)
            if entry is None:
                self._make_room()
                entry = self._entries[key] = SlowQuery(
                    service, fingerprint, 0, 0.0, 0.0, when, trace_id, "", "", ""
                )
            entry.calls += 1
            entry.total_seconds += seconds
            if seconds >= entry.max_seconds:
                entry.max_seconds = seconds
                entry.example_trace_id = trace_id or entry.example_trace_id
            entry.last_seen = max(entry.last_seen, when)
            entry.db_operation_name = operation or entry.db_operation_name
            entry.db_collection_name = collection or entry.db_collection_name
            entry.db_system_name = db_system or entry.db_system_name

    def _count(self, service: str, operation: str, collection: str) -> None:
        key = (service, self._operations.admit(operation), self._collections.admit(collection))
        self._counts[key] = self._counts.get(key, 0) + 1

    def _make_room(self) -> None:
        while len(self._entries) >= self.max_fingerprints > 0:
            least = min(self._entries.values(), key=attrgetter("total_seconds"))
            del self._entries[(least.service_name, least.fingerprint)]

    def top(self, limit: int, services: Collection[str] = ()) -> list[SlowQuery]:
        """The `limit` entries with the most total time; of `services` only, when given."""
        with self._lock:
            entries = list(self._entries.values())
        if services:
            entries = [e for e in entries if e.service_name in services]
        entries.sort(key=attrgetter("total_seconds"), reverse=True)
        return entries[:limit]

    def collect(self) -> list[Family]:
        with self._lock:
            counts = list(self._counts.items())
            size = len(self._entries)
        total = counter(
            "tradesense_slow_queries_total",
            "Statements slower than the slow-query threshold, by service, operation and "
            "collection.",
        )
        for (service, operation, collection), n in counts:
            total.add(
                n,
                (
                    ("service_name", service),
                    ("db_operation_name", operation),
                    ("db_collection_name", collection),
                ),
            )
        return [
            total,
            gauge(
                "tradesense_exporter_slow_query_fingerprints",
                "Statement fingerprints held by the slow-query store.",
                size,
            ),
        ]


def _bad_limit(max_limit: int) -> JSONResponse:
    message = f"limit must be an integer from 1 to {max_limit}"
    return JSONResponse({"error": message}, status_code=400)


def slow_queries_endpoint(
    store: SlowQueryStore, max_limit: int = 1000
) -> Callable[[Request], Awaitable[Response]]:
    async def slow_queries(request: Request) -> Response:
        raw = request.query_params.get("limit")
        limit = DEFAULT_LIMIT
        if raw is not None:
            if not (raw.isascii() and raw.isdigit() and len(raw) < 10) or not (
                1 <= int(raw) <= max_limit
            ):
                return _bad_limit(max_limit)
            limit = int(raw)
        services = frozenset(request.query_params.getlist("service"))
        entries = store.top(limit, services)
        return JSONResponse(
            {"fingerprints": len(store), "slow_queries": [e.as_json() for e in entries]}
        )

    return slow_queries


def slow_queries_route(
    store: SlowQueryStore, path: str = "/api/slow-queries", max_limit: int = 1000
) -> Route:
    return Route(path, slow_queries_endpoint(store, max_limit), methods=["GET"])
