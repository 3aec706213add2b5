"""Slow database spans into the slow-query store.

A span feeds the store when it carries a statement (`db.query.text`, legacy `db.statement`, or
a `db.query.fingerprint` from exporter.instrument) and either lasted at least the threshold or
is marked `tradesense.slow_query=true` by exporter.instrument. The statement is always passed
through `fingerprint` before it is stored, even when the span says it is a fingerprint already,
so no literal reaches the store. Each statement is recorded under its producer's `service_name`
(`<service.namespace>/<service.name>`, as the app's series carry it).

A producer whose spans carry the `tradesense.slow_query` mark reports its slow queries itself;
its spans from opentelemetry-instrumentation-sqlalchemy describe the same statements again and
are ignored, so nothing is counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from exporter import semconv
from exporter.otlp.naming import value_text
from exporter.otlp.resource import producer
from exporter.otlp.slowqueries import SlowQueryStore

log = logging.getLogger(__name__)

MARK = semconv.SLOW_QUERY
FINGERPRINT = semconv.DB_QUERY_FINGERPRINT
SQLALCHEMY_SCOPE = "opentelemetry.instrumentation.sqlalchemy"
# the current convention's name first, then the one instrumentations used before it
_TEXT = (semconv.DB_QUERY_TEXT, "db.statement")
_OPERATION = (semconv.DB_OPERATION_NAME, "db.operation")
_COLLECTION = (semconv.DB_COLLECTION_NAME, "db.sql.table")
_SYSTEM = (semconv.DB_SYSTEM_NAME, "db.system")
_WANTED = frozenset((MARK, FINGERPRINT, *_TEXT, *_OPERATION, *_COLLECTION, *_SYSTEM))
_MARKED_PRODUCERS_MAX = 4096
_MAX_OPERATION_LENGTH = 32

Fingerprinter = Callable[[str, str], str]


@dataclass(slots=True)
class _Candidate:
    span: Span
    found: dict[str, AnyValue]
    marked: bool
    sqlalchemy: bool


def _first(found: dict[str, AnyValue], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = found.get(key)
        if value is not None:
            text = value_text(value)
            if text:
                return text
    return ""


def _is_marked(value: AnyValue | None) -> bool:
    if value is None:
        return False
    return value.bool_value or value.string_value.lower() == "true"


class SlowSpanRecorder:
    def __init__(
        self,
        store: SlowQueryStore,
        threshold_seconds: float,
        fingerprint: Fingerprinter,
        max_statement_length: int = 65536,
    ) -> None:
        self.store = store
        self.threshold_ns = int(threshold_seconds * 1e9)
        self.fingerprint = fingerprint
        self.max_statement_length = max_statement_length
        self._marked: dict[tuple[str, str], None] = {}

    def record(self, request: ExportTraceServiceRequest) -> int:
        """Feeds the store; returns the number of spans seen."""
        spans = 0
        for rs in request.resource_spans:
            spans += self._resource(rs)
        return spans

    def _resource(self, rs: ResourceSpans) -> int:
        spans = 0
        candidates: list[_Candidate] = []
        for ss in rs.scope_spans:
            sqlalchemy = ss.scope.name == SQLALCHEMY_SCOPE
            spans += len(ss.spans)
            for span in ss.spans:
                candidate = self._candidate(span, sqlalchemy)
                if candidate is not None:
                    candidates.append(candidate)
        if candidates:
            self._feed(rs, candidates)
        return spans

    def _candidate(self, span: Span, sqlalchemy: bool) -> _Candidate | None:
        attributes = span.attributes
        if not attributes:
            return None
        duration = span.end_time_unix_nano - span.start_time_unix_nano
        if duration < self.threshold_ns and all(kv.key != MARK for kv in attributes):
            return None  # the common case, kept cheap: a fast span nobody marked
        found = {kv.key: kv.value for kv in attributes if kv.key in _WANTED}
        marked = _is_marked(found.get(MARK))
        has_statement = FINGERPRINT in found or any(key in found for key in _TEXT)
        if not has_statement or duration < 0 or (not marked and duration < self.threshold_ns):
            return None
        return _Candidate(span, found, marked, sqlalchemy)

    def _feed(self, rs: ResourceSpans, candidates: list[_Candidate]) -> None:
        who = producer(rs.resource)
        key = (who.service_name, who.instance_id)
        if any(c.marked for c in candidates):
            self._remember(key)
        self_reporting = key in self._marked
        for c in candidates:
            if self_reporting and c.sqlalchemy and not c.marked:
                continue
            self._store(c, who.service_name)

    def _remember(self, key: tuple[str, str]) -> None:
        if key not in self._marked and len(self._marked) >= _MARKED_PRODUCERS_MAX:
            del self._marked[next(iter(self._marked))]
        self._marked[key] = None

    def _store(self, c: _Candidate, service: str) -> None:
        statement = _first(c.found, (FINGERPRINT, *_TEXT))
        if not statement.strip():
            return
        fingerprint = self._fingerprint(statement, _first(c.found, _SYSTEM))
        if fingerprint is None:
            return
        span = c.span
        operation = _first(c.found, _OPERATION).upper() or _leading_keyword(fingerprint)
        trace_id = span.trace_id.hex() if len(span.trace_id) == 16 else ""
        self.store.record(
            fingerprint,
            (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9,
            trace_id=trace_id,
            operation=operation,
            collection=_first(c.found, _COLLECTION),
            db_system=_first(c.found, _SYSTEM),
            when=span.end_time_unix_nano / 1e9 if span.end_time_unix_nano else None,
            service=service,
        )

    def _fingerprint(self, statement: str, db_system: str) -> str | None:
        if len(statement) > self.max_statement_length:
            return f"(statement longer than {self.max_statement_length} characters)"
        try:
            return self.fingerprint(statement, db_system)
        except Exception:
            log.warning("a statement could not be fingerprinted; its span is skipped")
            return None


def _leading_keyword(fingerprint: str) -> str:
    word = fingerprint.split(None, 1)[0] if fingerprint.strip() else ""
    return word.upper() if word.isalpha() and len(word) <= _MAX_OPERATION_LENGTH else ""
