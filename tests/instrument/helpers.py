"""Shared helpers of the instrumentation tests: in-memory exporters and readers of points."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics.export import (
    DataPointT,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import AnyValue

from exporter.instrument import Instrumentation, instrument

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
PG_ASYNC_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


class MemoryMetricExporter(MetricExporter):
    """Keeps every MetricsData it is given (the SDK ships no in-memory *exporter*)."""

    def __init__(self) -> None:
        super().__init__()
        self.exports: list[MetricsData] = []
        self._lock = threading.Lock()

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        with self._lock:
            self.exports.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


@dataclass
class Point:
    attributes: dict[str, Any]
    value: Any  # a number, or the histogram data point itself


def points_of(data: MetricsData, name: str) -> list[Point]:
    found = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    value = getattr(point, "value", point)
                    found.append(Point(dict(point.attributes or {}), value))
    return found


def attributes_of(item: ReadableSpan | DataPointT) -> Mapping[str, AnyValue]:
    """The attributes of a finished span or a data point: typed optional by the SDK, always set
    on what it produces."""
    assert item.attributes is not None
    return item.attributes


@dataclass
class Telemetry:
    """Our own providers exporting to memory, as `instrument()` builds them by default."""

    metrics: MemoryMetricExporter = field(default_factory=MemoryMetricExporter)
    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    handles: list[Instrumentation] = field(default_factory=list)

    def instrument(self, engine: Any = None, redis_client: Any = None,
                   **kwargs: Any) -> Instrumentation:
        handle = instrument(engine, redis_client, metric_exporter=self.metrics,
                            span_exporter=self.spans, **kwargs)
        self.handles.append(handle)
        return handle

    def collect(self) -> MetricsData:
        assert self.handles, "instrument something first"
        before = len(self.metrics.exports)
        assert self.handles[-1].force_flush()
        if len(self.metrics.exports) == before:
            return MetricsData(resource_metrics=[])  # the SDK exports nothing when it has nothing
        return self.metrics.exports[-1]

    def points(self, name: str, **match: str) -> list[Point]:
        wanted = {k.replace("__", "."): v for k, v in match.items()}
        return [p for p in points_of(self.collect(), name)
                if all(p.attributes.get(k) == v for k, v in wanted.items())]

    def value(self, name: str, **match: str) -> Any:
        found = self.points(name, **match)
        assert len(found) == 1, f"{name} {match}: {found}"
        return found[0].value

    def finished_spans(self) -> list[ReadableSpan]:
        for handle in self.handles:
            handle.force_flush()
        return list(self.spans.get_finished_spans())
