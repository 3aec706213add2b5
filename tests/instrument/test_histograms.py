from __future__ import annotations

import threading

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Histogram,
    InMemoryMetricReader,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from exporter.instrument.export import MergingMetricExporter
from exporter.instrument.histograms import LocalHistogram, SdkHistogram
from exporter.semconv import DURATION_BUCKETS
from tests.instrument.helpers import MemoryMetricExporter, points_of

SCOPE = InstrumentationScope("exporter.instrument", "test")
ATTRIBUTES = {"db.operation.name": "SELECT"}


def test_local_histogram_buckets_match_the_sdk() -> None:
    values = [0.0, 0.001, 0.0011, 0.05, 0.7, 10.0, 11.0, 0.001]
    local = LocalHistogram("d", "s", "", DURATION_BUCKETS)
    reader = InMemoryMetricReader()
    sdk = SdkHistogram(MeterProvider(metric_readers=[reader]).get_meter("t"), "d", "s", "",
                       DURATION_BUCKETS)
    for value in values:
        local.cell(ATTRIBUTES).observe(value)
        sdk.cell(ATTRIBUTES).observe(value)
    metric = local.metric(now_ns=1)
    assert metric is not None and isinstance(metric.data, Histogram)
    [ours] = metric.data.data_points
    data = reader.get_metrics_data()
    assert data is not None
    [theirs] = points_of(data, "d")
    for field in ("count", "sum", "bucket_counts", "explicit_bounds", "min", "max"):
        assert list(_seq(getattr(ours, field))) == list(_seq(getattr(theirs.value, field))), field
    assert ours.bucket_counts[0] == 3  # upper bounds are inclusive: 0.001 lands in (-inf, 0.001]


def _seq(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else [value]


def test_concurrent_observations_are_not_lost() -> None:
    histogram = LocalHistogram("d", "s", "", DURATION_BUCKETS)
    cell = histogram.cell(ATTRIBUTES)

    def observe() -> None:
        for _ in range(20_000):
            cell.observe(0.002)

    threads = [threading.Thread(target=observe) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    metric = histogram.metric(now_ns=1)
    assert metric is not None and isinstance(metric.data, Histogram)
    assert metric.data.data_points[0].count == 80_000


def test_one_cell_per_attribute_set() -> None:
    histogram = LocalHistogram("d", "s", "", DURATION_BUCKETS)
    assert histogram.cell({"a": "1", "b": "2"}) is histogram.cell({"b": "2", "a": "1"})
    assert histogram.metric(now_ns=1) is None  # nothing observed: nothing exported


def test_merging_exporter_adds_local_histograms_to_our_scope() -> None:
    inner = MemoryMetricExporter()
    histogram = LocalHistogram("db.client.operation.duration", "s", "", DURATION_BUCKETS)
    histogram.cell(ATTRIBUTES).observe(0.02)
    resource = Resource({"service.name": "x"})
    exporter = MergingMetricExporter(inner, lambda: [histogram], SCOPE, resource)

    exporter.export(MetricsData(resource_metrics=[]))
    [resource_metrics] = inner.exports[-1].resource_metrics
    assert resource_metrics.resource is resource
    assert [s.scope.name for s in resource_metrics.scope_metrics] == ["exporter.instrument"]

    existing = ScopeMetrics(scope=SCOPE, metrics=[], schema_url="")
    other = ScopeMetrics(scope=InstrumentationScope("app"), metrics=[], schema_url="")
    exporter.export(MetricsData(resource_metrics=[
        ResourceMetrics(resource=resource, scope_metrics=[other, existing], schema_url="")
    ]))
    scopes = inner.exports[-1].resource_metrics[0].scope_metrics
    assert [s.scope.name for s in scopes] == ["app", "exporter.instrument"]
    assert [m.name for m in scopes[1].metrics] == ["db.client.operation.duration"]
    assert points_of(inner.exports[-1], "db.client.operation.duration")[0].value.count == 1
