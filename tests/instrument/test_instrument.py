from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import create_engine, text

from exporter import semconv
from exporter.instrument import instrument
from tests.instrument.helpers import attributes_of, points_of


def test_the_apps_providers_are_used_when_given() -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(spans))
    engine = create_engine("sqlite://", pool_logging_name="app-pool")
    handle = instrument(engine, meter_provider=meters, tracer_provider=tracer,
                        slow_query_threshold=0.0)
    try:
        assert handle.telemetry.meter_provider is meters
        with engine.connect() as connection:
            connection.execute(text("SELECT 1")).all()
        data = reader.get_metrics_data()
        assert data is not None
        [duration] = points_of(data, semconv.OPERATION_DURATION)
        assert duration.value.count == 1
        assert list(duration.value.explicit_bounds) == list(semconv.DURATION_BUCKETS)
        assert [p.attributes[semconv.POOL_NAME] for p in points_of(
            data, semconv.CONNECTION_WAIT_TIME)] == ["app-pool"]
        assert [attributes_of(s)[semconv.SLOW_QUERY]
                for s in spans.get_finished_spans()] == [True]
    finally:
        handle.uninstrument()
        meters.shutdown()


def test_several_engines_and_clients_in_one_call() -> None:
    first, second = create_engine("sqlite://"), create_engine("sqlite://")
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    handle = instrument([first, second], meter_provider=meters)
    try:
        assert handle.engines == [first, second]
        data = reader.get_metrics_data()
        assert data is not None
        names = {p.attributes[semconv.POOL_NAME]
                 for p in points_of(data, semconv.CONNECTION_COUNT)}
        assert names == {":memory:", ":memory:#2"}
    finally:
        handle.uninstrument()
        meters.shutdown()


def test_something_else_is_refused() -> None:
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    with pytest.raises(TypeError, match="not a SQLAlchemy Engine"):
        instrument(object(), meter_provider=meters)
    with pytest.raises(TypeError, match="not a redis-py client"):
        instrument(redis_client="redis://localhost", meter_provider=meters)
    meters.shutdown()
