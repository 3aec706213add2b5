"""Connection-pool metrics of a SQLAlchemy engine.

SQLAlchemy has no event before a checkout waits, so wait time, pending requests and timeouts are
measured around `Pool.connect()`. The engine already exists when `instrument()` sees it, so its
pool's class is swapped for a subclass made for this engine (same name, module and layout; only
`connect()` differs). `Pool.recreate()`, which `engine.dispose()` calls, builds the new pool as
`self.__class__(...)`, so the replacement pool is instrumented too. Uninstrumenting restores the
original class; a pool left behind by `dispose()` keeps the subclass but it no longer measures.

Create time and use time come from the pool's `connect`, `checkout` and `checkin` events, which
`recreate()` carries over. Counts are read from the pool when metrics are collected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from time import perf_counter
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool, Pool, QueuePool, StaticPool

from exporter import semconv
from exporter.instrument.pool_metrics import PoolCounts, PoolInstruments, PoolState

_STATE = "_tradesense_pool_state"
_BASE = "_tradesense_pool_base"


class SqlAlchemyPool:
    """Pool metrics of one engine (a probe registered with `PoolInstruments`)."""

    def __init__(self, engine: Engine, pools: PoolInstruments, system: str) -> None:
        self.engine = engine
        name = pools.unique_name(pool_name(engine))
        self.state = pools.state({semconv.POOL_NAME: name, semconv.DB_SYSTEM_NAME: system})
        self._checked_out: dict[Any, float] = {}
        self._listeners: list[tuple[str, Callable[..., Any]]] = [
            ("connect", self._on_connect),
            ("checkout", self._on_checkout),
            ("checkin", self._on_checkin),
            ("detach", self._on_detach),
        ]
        for identifier, listener in self._listeners:
            event.listen(engine, identifier, listener)
        self._class = _instrumented_class(type(engine.pool), self.state)
        engine.pool.__class__ = self._class

    def remove(self) -> None:
        self.state.active = False
        pool = self.engine.pool
        if type(pool) is self._class:
            pool.__class__ = getattr(self._class, _BASE)
        for identifier, listener in self._listeners:
            if event.contains(self.engine, identifier, listener):
                event.remove(self.engine, identifier, listener)
        self._checked_out.clear()

    def counts(self) -> PoolCounts | None:
        pool = self.engine.pool
        if isinstance(pool, QueuePool):
            return _queue_pool_counts(pool)
        used = len(self._checked_out)
        if isinstance(pool, NullPool):
            return PoolCounts(used=used, idle=0, idle_max=0, idle_min=0)
        if isinstance(pool, StaticPool):
            return PoolCounts(used=min(used, 1), idle=1 - min(used, 1), max=1, idle_max=1)
        return PoolCounts(used=used)

    def _on_connect(self, dbapi_connection: Any, record: Any) -> None:
        started = getattr(record, "starttime", None)
        if self.state.active and started:
            self.state.create.observe(max(0.0, time.time() - started))

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if self.state.active:
            self._checked_out[record] = perf_counter()

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        started = self._checked_out.pop(record, None)
        if started is not None and self.state.active:
            self.state.use.observe(perf_counter() - started)

    def _on_detach(self, dbapi_connection: Any, record: Any) -> None:
        self._checked_out.pop(record, None)


def pool_name(engine: Engine) -> str:
    """`pool_logging_name` if the engine has one, else `host:port/database` (no credentials)."""
    logging_name = getattr(engine.pool, "_orig_logging_name", None)
    if logging_name:
        return str(logging_name)
    url = engine.url
    if not url.host:
        return url.database or ":memory:"
    address = f"{url.host}:{url.port}" if url.port else url.host
    return f"{address}/{url.database}" if url.database else address


def _queue_pool_counts(pool: QueuePool) -> PoolCounts:
    size = pool.size()
    max_overflow = getattr(pool, "_max_overflow", -1)
    bounded = size > 0 and max_overflow >= 0
    return PoolCounts(
        used=pool.checkedout(),
        idle=pool.checkedin(),
        max=size + max_overflow if bounded else None,
        idle_max=size if size > 0 else None,
        idle_min=0,
    )


def _instrumented_class(base: type[Pool], state: PoolState) -> type[Pool]:
    base = getattr(base, _BASE, base)

    def connect(self: Pool) -> Any:
        if not state.active:
            return base.connect(self)
        started = perf_counter()
        state.enter()
        try:
            connection = base.connect(self)
        except sa_exc.TimeoutError:
            state.timed_out()
            raise
        finally:
            state.leave()
        state.wait.observe(perf_counter() - started)
        return connection

    namespace = {
        "__slots__": (),
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__doc__": base.__doc__,
        "connect": connect,
        _STATE: state,
        _BASE: base,
    }
    return type(base.__name__, (base,), namespace)
