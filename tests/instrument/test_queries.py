from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.metrics.export import Histogram
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.ext.asyncio import create_async_engine

from exporter import semconv
from exporter.instrument.histograms import LocalHistogram
from tests.instrument.helpers import Telemetry, attributes_of, points_of

DURATION = semconv.OPERATION_DURATION
SECRETS = ("hunter2-Secret!", "bob.smith@example.com", "4111111111111111", "4111 1111 1111 1111")
SLOW_SQL = (
    "SELECT pg_sleep(0.3), 'hunter2-Secret!' AS password, 'bob.smith@example.com' AS email, "
    "4111111111111111 AS card, '4111 1111 1111 1111' AS card_text /* user bob.smith@example.com */"
)

ONE_ROW_SLEEP = "SELECT pg_sleep({}), relname FROM pg_class WHERE oid = 1259"


@pytest.fixture
def sqlite(tmp_path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{tmp_path}/trades.db")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE trades (id INTEGER PRIMARY KEY, symbol TEXT)"))
        connection.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)"))
    return engine


def test_every_statement_is_timed_with_operation_and_collection(
    telemetry: Telemetry, sqlite: Engine
) -> None:
    telemetry.instrument(sqlite)
    with sqlite.begin() as connection:
        connection.execute(text("INSERT INTO trades (symbol) VALUES (:s)"), {"s": "AAPL"})
        for _ in range(3):
            connection.execute(text("select * from trades where id = :id"), {"id": 1}).all()
        connection.execute(text("UPDATE users SET email = 'x' WHERE id = 2"))
    by_attributes = {
        tuple(sorted(p.attributes.items())): p.value for p in telemetry.points(DURATION)
    }
    expected = {
        ("INSERT", "trades"): 1, ("SELECT", "trades"): 3, ("UPDATE", "users"): 1,
    }
    for (operation, collection), calls in expected.items():
        key = tuple(sorted({
            semconv.DB_SYSTEM_NAME: "sqlite",
            semconv.DB_OPERATION_NAME: operation,
            semconv.DB_COLLECTION_NAME: collection,
        }.items()))
        assert by_attributes[key].count == calls
    point = next(iter(by_attributes.values()))
    assert list(point.explicit_bounds) == [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]
    assert not sqlite._has_events  # the engine-event path costs ~8 µs per statement


def test_executemany_is_one_operation(telemetry: Telemetry, sqlite: Engine) -> None:
    telemetry.instrument(sqlite)
    with sqlite.begin() as connection:
        connection.execute(
            text("INSERT INTO users (email) VALUES (:e)"), [{"e": f"{n}"} for n in range(50)]
        )
    point = telemetry.value(DURATION, db__operation__name="INSERT")
    assert point.count == 1


def test_failed_statement_is_recorded_with_its_error_type(
    telemetry: Telemetry, postgres: str
) -> None:
    engine = create_engine(postgres)
    telemetry.instrument(engine)
    with engine.connect() as connection, pytest.raises(exc.ProgrammingError):
        connection.execute(text("SELECT * FROM no_such_table_for_instrument_tests"))
    point = telemetry.value(DURATION, error__type="psycopg2.errors.UndefinedTable")
    assert point.count == 1
    assert point.attributes[semconv.DB_COLLECTION_NAME] == "no_such_table_for_instrument_tests"
    engine.dispose()


def test_asyncpg_error_type_is_the_drivers_own(
    telemetry: Telemetry, postgres_async: str
) -> None:
    async def scenario() -> None:
        engine = create_async_engine(postgres_async)
        telemetry.instrument(engine)
        async with engine.connect() as connection:
            with pytest.raises(exc.ProgrammingError):
                await connection.execute(text("SELECT * FROM no_such_table_for_instrument_tests"))
        await engine.dispose()

    asyncio.run(scenario())
    point = telemetry.value(DURATION, error__type="asyncpg.exceptions.UndefinedTableError")
    assert point.count == 1


def test_collections_past_the_limit_fold_into_other(
    telemetry: Telemetry, sqlite: Engine
) -> None:
    telemetry.instrument(sqlite, max_collections=2)
    with sqlite.begin() as connection:
        for number in range(5):
            connection.execute(text(f"CREATE TABLE t{number} (id INTEGER)"))
            connection.execute(text(f"SELECT * FROM t{number}"))
    collections = {p.attributes.get(semconv.DB_COLLECTION_NAME) for p in telemetry.points(DURATION)}
    assert collections == {"t0", "t1", semconv.OTHER}
    other = telemetry.value(DURATION, db__collection__name="_other", db__operation__name="SELECT")
    assert other.count == 3


def test_slow_statement_becomes_a_span_without_any_literal(
    telemetry: Telemetry, postgres: str
) -> None:
    engine = create_engine(postgres)
    telemetry.instrument(engine, slow_query_threshold=0.2)
    with engine.connect() as connection:
        connection.execute(text(SLOW_SQL)).all()
        connection.execute(text("SELECT 1")).all()
    [span] = telemetry.finished_spans()
    assert span.name == "SELECT"
    assert span.kind == SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        semconv.DB_SYSTEM_NAME: "postgresql",
        semconv.DB_OPERATION_NAME: "SELECT",
        semconv.DB_QUERY_FINGERPRINT: "SELECT pg_sleep(?), ? AS password, ? AS email, ? AS card, "
        "? AS card_text",
        semconv.SLOW_QUERY: True,
    }
    assert span.end_time is not None and span.start_time is not None
    assert 0.3 <= (span.end_time - span.start_time) / 1e9 < 1.0
    assert_no_secret(telemetry)
    engine.dispose()


def test_slow_failing_statement_span_has_error_status(
    telemetry: Telemetry, postgres: str
) -> None:
    engine = create_engine(postgres, connect_args={"options": "-c statement_timeout=250"})
    telemetry.instrument(engine, slow_query_threshold=0.2)
    with engine.connect() as connection, pytest.raises(exc.OperationalError):
        connection.execute(text("SELECT pg_sleep(2), 'hunter2-Secret!'"))
    [span] = telemetry.finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[semconv.ERROR_TYPE] == "psycopg2.errors.QueryCanceled"  # type: ignore[index]
    assert telemetry.value(DURATION, error__type="psycopg2.errors.QueryCanceled").count == 1
    assert_no_secret(telemetry)
    engine.dispose()


def test_async_engine_statements_and_slow_spans(
    telemetry: Telemetry, postgres_async: str
) -> None:
    async def scenario() -> None:
        engine = create_async_engine(postgres_async)
        telemetry.instrument(engine, slow_query_threshold=0.2)
        async with engine.connect() as connection:
            await connection.execute(text(SLOW_SQL))
            for _ in range(4):
                await connection.execute(text("SELECT relname FROM pg_class WHERE oid = 1"))
        await engine.dispose()

    asyncio.run(scenario())
    assert telemetry.value(DURATION, db__collection__name="pg_class").count == 4
    [span] = telemetry.finished_spans()
    assert span.attributes[semconv.SLOW_QUERY] is True  # type: ignore[index]
    assert_no_secret(telemetry)


def test_with_opentelemetry_sqlalchemy_tracing_a_slow_statement_has_one_span(
    telemetry: Telemetry, postgres: str
) -> None:
    engine = create_engine(postgres)
    their_spans = InMemorySpanExporter()
    their_provider = TracerProvider()
    their_provider.add_span_processor(SimpleSpanProcessor(their_spans))
    instrumentor = SQLAlchemyInstrumentor()
    instrumentor.instrument(engine=engine, tracer_provider=their_provider, skip_dep_check=True)
    try:
        telemetry.instrument(engine, slow_query_threshold=0.2)
        with engine.connect() as connection:
            connection.execute(text(ONE_ROW_SLEEP.format(0.25))).all()
    finally:
        instrumentor.uninstrument()
    assert telemetry.finished_spans() == []
    [theirs] = [
        s for s in their_spans.get_finished_spans()
        if "pg_sleep" in str((s.attributes or {}).get("db.statement"))
    ]
    attributes = dict(theirs.attributes or {})
    assert attributes[semconv.SLOW_QUERY] is True
    assert attributes[semconv.DB_QUERY_FINGERPRINT] == (
        "SELECT pg_sleep(?), relname FROM pg_class WHERE oid = ?"
    )
    assert telemetry.value(DURATION, db__collection__name="pg_class").count == 1
    engine.dispose()


def test_no_slow_spans_when_the_threshold_is_none(telemetry: Telemetry, postgres: str) -> None:
    engine = create_engine(postgres)
    telemetry.instrument(engine, slow_query_threshold=None)
    with engine.connect() as connection:
        connection.execute(text(ONE_ROW_SLEEP.format(0.05))).all()
    assert telemetry.finished_spans() == []
    assert telemetry.value(DURATION, db__collection__name="pg_class").count == 1
    engine.dispose()


def test_uninstrumented_engine_records_nothing(telemetry: Telemetry, sqlite: Engine) -> None:
    handle = telemetry.instrument(sqlite)
    handle.uninstrument()
    with sqlite.connect() as connection:
        connection.execute(text("SELECT * FROM trades")).all()
    assert all(p.value.count == 0 for p in telemetry.points(DURATION))


def test_a_trailing_sql_comment_does_not_make_a_new_statement(
    telemetry: Telemetry, sqlite: Engine
) -> None:
    telemetry.instrument(sqlite, slow_query_threshold=0.0)
    with sqlite.connect() as connection:
        for trace_id in ("0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736"):
            connection.execute(text(f"SELECT * FROM trades /*traceparent='00-{trace_id}'*/"))
    spans = telemetry.finished_spans()
    assert {s.attributes[semconv.DB_QUERY_FINGERPRINT] for s in spans} == {  # type: ignore[index]
        "SELECT * FROM trades"
    }
    assert telemetry.value(DURATION).count == 2


def assert_no_secret(telemetry: Telemetry) -> None:
    exported = [_as_text(s.to_json()) for s in telemetry.finished_spans()]
    exported.append(_as_text([
        (p.attributes, str(p.value))
        for name in (DURATION, semconv.CONNECTION_COUNT, semconv.CONNECTION_WAIT_TIME)
        for p in points_of(telemetry.collect(), name)
    ]))
    for text_ in exported:
        for secret in SECRETS:
            assert secret not in text_


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def test_the_apps_dialect_listeners_still_run(telemetry: Telemetry, sqlite: Engine) -> None:
    seen: list[str] = []
    event.listen(sqlite, "do_execute", lambda cursor, statement, *args: seen.append(statement))
    telemetry.instrument(sqlite)
    event.listen(sqlite, "do_execute", lambda cursor, statement, *args: seen.append("later"))
    with sqlite.connect() as connection:
        connection.execute(text("SELECT * FROM trades WHERE id = :id"), {"id": 1})
    assert seen == ["SELECT * FROM trades WHERE id = ?", "later"]
    assert telemetry.value(DURATION, db__collection__name="trades").count == 1


def test_a_wrapper_around_ours_survives_uninstrument(telemetry: Telemetry, sqlite: Engine) -> None:
    handle = telemetry.instrument(sqlite)
    query = text("SELECT * FROM trades WHERE id = :id")
    with sqlite.connect() as connection:
        connection.execute(query, {"id": 1})
    ours = sqlite.dialect.do_execute
    calls: list[str] = []

    def theirs(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        calls.append(statement)
        ours(cursor, statement, parameters, context)

    sqlite.dialect.do_execute = theirs  # type: ignore[method-assign]
    handle.uninstrument()
    assert sqlite.dialect.do_execute is theirs
    with sqlite.connect() as connection:
        connection.execute(query, {"id": 1})
    assert len(calls) == 1
    # Nothing is exported once nothing is instrumented: read our histogram itself.
    histogram = handle.telemetry.meters.duration
    assert isinstance(histogram, LocalHistogram)
    metric = histogram.metric(now_ns=1)
    assert metric is not None and isinstance(metric.data, Histogram)
    [point] = [p for p in metric.data.data_points
               if attributes_of(p).get(semconv.DB_COLLECTION_NAME) == "trades"]
    assert point.count == 1
