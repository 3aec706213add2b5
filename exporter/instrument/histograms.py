"""Histogram sinks: where the per-query and per-checkout durations go.

The OpenTelemetry SDK's `Histogram.record()` costs about 15 µs per call on the reference machine
(attribute validation, hashing, exemplar sampling), three times the whole per-query budget. When
the instrumentation owns the MeterProvider it therefore aggregates locally (`LocalHistogram`) and
`MergingMetricExporter` adds the aggregated points to each export. With an application's
provider it records through the SDK (`SdkHistogram`).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Protocol

from opentelemetry.metrics import Histogram as ApiHistogram
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
)

Attributes = Mapping[str, str]
_BATCH = 64


class Cell(Protocol):
    def observe(self, value: float) -> None: ...


class HistogramSink(Protocol):
    def cell(self, attributes: Attributes) -> Cell: ...


class LocalCell:
    """One attribute set's histogram. An observation is appended to a deque (atomic, no lock);
    every `_BATCH` observations, and before each export, the deque is folded into the buckets
    under a lock. On the measuring thread that costs a fraction of a lock per observation."""

    __slots__ = ("_bounds", "_lock", "_pending", "attributes", "counts", "max", "min",
                 "start_ns", "sum")

    def __init__(self, attributes: Attributes, bounds: Sequence[float]) -> None:
        self.attributes = dict(attributes)
        self._bounds = bounds
        self._lock = threading.Lock()
        self._pending: deque[float] = deque()
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.start_ns = time_ns()

    def observe(self, value: float) -> None:
        pending = self._pending
        pending.append(value)
        if len(pending) >= _BATCH:
            self.fold()

    def fold(self) -> None:
        with self._lock:
            take, counts, bounds = self._pending.popleft, self.counts, self._bounds
            total, low, high = self.sum, self.min, self.max
            try:
                while True:
                    value = take()
                    counts[bisect_left(bounds, value)] += 1
                    total += value
                    if value < low:
                        low = value
                    if value > high:
                        high = value
            except IndexError:
                pass
            self.sum, self.min, self.max = total, low, high

    def point(self, now_ns: int) -> HistogramDataPoint | None:
        self.fold()
        with self._lock:
            counts, total, low, high = list(self.counts), self.sum, self.min, self.max
        count = sum(counts)
        if not count:
            return None
        return HistogramDataPoint(
            attributes=self.attributes,
            start_time_unix_nano=self.start_ns,
            time_unix_nano=now_ns,
            count=count,
            sum=total,
            bucket_counts=counts,
            explicit_bounds=list(self._bounds),
            min=low,
            max=high,
        )


class LocalHistogram:
    """A cumulative explicit-bucket histogram aggregated in process."""

    def __init__(self, name: str, unit: str, description: str, bounds: Sequence[float]) -> None:
        self.name, self.unit, self.description = name, unit, description
        self._bounds = tuple(bounds)
        self._cells: dict[tuple[tuple[str, str], ...], LocalCell] = {}
        self._lock = threading.Lock()

    def cell(self, attributes: Attributes) -> LocalCell:
        key = tuple(sorted(attributes.items()))
        found = self._cells.get(key)
        if found is None:
            with self._lock:
                found = self._cells.setdefault(key, LocalCell(attributes, self._bounds))
        return found

    def metric(self, now_ns: int) -> Metric | None:
        points = [p for c in list(self._cells.values()) if (p := c.point(now_ns)) is not None]
        if not points:
            return None
        data = Histogram(
            data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE
        )
        return Metric(name=self.name, description=self.description, unit=self.unit, data=data)


class SdkCell:
    __slots__ = ("_attributes", "_histogram")

    def __init__(self, histogram: ApiHistogram, attributes: Attributes) -> None:
        self._histogram, self._attributes = histogram, dict(attributes)

    def observe(self, value: float) -> None:
        self._histogram.record(value, self._attributes)


class SdkHistogram:
    """Records each value through an OpenTelemetry meter (an application's provider)."""

    def __init__(
        self, meter: Meter, name: str, unit: str, description: str, bounds: Sequence[float]
    ) -> None:
        self._histogram = meter.create_histogram(
            name, unit=unit, description=description,
            explicit_bucket_boundaries_advisory=list(bounds),
        )

    def cell(self, attributes: Attributes) -> SdkCell:
        return SdkCell(self._histogram, attributes)
