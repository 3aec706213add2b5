"""OTLP payloads produced by the real OpenTelemetry SDK in this process (for unit tests;
tests/otlp/producer.py pushes from another process)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.metrics import Meter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource


def metrics_request(
    record: Callable[[Meter], None],
    resource: dict[str, str] | None = None,
    views: Sequence[View] = (),
    delta: bool = False,
    scope: str = "exporter.instrument",
) -> tuple[ExportMetricsServiceRequest, Callable[[], ExportMetricsServiceRequest]]:
    """The request for what `record` records, and a function returning the next collection."""
    temporality = AggregationTemporality.DELTA if delta else AggregationTemporality.CUMULATIVE
    from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter

    reader = InMemoryMetricReader(
        preferred_temporality={
            Counter: temporality,
            Histogram: temporality,
            ObservableCounter: temporality,
        }
    )
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create(resource or {"service.name": "test"}),
        views=list(views),
    )
    record(provider.get_meter(scope, "1.2.3"))

    def collect() -> ExportMetricsServiceRequest:
        data = reader.get_metrics_data()
        return ExportMetricsServiceRequest() if data is None else encode_metrics(data)

    return collect(), collect
