"""The example app against a Redis of its own, on SQLite and on a throwaway PostgreSQL database,
with its instrumentation exporting to memory."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import create_engine, text
from starlette.applications import Starlette

from examples.tradesense_app.app import create_app
from examples.tradesense_app.settings import Settings, async_url
from examples.tradesense_app.traffic import drive
from exporter.instrument import semconv
from tests.instrument.helpers import MemoryMetricExporter, points_of
from tests.support.net import free_port
from tests.support.redis_servers import RedisServer, start_redis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("example-redis"))
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    redis.Redis.from_url(redis_server.url).flushall()
    return Settings(
        database_url=f"sqlite:///{tmp_path}/demo.db",
        redis_url=redis_server.url,
        slow_query_threshold=0.05,
        seed_trades=2000,
        slow_rows=300_000,
    )


@contextmanager
def serve(app: Starlette) -> Iterator[httpx.Client]:
    """The app under uvicorn in a thread (lifespan included), and a client for it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_for_port(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=20)


class Exported:
    def __init__(self) -> None:
        self.metrics = MemoryMetricExporter()
        self.spans = InMemorySpanExporter()

    def options(self) -> dict[str, Any]:
        return {"metric_exporter": self.metrics, "span_exporter": self.spans}


def test_cache_hits_misses_and_ttls(settings: Settings, redis_server: RedisServer) -> None:
    exported = Exported()
    with serve(create_app(settings, **exported.options())) as client:
        first = client.get("/trades", params={"user_id": 3, "limit": 5})
        second = client.get("/trades", params={"user_id": 3, "limit": 5})
        summary = client.get("/analytics/summary", params={"user_id": 3})
        again = client.get("/analytics/summary", params={"user_id": 3})
        assert client.get("/trades", params={"user_id": "x"}).status_code == 400
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
    assert first.json() == second.json()
    assert len(first.json()["trades"]) == 5
    assert (summary.headers["X-Cache"], again.headers["X-Cache"]) == ("miss", "hit")
    assert summary.json()["symbols"]
    keys = redis.Redis.from_url(redis_server.url)
    assert 290 < keys.ttl("tradesense:trades:3:5") <= 300
    assert 3590 < keys.ttl("tradesense:analytics:3") <= 3600


def test_instrumented_pool_query_and_slow_query_metrics(settings: Settings) -> None:
    exported = Exported()
    app = create_app(settings, **exported.options())
    with serve(app) as client:
        client.get("/trades", params={"user_id": 1})
        slow = client.get("/analytics/summary", params={"user_id": 1, "slow": "1"})
        assert slow.headers["X-Cache"] == "bypass"
        app.state.instrumentation.force_flush()
        data = exported.metrics.exports[-1]
    sqlite_max = [p for p in points_of(data, semconv.CONNECTION_MAX)
                  if p.attributes[semconv.DB_SYSTEM_NAME] == "sqlite"]
    assert [p.value for p in sqlite_max] == [60]  # TradeSense's 20 + 40
    redis_max = [p for p in points_of(data, semconv.CONNECTION_MAX)
                 if p.attributes[semconv.DB_SYSTEM_NAME] == "redis"]
    assert len(redis_max) == 1
    durations = {(p.attributes.get(semconv.DB_OPERATION_NAME),
                  p.attributes.get(semconv.DB_COLLECTION_NAME))
                 for p in points_of(data, semconv.OPERATION_DURATION)}
    assert ("SELECT", "trades") in durations
    slow_spans = [s for s in exported.spans.get_finished_spans()
                  if "WITH RECURSIVE" in str(s.attributes.get(semconv.DB_QUERY_FINGERPRINT))]
    assert len(slow_spans) == 1
    assert slow_spans[0].name == "SELECT trades"


def test_traffic_makes_hits_misses_and_slow_queries(settings: Settings) -> None:
    with serve(create_app(settings, **Exported().options())) as client:
        stats = asyncio.run(drive(str(client.base_url), rate=60, duration=2.5, slow_every=20,
                                  report_every=0))
    assert stats["errors"] == 0
    assert stats["cache_hit"] > 0 and stats["cache_miss"] > 0
    assert stats["slow"] >= 3


def _wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} never opened")


@pytest.fixture
def postgres_database() -> Iterator[str]:
    admin = create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
                          isolation_level="AUTOCOMMIT")
    name = f"tradesense_example_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
    except Exception as error:
        pytest.skip(f"PostgreSQL unavailable: {type(error).__name__}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def test_on_postgresql_the_slow_summary_sleeps(
    settings: Settings, postgres_database: str
) -> None:
    assert async_url(postgres_database).startswith("postgresql+asyncpg://")
    exported = Exported()
    on_postgres = Settings(database_url=postgres_database, redis_url=settings.redis_url,
                           seed_trades=500)
    with serve(create_app(on_postgres, **exported.options())) as client:
        started = time.perf_counter()
        response = client.get("/analytics/summary", params={"user_id": 2, "slow": "1"})
        assert time.perf_counter() - started >= 0.6
        started = time.perf_counter()
        nobody = client.get("/analytics/summary", params={"user_id": 987654, "slow": "1"})
        assert nobody.status_code == 200 and time.perf_counter() - started >= 0.6
        assert response.status_code == 200
        assert response.json()["totals"]["trades"] > 0
        assert client.get("/analytics/summary", params={"user_id": 2}).json()["symbols"]
    first, other = [s for s in exported.spans.get_finished_spans()
                    if s.attributes.get(semconv.SLOW_QUERY)]
    span = first
    assert other.attributes[semconv.DB_QUERY_FINGERPRINT] == \
        first.attributes[semconv.DB_QUERY_FINGERPRINT]
    assert span.name == "SELECT trades"
    assert span.attributes[semconv.DB_QUERY_FINGERPRINT] == (
        "SELECT count(*) AS trades, sum(pnl) AS total_pnl FROM trades "
        "WHERE user_id = ? AND (SELECT pg_sleep(?)) IS NOT NULL"
    )
