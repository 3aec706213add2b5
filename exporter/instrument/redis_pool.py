"""Connection-pool metrics of a redis-py pool (sync or asyncio, plain or blocking).

The pool instance's `get_connection`, `release` and `make_connection` are wrapped (instance
attributes, removed again on uninstrument): wait time, pending requests and timeouts around
`get_connection`; use time from checkout to `release`; create time around the `connect()` of each
connection the pool makes, when it was not connected before. Counts are read from the pool's
connection lists when metrics are collected.

Do not also enable redis-py's own OpenTelemetry metrics for the same pool: they use these names.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from time import perf_counter
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from exporter import semconv
from exporter.instrument.pool_metrics import PoolCounts, PoolInstruments
from exporter.instrument.private import redis_pool_idle_used

_EXHAUSTED_MESSAGES = frozenset({"No connection available.", "Too many connections"})
_WRAPPED = ("get_connection", "release", "make_connection")


class RedisPool:
    """Pool metrics of one redis-py connection pool (a probe registered with `PoolInstruments`)."""

    def __init__(self, pool: Any, pools: PoolInstruments) -> None:
        self.pool = pool
        name = pools.unique_name(pool_name(pool))
        self.state = pools.state({semconv.POOL_NAME: name, semconv.DB_SYSTEM_NAME: "redis"})
        self._checked_out: dict[Any, float] = {}
        self._made: weakref.WeakKeyDictionary[Any, Callable[[], Any]] = (
            weakref.WeakKeyDictionary()
        )
        wrappers = _async_wrappers(self) if is_async_pool(pool) else _sync_wrappers(self)
        self._wrappers = dict(zip(_WRAPPED, wrappers, strict=True))
        for name_, wrapper in self._wrappers.items():
            setattr(pool, name_, wrapper)

    def remove(self) -> None:
        self.state.active = False
        for name, wrapper in self._wrappers.items():
            if self.pool.__dict__.get(name) is wrapper:
                delattr(self.pool, name)
        for connection, wrapper in list(self._made.items()):
            if connection.__dict__.get("connect") is wrapper:
                del connection.connect
        self._checked_out.clear()

    def counts(self) -> PoolCounts | None:
        counts = redis_pool_idle_used(self.pool)
        if counts is None:
            return None
        idle, used = counts
        limit = self.pool.max_connections
        return PoolCounts(used=used, idle=idle, max=limit, idle_max=limit, idle_min=0)

    def checked_out(self, connection: Any, started: float) -> None:
        now = perf_counter()
        self.state.wait.observe(now - started)
        self._checked_out[connection] = now

    def released(self, connection: Any) -> None:
        started = self._checked_out.pop(connection, None)
        if started is not None and self.state.active:
            self.state.use.observe(perf_counter() - started)

    def made(self, connection: Any) -> None:
        original = connection.connect
        state = self.state
        if is_async_pool(self.pool):
            async def connect() -> None:
                if not state.active or _is_connected(connection):
                    await original()
                    return
                started = perf_counter()
                await original()
                state.create.observe(perf_counter() - started)
            connection.connect = self._made[connection] = connect
        else:
            def connect_sync() -> None:
                if not state.active or _is_connected(connection):
                    original()
                    return
                started = perf_counter()
                original()
                state.create.observe(perf_counter() - started)
            connection.connect = self._made[connection] = connect_sync


def is_async_pool(pool: Any) -> bool:
    return type(pool).__module__.startswith("redis.asyncio")


def pool_name(pool: Any) -> str:
    """`host:port/db`, or the socket path and db; never credentials."""
    kwargs = pool.connection_kwargs
    path = kwargs.get("path")
    address = path or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return f"{address}/{kwargs.get('db', 0)}"


def _is_connected(connection: Any) -> bool:
    connected = getattr(connection, "is_connected", None)
    if isinstance(connected, bool):
        return connected
    return getattr(connection, "_sock", None) is not None


def _exhausted(error: RedisConnectionError) -> bool:
    return type(error).__name__ == "MaxConnectionsError" or str(error) in _EXHAUSTED_MESSAGES


def _sync_wrappers(probe: RedisPool) -> tuple[Callable[..., Any], ...]:
    pool, state = probe.pool, probe.state
    get_connection, release, make_connection = pool.get_connection, pool.release, (
        pool.make_connection
    )

    def get(*args: Any, **kwargs: Any) -> Any:
        if not state.active:
            return get_connection(*args, **kwargs)
        started = perf_counter()
        state.enter()
        try:
            connection = get_connection(*args, **kwargs)
        except RedisConnectionError as error:
            if _exhausted(error):
                state.timed_out()
            raise
        finally:
            state.leave()
        probe.checked_out(connection, started)
        return connection

    def put(connection: Any) -> Any:
        probe.released(connection)
        return release(connection)

    def make() -> Any:
        connection = make_connection()
        if state.active:
            probe.made(connection)
        return connection

    return get, put, make


def _async_wrappers(probe: RedisPool) -> tuple[Callable[..., Any], ...]:
    pool, state = probe.pool, probe.state
    get_connection, release, make_connection = pool.get_connection, pool.release, (
        pool.make_connection
    )

    async def get(*args: Any, **kwargs: Any) -> Any:
        if not state.active:
            return await get_connection(*args, **kwargs)
        started = perf_counter()
        state.enter()
        try:
            connection = await get_connection(*args, **kwargs)
        except RedisConnectionError as error:
            if _exhausted(error):
                state.timed_out()
            raise
        finally:
            state.leave()
        probe.checked_out(connection, started)
        return connection

    async def put(connection: Any) -> Any:
        probe.released(connection)
        return await release(connection)

    def make() -> Any:
        connection = make_connection()
        if state.active:
            probe.made(connection)
        return connection

    return get, put, make
