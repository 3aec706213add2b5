"""`db.client.operation.duration` for every statement, and a span for each slow one.

The engine's dialect object gets its own `do_execute`, `do_executemany` and
`do_execute_no_params` (instance attributes wrapping the dialect's methods, removed again on
uninstrument): SQLAlchemy calls exactly these to run a statement on the DBAPI cursor, after any
`DialectEvents` listeners of the application. Two hooks were measured and rejected: engine events
(`before/after_cursor_execute`), because registering any engine event moves every statement onto
SQLAlchemy's event path, about 8 µs per statement; and the dialect events of the same names,
whose dispatch alone costs 1.3 to 2 µs per statement and whose listener, having run the
statement, would stop listeners added after it.

Per statement text, the (operation, collection) parse and the histogram cell are cached; the
fingerprint is computed only when the statement is first slow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter, time_ns
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from sqlalchemy.engine import Engine

from exporter import semconv
from exporter.bounded import BoundedNames
from exporter.fingerprint import fingerprint
from exporter.instrument.collection import describe
from exporter.instrument.histograms import Cell, HistogramSink

log = logging.getLogger(__name__)

_CACHE_SIZE = 4096
_CACHE_CHARACTERS = 4_000_000
MAX_FINGERPRINT = 8192


@dataclass
class Bounds:
    operations: BoundedNames
    collections: BoundedNames
    errors: BoundedNames


@dataclass
class _Statement:
    cell: Cell
    attributes: dict[str, str]
    name: str
    text: str
    fingerprint: str | None = None


class EngineQueries:
    """The timing listeners of one engine."""

    def __init__(
        self,
        engine: Engine,
        system: str,
        sink: HistogramSink,
        tracer: Tracer,
        bounds: Bounds,
        slow_threshold: float | None,
    ) -> None:
        self.engine, self._system, self._sink = engine, system, sink
        self._tracer, self._bounds = tracer, bounds
        self._threshold = float("inf") if slow_threshold is None else slow_threshold
        self._cache: dict[str, _Statement] = {}
        self._cached_characters = 0
        self.active = True
        self._wrappers = _wrappers(self)
        for name, wrapper in self._wrappers.items():
            setattr(engine.dialect, name, wrapper)

    def remove(self) -> None:
        self.active = False  # a wrapper someone else has wrapped in turn only passes through
        dialect = self.engine.dialect
        for name, wrapper in self._wrappers.items():
            if vars(dialect).get(name) is wrapper:
                delattr(dialect, name)

    def _failed(self, statement: str, started: float, context: Any, error: BaseException) -> None:
        elapsed = perf_counter() - started
        try:
            entry = self._cache.get(statement) or self._entry(statement)
            error_type = self._bounds.errors.admit(_error_type(error))
            attributes = {**entry.attributes, semconv.ERROR_TYPE: error_type}
            self._sink.cell(attributes).observe(elapsed)
            if elapsed >= self._threshold:
                self._slow(entry, elapsed, context, error_type)
        except Exception:
            log.debug("recording a failed statement failed", exc_info=True)

    def _entry(self, statement: str) -> _Statement:
        text = _without_trailing_comment(statement)
        return self._cache.get(text) or self._new_entry(text)

    def _new_entry(self, text: str) -> _Statement:
        operation, collection = describe(text)
        attributes = {semconv.DB_SYSTEM_NAME: self._system}
        if operation:
            attributes[semconv.DB_OPERATION_NAME] = self._bounds.operations.admit(operation)
        if collection:
            attributes[semconv.DB_COLLECTION_NAME] = self._bounds.collections.admit(collection)
        name = " ".join(
            attributes[k] for k in (semconv.DB_OPERATION_NAME, semconv.DB_COLLECTION_NAME)
            if k in attributes
        ) or self._system
        entry = _Statement(self._sink.cell(attributes), attributes, name, text)
        self._cached_characters += len(text)
        if len(self._cache) >= _CACHE_SIZE or self._cached_characters > _CACHE_CHARACTERS:
            self._cache.clear()
            self._cached_characters = len(text)
        self._cache[text] = entry
        return entry

    def _slow(self, entry: _Statement, elapsed: float, context: Any, error: str | None) -> None:
        if not self.active:
            return
        if entry.fingerprint is None:
            entry.fingerprint = fingerprint(entry.text, self._system)[:MAX_FINGERPRINT]
        attributes: dict[str, Any] = {
            **entry.attributes,
            semconv.DB_QUERY_FINGERPRINT: entry.fingerprint,
            semconv.SLOW_QUERY: True,
        }
        if error is not None:
            attributes[semconv.ERROR_TYPE] = error
        their_span = getattr(context, "_otel_span", None)
        if their_span is not None and their_span.is_recording():
            # opentelemetry-instrumentation-sqlalchemy already has a span for this statement
            their_span.set_attributes(attributes)
            return
        ended = time_ns()
        span = self._tracer.start_span(
            entry.name,
            kind=SpanKind.CLIENT,
            start_time=ended - int(elapsed * 1e9),
            attributes=attributes,
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=ended)


Failed = Callable[[str, float, Any, BaseException], None]


def _wrappers(queries: EngineQueries) -> dict[str, Callable[..., None]]:
    # Hot path: runs for every statement, so the success path is written out in each wrapper
    # with everything it needs bound to local names.
    dialect = queries.engine.dialect
    execute = dialect.do_execute
    executemany = dialect.do_executemany
    execute_no_params = dialect.do_execute_no_params
    cache, entry_for, slow = queries._cache, queries._entry, queries._slow
    failed: Failed = queries._failed
    threshold = queries._threshold

    def do_execute(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        if not queries.active:
            return execute(cursor, statement, parameters, context)
        started = perf_counter()
        try:
            execute(cursor, statement, parameters, context)
        except BaseException as error:
            failed(statement, started, context, error)
            raise
        elapsed = perf_counter() - started
        try:
            entry = cache.get(statement) or entry_for(statement)
            entry.cell.observe(elapsed)
            if elapsed >= threshold:
                slow(entry, elapsed, context, None)
        except Exception:  # never let measuring break the application's query
            log.debug("recording a statement failed", exc_info=True)

    def do_executemany(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        if not queries.active:
            return executemany(cursor, statement, parameters, context)
        started = perf_counter()
        try:
            executemany(cursor, statement, parameters, context)
        except BaseException as error:
            failed(statement, started, context, error)
            raise
        elapsed = perf_counter() - started
        try:
            entry = cache.get(statement) or entry_for(statement)
            entry.cell.observe(elapsed)
            if elapsed >= threshold:
                slow(entry, elapsed, context, None)
        except Exception:
            log.debug("recording a statement failed", exc_info=True)

    def do_execute_no_params(cursor: Any, statement: str, context: Any = None) -> None:
        if not queries.active:
            return execute_no_params(cursor, statement, context)
        started = perf_counter()
        try:
            execute_no_params(cursor, statement, context)
        except BaseException as error:
            failed(statement, started, context, error)
            raise
        elapsed = perf_counter() - started
        try:
            entry = cache.get(statement) or entry_for(statement)
            entry.cell.observe(elapsed)
            if elapsed >= threshold:
                slow(entry, elapsed, context, None)
        except Exception:
            log.debug("recording a statement failed", exc_info=True)

    return {
        "do_execute": do_execute,
        "do_executemany": do_executemany,
        "do_execute_no_params": do_execute_no_params,
    }


def _without_trailing_comment(statement: str) -> str:
    """Drops a trailing /* ... */ (sqlcommenter's trace context) so the text caches well."""
    stripped = statement.rstrip()
    if stripped.endswith("*/"):
        start = stripped.rfind("/*")
        if start > 0:
            return stripped[:start].rstrip()
    return statement


def _error_type(error: BaseException) -> str:
    """The exception's class, fully qualified; for SQLAlchemy's asyncio driver adapters (asyncpg,
    aiosqlite, ...) the driver's own exception they re-raise from, the one on-call can act on."""
    cause = error.__cause__
    if type(error).__qualname__.startswith("AsyncAdapt") and isinstance(cause, BaseException):
        error = cause
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
