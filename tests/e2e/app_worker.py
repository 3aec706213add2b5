"""An application process for the end-to-end tests, instrumented with exporter.instrument and
exporting over OTLP/HTTP to the sidecar named by OTEL_EXPORTER_OTLP_ENDPOINT:

    python tests/e2e/app_worker.py SCENARIO [ARG...]

Scenarios: `slow-pg DSN TABLE`, `pool DSN`, `sqlite PATH QUERIES`, `async URL TABLE QUERIES`,
`redis URL`, `redis-async URL`. Each flushes its telemetry and reports as one JSON line on
stdout at every step the test checks; the test answers on stdin with a line to go on, and ends
the process by closing stdin (the SDK's exit hook exports once more).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

import redis
import redis.asyncio
from opentelemetry.trace import Tracer
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import Engine, bindparam, create_engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import create_async_engine

from exporter.instrument import instrument

SLEEP = 0.6
# Literal SELECTs: (email, password, card numbers); both fold to one fingerprint.
LITERAL_CALLS = (
    ("alice@example.com", "hunter2-Secret!", ("4111 1111 1111 1111", "4111111111111111")),
    ("bob@example.org", "correct-Horse-Battery9", ("5500 0000 0000 0004",)),
)
BOUND_CALL = ("carol@example.net", ("4111 1111 1111 1111", "378282246310005", "6011000990139424"))
SECRETS = (
    "hunter2-Secret!", "hunter2", "correct-Horse-Battery9", "alice@example.com",
    "bob@example.org", "carol@example.net", "@example.", "4111 1111 1111 1111",
    "4111111111111111", "5500 0000 0000 0004", "378282246310005", "6011000990139424",
)


def report(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def wait_for_test() -> bool:
    """True when the test says go on, False when it closed stdin."""
    return bool(sys.stdin.readline())


def slow_pg(dsn: str, table: str) -> None:
    engine = create_engine(dsn)
    handle = instrument(engine)
    tracer = handle.telemetry.tracer_provider.get_tracer("tests.e2e")
    # One matching row per call: pg_sleep in FROM runs only when the other side has rows.
    seed = [(email, password, cards[0]) for email, password, cards in LITERAL_CALLS]
    seed.append((BOUND_CALL[0], "hunter2-Secret!", BOUND_CALL[1][1]))
    values = ", ".join(f"('{email}', '{password}', '{card}', 'seed')"
                       for email, password, card in seed)
    with engine.begin() as connection:
        connection.execute(text(
            f"INSERT INTO {table} (email, password, card_number, note) VALUES {values}"
        ))
    calls = []
    for email, password, cards in LITERAL_CALLS:
        listed = ", ".join(f"'{card}'" for card in cards)
        statement = (
            f"SELECT a.id FROM {table} a, pg_sleep({SLEEP}) WHERE a.email = '{email}' "
            f"AND a.password = '{password}' AND a.card_number IN ({listed})"
        )
        calls.append(_traced(engine, tracer, "SELECT", statement, {}))
    bound = text(
        f"UPDATE {table} SET note = :note WHERE id IN (SELECT id FROM {table}, "
        f"pg_sleep({SLEEP}) WHERE email = :email AND card_number IN :cards)"
    ).bindparams(bindparam("cards", expanding=True))
    bound_email, bound_cards = BOUND_CALL
    calls.append(_traced(engine, tracer, "UPDATE", bound, {
        "note": "hunter2-Secret!", "email": bound_email, "cards": list(bound_cards)}))
    report(calls=calls, flushed=handle.force_flush())
    wait_for_test()


def _traced(engine: Engine, tracer: Tracer, operation: str, statement: Any,
            parameters: dict[str, Any]) -> dict[str, Any]:
    """Runs `statement` inside a span of its own; the slow-query span shares its trace."""
    if isinstance(statement, str):
        statement = text(statement)
    with tracer.start_as_current_span("e2e request") as span:
        started = perf_counter()
        with engine.begin() as connection:
            connection.execute(statement, parameters)
        seconds = perf_counter() - started
    trace_id = format(span.get_span_context().trace_id, "032x")
    return {"operation": operation, "trace_id": trace_id, "seconds": seconds}


def pool(dsn: str) -> None:
    """A pool of 2 + 1 overflow: three threads hold every connection, two more time out."""
    engine = create_engine(dsn, pool_size=2, max_overflow=1, pool_timeout=0.3)
    handle = instrument(engine)
    releases = [threading.Event() for _ in range(3)]
    ready = threading.Semaphore(0)
    holders = [threading.Thread(target=_hold, args=(engine, ready, r)) for r in releases]
    for holder in holders:
        holder.start()
    for _ in holders:
        assert ready.acquire(timeout=30), "a holder did not get its connection"

    stop = threading.Event()
    timeouts: list[int] = []
    waiters = [threading.Thread(target=_keep_waiting, args=(engine, stop, timeouts))
               for _ in range(2)]
    for waiter in waiters:
        waiter.start()
    _until(lambda: len(timeouts) >= 2, "two checkouts to time out")
    before = len(timeouts)
    flushed = handle.force_flush()
    report(phase="held", flushed=flushed, timeouts_before=before, timeouts_after=len(timeouts))
    wait_for_test()

    stop.set()
    for waiter in waiters:
        waiter.join()
    waited = _wait_for_release(engine, releases[0])
    for release in releases:
        release.set()
    for holder in holders:
        holder.join()
    report(phase="released", flushed=handle.force_flush(), timeouts=len(timeouts), waited=waited)
    wait_for_test()
    engine.dispose()


def _hold(engine: Engine, ready: threading.Semaphore, release: threading.Event) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        ready.release()
        release.wait()


def _keep_waiting(engine: Engine, stop: threading.Event, timeouts: list[int]) -> None:
    while not stop.is_set():
        try:
            with engine.connect():
                raise AssertionError("the pool gave out a fourth connection")
        except sa_exc.TimeoutError:
            timeouts.append(1)


def _wait_for_release(engine: Engine, release: threading.Event) -> float:
    """One checkout that waits until a holder lets its connection go; its wait in seconds."""
    waiting, waited = threading.Event(), []

    def checkout() -> None:
        waiting.set()
        started = perf_counter()
        with engine.connect() as connection:
            waited.append(perf_counter() - started)
            connection.execute(text("SELECT 1"))

    thread = threading.Thread(target=checkout)
    thread.start()
    waiting.wait()
    time.sleep(0.1)
    release.set()
    thread.join()
    return waited[0]


def _until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


def sqlite(path: str, queries: str) -> None:
    engine = create_engine(f"sqlite:///{path}")
    handle = instrument(engine)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS trades (id INTEGER PRIMARY KEY, "
                                "symbol TEXT, pnl REAL)"))
        connection.execute(text("INSERT INTO trades (symbol, pnl) VALUES ('NVDA', 12.5)"))
    for number in range(int(queries)):
        with engine.connect() as connection:
            connection.execute(text("SELECT id, pnl FROM trades WHERE id = :id"), {"id": number})
    report(flushed=handle.force_flush())
    wait_for_test()


def async_engine(url: str, table: str, queries: str) -> None:
    asyncio.run(_async_engine(url, table, int(queries)))


async def _async_engine(url: str, table: str, queries: int) -> None:
    engine = create_async_engine(url, pool_size=3, max_overflow=2)
    handle = instrument(engine)
    if url.startswith("sqlite"):
        async with engine.begin() as connection:
            await connection.execute(text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)"))

    async def query(number: int) -> None:
        async with engine.connect() as connection:
            await connection.execute(text(f"SELECT id FROM {table} WHERE id = :id"),
                                     {"id": number})

    await asyncio.gather(*(query(n) for n in range(queries)))
    report(flushed=await asyncio.to_thread(handle.force_flush))
    await asyncio.to_thread(wait_for_test)
    await engine.dispose()


def redis_pool(url: str) -> None:
    """A blocking pool of 3: all held, one more command times out; then all released."""
    connections = redis.BlockingConnectionPool.from_url(url, max_connections=3, timeout=0.2)
    client = redis.Redis(connection_pool=connections)
    handle = instrument(redis_client=client)
    client.set("e2e:key", "value")
    assert client.get("e2e:key") == b"value"
    held = [connections.get_connection() for _ in range(3)]
    try:
        client.ping()
        raise AssertionError("the pool gave out a fourth connection")
    except RedisConnectionError:
        pass
    report(phase="held", flushed=handle.force_flush())
    wait_for_test()
    for connection in held:
        connections.release(connection)
    report(phase="released", flushed=handle.force_flush())
    wait_for_test()
    connections.disconnect()


def redis_async_pool(url: str) -> None:
    asyncio.run(_redis_async_pool(url))


async def _redis_async_pool(url: str) -> None:
    connections = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=3,
                                                                timeout=0.2)
    client = redis.asyncio.Redis(connection_pool=connections)
    handle = instrument(redis_client=client)
    await client.set("e2e:async-key", "value")
    assert await client.get("e2e:async-key") == b"value"
    held = [await connections.get_connection() for _ in range(3)]
    try:
        await client.ping()
        raise AssertionError("the pool gave out a fourth connection")
    except RedisConnectionError:
        pass
    report(phase="held", flushed=await asyncio.to_thread(handle.force_flush))
    await asyncio.to_thread(wait_for_test)
    for connection in held:
        await connections.release(connection)
    report(phase="released", flushed=await asyncio.to_thread(handle.force_flush))
    await asyncio.to_thread(wait_for_test)
    await connections.disconnect()


SCENARIOS: dict[str, Callable[..., None]] = {
    "slow-pg": slow_pg,
    "pool": pool,
    "sqlite": sqlite,
    "async": async_engine,
    "redis": redis_pool,
    "redis-async": redis_async_pool,
}


def main(argv: Sequence[str]) -> None:
    SCENARIOS[argv[0]](*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
