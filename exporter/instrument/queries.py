"""`db.client.operation.duration` for every statement, and a span for each slow one.

The timing hooks are SQLAlchemy's dialect events `do_execute`, `do_executemany` and
`do_execute_no_params`: the listener calls the dialect's method itself and returns True, as the
events document. Engine events (`before/after_cursor_execute`, `handle_error`) were measured and
rejected: registering any engine event switches every statement onto SQLAlchemy's event path,
about 8 µs on the reference machine before a listener does anything.

The listeners are appended, so a `do_execute` listener registered before `instrument()` still runs
first; one registered after it is not called (ours has already executed the statement).

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
from sqlalchemy import event
from sqlalchemy.engine import Engine

from exporter.fingerprint import fingerprint
from exporter.instrument import semconv
from exporter.instrument.collection import BoundedNames, describe
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
        self._listeners = _listeners(self)
        for identifier, listener in self._listeners:
            event.listen(engine, identifier, listener)

    def remove(self) -> None:
        self.active = False
        for identifier, listener in self._listeners:
            if event.contains(self.engine, identifier, listener):
                event.remove(self.engine, identifier, listener)

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
            entry.fingerprint = fingerprint(entry.text)[:MAX_FINGERPRINT]
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


def _listeners(queries: EngineQueries) -> list[tuple[str, Callable[..., Any]]]:
    # Hot path: runs for every statement, so the success path is written out in each listener
    # with everything it needs bound to local names.
    dialect = queries.engine.dialect
    execute = dialect.do_execute
    executemany = dialect.do_executemany
    execute_no_params = dialect.do_execute_no_params
    cache, entry_for, slow = queries._cache, queries._entry, queries._slow
    failed: Failed = queries._failed
    threshold = queries._threshold

    def do_execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
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
        return True

    def do_executemany(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
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
        return True

    def do_execute_no_params(cursor: Any, statement: str, context: Any) -> bool:
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
        return True

    return [
        ("do_execute", do_execute),
        ("do_executemany", do_executemany),
        ("do_execute_no_params", do_execute_no_params),
    ]


def _without_trailing_comment(statement: str) -> str:
    """Drops a trailing /* ... */ (sqlcommenter's trace context) so the text caches well."""
    stripped = statement.rstrip()
    if stripped.endswith("*/"):
        start = stripped.rfind("/*")
        if start > 0:
            return stripped[:start].rstrip()
    return statement


def _error_type(error: BaseException) -> str:
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
