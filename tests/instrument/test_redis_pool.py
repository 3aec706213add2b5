"""redis-py pools against the shared Redis, read-only: PING and GET of a key nobody writes."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
import redis
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from exporter import semconv
from tests.instrument.helpers import Telemetry

KEY = f"tradesense-exporter:instrument-test:{uuid.uuid4()}"
COUNT = semconv.CONNECTION_COUNT


def counts(telemetry: Telemetry) -> tuple[int, int]:
    return (
        telemetry.value(COUNT, db__client__connection__state="used"),
        telemetry.value(COUNT, db__client__connection__state="idle"),
    )


def test_client_pool_metrics(telemetry: Telemetry, redis_address: tuple[str, int]) -> None:
    host, port = redis_address
    client = redis.Redis(host=host, port=port, db=3, max_connections=7)
    telemetry.instrument(redis_client=client)
    assert client.get(KEY) is None
    assert client.ping()
    [point] = telemetry.points(semconv.CONNECTION_MAX)
    assert point.attributes == {
        semconv.POOL_NAME: f"{host}:{port}/3", semconv.DB_SYSTEM_NAME: "redis",
    }
    assert point.value == 7
    assert counts(telemetry) == (0, 1)
    assert telemetry.value(semconv.CONNECTION_CREATE_TIME).count == 1
    assert telemetry.value(semconv.CONNECTION_WAIT_TIME).count == 2
    assert telemetry.value(semconv.CONNECTION_USE_TIME).count == 2
    client.close()


def test_blocking_pool_waits_and_times_out(
    telemetry: Telemetry, redis_address: tuple[str, int]
) -> None:
    host, port = redis_address
    pool = redis.BlockingConnectionPool(host=host, port=port, max_connections=2, timeout=1.0)
    client = redis.Redis(connection_pool=pool)
    telemetry.instrument(redis_client=client)
    held = [pool.get_connection() for _ in range(2)]
    assert counts(telemetry) == (2, 0)

    failures: list[BaseException] = []
    waiter = threading.Thread(target=lambda: _ping_into(client, failures))
    waiter.start()
    deadline = time.monotonic() + 0.9
    while telemetry.value(semconv.CONNECTION_PENDING_REQUESTS) != 1:
        assert time.monotonic() < deadline, "the waiting request was never pending"
        time.sleep(0.02)
    waiter.join()
    assert isinstance(failures[0], RedisConnectionError)
    assert telemetry.value(semconv.CONNECTION_TIMEOUTS) == 1
    assert telemetry.value(semconv.CONNECTION_PENDING_REQUESTS) == 0

    threading.Timer(0.2, pool.release, args=(held.pop(),)).start()
    assert client.ping()
    wait_time = telemetry.value(semconv.CONNECTION_WAIT_TIME)
    assert wait_time.count == 3
    assert wait_time.max >= 0.15
    pool.release(held.pop())
    assert counts(telemetry) == (0, 2)
    pool.disconnect()


def _ping_into(client: redis.Redis, failures: list[BaseException]) -> None:
    try:
        client.ping()
    except BaseException as error:
        failures.append(error)


def test_exhausted_plain_pool_counts_as_a_timeout(
    telemetry: Telemetry, redis_address: tuple[str, int]
) -> None:
    host, port = redis_address
    pool = redis.ConnectionPool(host=host, port=port, max_connections=1)
    telemetry.instrument(redis_client=pool)
    held = pool.get_connection()
    with pytest.raises(RedisConnectionError):
        pool.get_connection()
    assert telemetry.value(semconv.CONNECTION_TIMEOUTS) == 1
    pool.release(held)
    pool.disconnect()


def test_asyncio_blocking_pool(telemetry: Telemetry, redis_address: tuple[str, int]) -> None:
    host, port = redis_address

    async def scenario() -> None:
        pool = redis.asyncio.BlockingConnectionPool(
            host=host, port=port, max_connections=1, timeout=0.3
        )
        client = redis.asyncio.Redis(connection_pool=pool)
        telemetry.instrument(redis_client=client)
        assert await client.get(KEY) is None
        held = await pool.get_connection()
        assert counts(telemetry) == (1, 0)
        waiting = asyncio.ensure_future(client.ping())
        await asyncio.sleep(0.1)
        assert telemetry.value(semconv.CONNECTION_PENDING_REQUESTS) == 1
        with pytest.raises(RedisConnectionError):
            await waiting
        assert telemetry.value(semconv.CONNECTION_TIMEOUTS) == 1
        await pool.release(held)
        assert counts(telemetry) == (0, 1)
        assert telemetry.value(semconv.CONNECTION_CREATE_TIME).count == 1
        assert telemetry.value(semconv.CONNECTION_USE_TIME).count == 2
        await client.aclose()

    asyncio.run(scenario())


def test_uninstrument_restores_the_pool(
    telemetry: Telemetry, redis_address: tuple[str, int]
) -> None:
    host, port = redis_address
    client = redis.Redis(host=host, port=port)
    pool = client.connection_pool
    handle = telemetry.instrument(redis_client=client)
    assert client.ping()
    connection = pool.get_connection()
    pool.release(connection)
    handle.uninstrument()
    for name in ("get_connection", "release", "make_connection"):
        assert name not in vars(pool)
    assert "connect" not in vars(connection)
    assert client.ping()
    assert telemetry.points(COUNT) == []
    assert telemetry.instrument(redis_client=client).redis_pools == [pool]  # can come back
    assert telemetry.instrument(redis_client=client).redis_pools == []  # but only once
    client.close()
