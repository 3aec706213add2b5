from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool, QueuePool

from exporter import semconv
from tests.instrument.helpers import Telemetry

COUNT = semconv.CONNECTION_COUNT
STATE = "db.client.connection.state"


def count(telemetry: Telemetry, state: str) -> int:
    return telemetry.value(COUNT, db__client__connection__state=state)


def test_pool_of_20_plus_40_overflow_reports_max_60(telemetry: Telemetry, postgres: str) -> None:
    engine = create_engine(postgres, pool_size=20, max_overflow=40)
    telemetry.instrument(engine)
    assert telemetry.value(semconv.CONNECTION_MAX) == 60
    assert telemetry.value(semconv.CONNECTION_IDLE_MAX) == 20
    assert telemetry.value(semconv.CONNECTION_IDLE_MIN) == 0
    engine.dispose()


def test_pool_attributes_name_the_pool_without_credentials(telemetry: Telemetry) -> None:
    engine = create_engine("postgresql+psycopg2://app:s3cret-pw@db.internal:5433/trading")
    telemetry.instrument(engine)
    [point] = telemetry.points(semconv.CONNECTION_MAX)
    assert point.attributes == {
        semconv.POOL_NAME: "db.internal:5433/trading",
        semconv.DB_SYSTEM_NAME: "postgresql",
    }


def test_pool_logging_name_is_the_pool_name(telemetry: Telemetry, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/a.db", pool_logging_name="orders-db")
    telemetry.instrument(engine)
    [point] = telemetry.points(semconv.CONNECTION_MAX)
    assert point.attributes[semconv.POOL_NAME] == "orders-db"


def test_counts_follow_checkouts_even_when_instrumented_late(
    telemetry: Telemetry, postgres: str
) -> None:
    engine = create_engine(postgres, pool_size=2, max_overflow=1)
    held = [engine.connect() for _ in range(3)]
    held.pop().close()
    telemetry.instrument(engine)
    assert (count(telemetry, "used"), count(telemetry, "idle")) == (2, 1)
    held.pop().close()
    assert (count(telemetry, "used"), count(telemetry, "idle")) == (1, 2)
    held.pop().close()  # the pool is full: this one is closed, not kept
    assert (count(telemetry, "used"), count(telemetry, "idle")) == (0, 2)
    engine.dispose()


def test_detached_connection_is_no_longer_counted(telemetry: Telemetry, postgres: str) -> None:
    engine = create_engine(postgres, pool_size=2, max_overflow=0)
    telemetry.instrument(engine)
    connection = engine.connect()
    connection.detach()
    assert count(telemetry, "used") == 0
    connection.close()
    assert count(telemetry, "used") == 0
    engine.dispose()


def test_waiting_and_timeouts_of_a_pool_of_two_plus_one(
    telemetry: Telemetry, postgres: str
) -> None:
    engine = create_engine(postgres, pool_size=2, max_overflow=1, pool_timeout=0.5)
    telemetry.instrument(engine)
    held = [engine.connect() for _ in range(3)]
    assert telemetry.value(semconv.CONNECTION_MAX) == 3
    assert (count(telemetry, "used"), count(telemetry, "idle")) == (3, 0)

    outcome: list[BaseException] = []
    waiter = threading.Thread(target=_checkout_into, args=(engine, outcome))
    waiter.start()
    _eventually(lambda: telemetry.value(semconv.CONNECTION_PENDING_REQUESTS) == 1)
    waiter.join()
    assert isinstance(outcome[0], exc.TimeoutError)
    assert telemetry.value(semconv.CONNECTION_PENDING_REQUESTS) == 0
    assert telemetry.value(semconv.CONNECTION_TIMEOUTS) == 1

    released = threading.Timer(0.2, held.pop().close)
    released.start()
    started = time.perf_counter()
    with engine.connect():
        waited = time.perf_counter() - started
    wait_time = telemetry.value(semconv.CONNECTION_WAIT_TIME)
    assert wait_time.count == 4  # the three first checkouts and the one that waited
    assert 0.15 <= wait_time.max <= waited
    assert telemetry.value(semconv.CONNECTION_CREATE_TIME).count == 3
    assert telemetry.value(semconv.CONNECTION_USE_TIME).count == 2
    for connection in held:
        connection.close()
    engine.dispose()


def _checkout_into(engine: object, outcome: list[BaseException]) -> None:
    try:
        engine.connect()  # type: ignore[attr-defined]
    except BaseException as error:
        outcome.append(error)


def _eventually(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)


def test_use_time_spans_checkout_to_checkin(telemetry: Telemetry, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/a.db")
    telemetry.instrument(engine)
    with engine.connect():
        time.sleep(0.12)
    use_time = telemetry.value(semconv.CONNECTION_USE_TIME)
    assert use_time.count == 1
    assert 0.12 <= use_time.sum < 5
    assert list(use_time.explicit_bounds) == list(semconv.DURATION_BUCKETS)


def test_instrumentation_survives_dispose(telemetry: Telemetry, postgres: str) -> None:
    engine = create_engine(postgres, pool_size=2, max_overflow=1, pool_timeout=0.2)
    telemetry.instrument(engine)
    old_pool = engine.pool
    engine.dispose()
    assert engine.pool is not old_pool
    held = [engine.connect() for _ in range(3)]
    assert (count(telemetry, "used"), count(telemetry, "idle")) == (3, 0)
    with pytest.raises(exc.TimeoutError):
        engine.connect()
    assert telemetry.value(semconv.CONNECTION_TIMEOUTS) == 1
    assert telemetry.value(semconv.CONNECTION_CREATE_TIME).count == 3
    for connection in held:
        connection.close()
    assert (count(telemetry, "used"), count(telemetry, "idle")) == (0, 2)
    engine.dispose()


def test_async_engine_pool_waits_and_times_out(
    telemetry: Telemetry, postgres_async: str
) -> None:
    async def scenario() -> None:
        engine = create_async_engine(postgres_async, pool_size=2, max_overflow=1,
                                     pool_timeout=0.3)
        telemetry.instrument(engine)
        held = [await engine.connect() for _ in range(3)]
        assert (count(telemetry, "used"), count(telemetry, "idle")) == (3, 0)
        async def checkout() -> object:
            return await engine.connect()

        waiting = asyncio.create_task(checkout())
        await asyncio.sleep(0.1)
        assert telemetry.value(semconv.CONNECTION_PENDING_REQUESTS) == 1
        with pytest.raises(exc.TimeoutError):
            await waiting
        assert telemetry.value(semconv.CONNECTION_TIMEOUTS) == 1
        assert telemetry.value(semconv.CONNECTION_PENDING_REQUESTS) == 0
        for connection in held:
            await connection.close()
        assert (count(telemetry, "used"), count(telemetry, "idle")) == (0, 2)
        assert telemetry.value(semconv.CONNECTION_USE_TIME).count == 3
        await engine.dispose()

    asyncio.run(scenario())


def test_uninstrument_restores_the_pool_and_removes_every_listener(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/a.db")
    pool_class = type(engine.pool)
    handle = telemetry.instrument(engine)
    assert type(engine.pool) is not pool_class
    assert type(engine.pool).__name__ == pool_class.__name__
    handle.uninstrument()
    assert type(engine.pool) is pool_class
    for identifier in ("connect", "checkout", "checkin", "detach"):
        assert not engine.pool.dispatch.__getattr__(identifier), identifier
    for name in ("do_execute", "do_executemany", "do_execute_no_params"):
        assert name not in vars(engine.dialect), name
    assert not engine._has_events
    assert telemetry.points(semconv.CONNECTION_COUNT) == []
    handle.uninstrument()  # a second time is harmless


def test_uninstrument_after_dispose_removes_listeners_from_the_new_pool(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/a.db")
    handle = telemetry.instrument(engine)
    engine.dispose()
    handle.uninstrument()
    assert type(engine.pool) is QueuePool
    assert not engine.pool.dispatch.checkout
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def test_instrumenting_twice_does_nothing_the_second_time(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/a.db")
    first = telemetry.instrument(engine)
    second = telemetry.instrument(engine)
    assert first.engines == [engine]
    assert second.engines == []
    assert len(engine.pool.dispatch.checkout) == 1
    with engine.connect():
        pass
    assert len(telemetry.points(COUNT)) == 2  # one pool: used and idle
    assert telemetry.value(semconv.CONNECTION_USE_TIME).count == 1
    second.uninstrument()
    assert len(engine.pool.dispatch.checkout) == 1  # the first handle still owns it


def test_other_listeners_are_kept(telemetry: Telemetry, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/a.db")
    seen: list[str] = []
    event.listen(engine, "checkout", lambda *args: seen.append("checkout"))
    telemetry.instrument(engine).uninstrument()
    with engine.connect():
        pass
    assert seen == ["checkout"]


def test_null_pool_reports_the_connections_in_use(telemetry: Telemetry, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/a.db", poolclass=NullPool)
    telemetry.instrument(engine)
    with engine.connect():
        assert (count(telemetry, "used"), count(telemetry, "idle")) == (1, 0)
    assert (count(telemetry, "used"), count(telemetry, "idle")) == (0, 0)
    assert telemetry.points(semconv.CONNECTION_MAX) == []
    assert telemetry.value(semconv.CONNECTION_CREATE_TIME).count == 1
