"""Everything the OTLP listener holds: the series store, the slow-query store and its counters.

`ingest_metrics` / `ingest_traces` decode and apply one request body (from the event loop, or
from a worker thread for large bodies); `collect` is what the web listener's `/metrics` calls.
A lock serialises the store between the two.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.exposition import Family
from exporter.fingerprint import fingerprint as sql_fingerprint
from exporter.otlp.decode import Format, parse_metrics, parse_traces
from exporter.otlp.selfmetrics import SelfMetrics
from exporter.otlp.spans import Fingerprinter, SlowSpanRecorder
from exporter.otlp.store import SeriesStore
from exporter.otlp.translate import MetricsOutcome, apply_metrics
from exporter.slowqueries import SlowQueryStore


@dataclass(frozen=True, slots=True)
class OtlpLimits:
    max_body_bytes: int = 8 * 1024 * 1024
    max_series_per_metric: int = 2000
    max_series_total: int = 50_000
    max_metrics: int = 2000
    staleness_seconds: float = 300.0
    max_inflight_requests: int = 16


@dataclass(frozen=True, slots=True)
class SlowQueryLimits:
    threshold_seconds: float = 0.5
    max_fingerprints: int = 1000
    max_fingerprint_length: int = 2048
    max_collections: int = 200
    max_operations: int = 32
    max_statement_length: int = 65536


class OtlpState:
    def __init__(
        self,
        limits: OtlpLimits = OtlpLimits(),
        slow: SlowQueryLimits = SlowQueryLimits(),
        *,
        scope_labels: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        fingerprint: Fingerprinter = sql_fingerprint,
    ) -> None:
        self.limits = limits
        self.scope_labels = scope_labels
        self.store = SeriesStore(
            limits.max_series_per_metric,
            limits.max_series_total,
            limits.max_metrics,
            limits.staleness_seconds,
            clock,
        )
        self.slow_queries = SlowQueryStore(
            slow.max_fingerprints,
            slow.max_fingerprint_length,
            slow.max_collections,
            slow.max_operations,
            wall_clock,
        )
        self.spans = SlowSpanRecorder(
            self.slow_queries,
            slow.threshold_seconds,
            fingerprint,
            slow.max_statement_length,
        )
        self.counters = SelfMetrics()
        self.inflight = 0
        self._lock = threading.Lock()

    def ingest_metrics(self, body: bytes, fmt: Format) -> MetricsOutcome:
        """Raises decode.MalformedBody."""
        request = parse_metrics(body, fmt)
        with self._lock:
            return apply_metrics(request, self.store, self.scope_labels)

    def ingest_traces(self, body: bytes, fmt: Format) -> int:
        """Returns the number of spans. Raises decode.MalformedBody."""
        request = parse_traces(body, fmt)
        with self._lock:
            return self.spans.record(request)

    def collect(self) -> list[Family]:
        with self._lock:
            families = self.store.collect()
            series = self.store.series_count
        return [
            *families,
            *self.slow_queries.collect(),
            *self.counters.families(series),
        ]
