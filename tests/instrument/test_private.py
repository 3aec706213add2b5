"""Each private attribute instrument/ reads, against the installed releases of redis-py, the
OpenTelemetry SDK and OTLP exporter, FastAPI and its OpenTelemetry instrumentation."""

from __future__ import annotations

import asyncio

import fastapi
import pytest
import redis
import redis.asyncio
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.metrics import Counter
from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.metrics.view import LastValueAggregation

from exporter.instrument.private import (
    exporter_preferences,
    fastapi_telemetry,
    instrumented_by_opentelemetry,
    otlp_request_sender,
    redis_pool_idle_used,
)

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.mark.parametrize("pool_class", [redis.ConnectionPool, redis.BlockingConnectionPool])
def test_sync_redis_pools_count_idle_and_used(pool_class: type[redis.ConnectionPool]) -> None:
    pool = pool_class.from_url(REDIS_URL, max_connections=5)
    first, second = pool.get_connection(), pool.get_connection()
    assert redis_pool_idle_used(pool) == (0, 2)
    pool.release(first)
    assert redis_pool_idle_used(pool) == (1, 1)
    pool.release(second)
    pool.disconnect()


@pytest.mark.parametrize(
    "pool_class", [redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool])
def test_asyncio_redis_pools_count_idle_and_used(
        pool_class: type[redis.asyncio.ConnectionPool]) -> None:
    async def run() -> list[tuple[int, int] | None]:
        pool = pool_class.from_url(REDIS_URL, max_connections=5)
        first, second = await pool.get_connection(), await pool.get_connection()
        seen = [redis_pool_idle_used(pool)]
        await pool.release(first)
        seen.append(redis_pool_idle_used(pool))
        await pool.release(second)
        await pool.disconnect()
        return seen

    assert asyncio.run(run()) == [(0, 2), (1, 1)]


def test_an_unknown_pool_has_no_counts() -> None:
    assert redis_pool_idle_used(object()) is None


def test_the_otlp_exporters_preferences_and_its_own_send_are_found() -> None:
    exporter = OTLPMetricExporter(
        endpoint="http://127.0.0.1:9/v1/metrics",
        preferred_temporality={Counter: AggregationTemporality.DELTA},
        preferred_aggregation={Counter: LastValueAggregation()},
    )
    preferences = exporter_preferences(exporter)
    assert preferences["preferred_temporality"][Counter] is AggregationTemporality.DELTA
    assert isinstance(preferences["preferred_aggregation"][Counter], LastValueAggregation)
    assert otlp_request_sender(exporter) is not None
    exporter.shutdown()


def test_fastapis_own_telemetry_settings_and_the_instrumentors_flag() -> None:
    app = fastapi.FastAPI()
    settings = fastapi_telemetry(app)
    assert settings is not None and settings.get("metrics", True) is True
    assert not instrumented_by_opentelemetry(app)
    FastAPIInstrumentor.instrument_app(app)
    try:
        assert instrumented_by_opentelemetry(app)
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    assert not instrumented_by_opentelemetry(app)
