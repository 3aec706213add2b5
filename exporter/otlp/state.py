"""Everything the OTLP listener holds: the series store, the slow-query store and its counters.

`apply_metrics` / `apply_traces` apply one decoded request (from the event loop, or from a
worker thread for large bodies); `collect` is what the web listener's `/metrics` calls,
in a worker thread. A lock serialises the store between the two; the receiver applies on the
event loop only when the lock is free (`blocking=False`), so a long collection never holds the
loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from exporter.exposition import Family, Labels
from exporter.fingerprint import fingerprint as sql_fingerprint
from exporter.limits import OtlpLimits, SlowQueryLimits
from exporter.otlp.counters import SelfMetrics
from exporter.otlp.slowqueries import SlowQueryStore
from exporter.otlp.spans import Fingerprinter, SlowSpanRecorder
from exporter.otlp.store import (
    ExpHistogramSeries,
    HistogramSeries,
    NumberSeries,
    SeriesStore,
    SummarySeries,
)
from exporter.otlp.translate import Bounds, MetricsOutcome, apply_metrics

# One series as the status page reads it: (family, labels, value, bucket bounds, per-bucket
# counts); a histogram's value is its count, and only explicit-bucket histograms give bounds
# (`le` texts) and counts (+Inf last).
Peeked = tuple[str, Labels, float, tuple[str, ...], tuple[int, ...]]


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
            limits.max_exposition_bytes,
        )
        self.slow_queries = SlowQueryStore(
            slow.max_fingerprints,
            slow.max_fingerprint_length,
            slow.max_collections,
            slow.max_operations,
            wall_clock,
            slow.max_services,
        )
        self.spans = SlowSpanRecorder(
            self.slow_queries,
            slow.threshold_seconds,
            fingerprint,
            slow.max_statement_length,
        )
        self.counters = SelfMetrics()
        self.wall_clock = wall_clock
        self.inflight = 0  # requests from their first body byte to their response
        self.inflight_bytes = 0  # body bytes those requests hold while they arrive
        self.applying = 0  # requests decoding and applying a complete body
        self._lock = threading.Lock()

    def bounds(self) -> Bounds:
        latest = self.wall_clock() + self.limits.max_future_skew_seconds
        return Bounds(
            self.limits.max_label_name_length,
            self.limits.max_resource_attributes,
            int(latest * 1e9),
        )

    def apply_metrics(
        self, request: ExportMetricsServiceRequest, blocking: bool = True
    ) -> MetricsOutcome | None:
        """None when `blocking` is False and the store is busy."""
        if not self._lock.acquire(blocking):
            return None
        try:
            return apply_metrics(request, self.store, self.scope_labels, self.bounds())
        finally:
            self._lock.release()

    def apply_traces(self, request: ExportTraceServiceRequest, blocking: bool = True) -> int | None:
        """The number of spans; None when `blocking` is False and the store is busy."""
        if not self._lock.acquire(blocking):
            return None
        try:
            return self.spans.record(request)
        finally:
            self._lock.release()

    def status_view(
        self, names: Collection[str]
    ) -> tuple[list[Peeked], list[tuple[str, str, float, float | None]]]:
        """For the status page (read only): the series of the families named (see
        `Peeked`), and each producer followed and not yet past its deadline as
        (service, instance, last push as Unix time, learned export interval)."""
        with self._lock:
            series = _peek(self.store, names)
            now, wall = self.store.clock(), self.wall_clock()
            producers = [
                (service, instance, wall - (now - live.last), live.interval)
                for (service, instance), live in self.store.producers.items()
                if live.expires >= now
            ]
        return series, producers

    def collect(self) -> list[Family]:
        with self._lock:
            families = self.store.collect()
            series, size = self.store.series_count, self.store.bytes
            producers = (len(self.store.producers), self.store.producers_expired)
        return [
            *families,
            *self.slow_queries.collect(),
            *self.counters.families(series, size, self.inflight, producers),
        ]


def _peek(store: SeriesStore, names: Collection[str]) -> list[Peeked]:
    out: list[Peeked] = []
    for name in names:
        fam = store.families.get(name)
        for labels, series in fam.series.items() if fam is not None else ():
            if isinstance(series, NumberSeries):
                out.append((name, labels, series.value, (), ()))
            elif isinstance(series, HistogramSeries):
                out.append((name, labels, series.count, series.les, tuple(series.counts)))
            elif isinstance(series, ExpHistogramSeries | SummarySeries):
                out.append((name, labels, series.count, (), ()))
    return out
