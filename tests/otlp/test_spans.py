import json

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from exporter.exposition import render
from exporter.fingerprint import fingerprint
from exporter.otlp.slowqueries import SlowQueryStore
from exporter.otlp.spans import SlowSpanRecorder

SECRETS = ("hunter2-Secret!", "alice@example.com", "4111111111111111")
RAW = (
    f"select * from users where email = '{SECRETS[1]}' and pw = '{SECRETS[0]}' "
    f"and card in ({SECRETS[2]}, 5500000000000004)"
)
T0 = 1_700_000_000_000_000_000
TRACE = bytes(range(16))


def _attr(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


KEYS = {
    "db_query_text": "db.query.text",
    "db_statement": "db.statement",
    "db_system": "db.system",
    "db_system_name": "db.system.name",
    "db_operation_name": "db.operation.name",
    "db_collection_name": "db.collection.name",
    "db_query_fingerprint": "db.query.fingerprint",
    "tradesense_slow_query": "tradesense.slow_query",
    "http_route": "http.route",
}


def _span(seconds: float, **attrs: object) -> Span:
    return Span(
        name="db",
        trace_id=TRACE,
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + int(seconds * 1e9),
        attributes=[_attr(KEYS[k], v) for k, v in attrs.items()],
    )


def _request(
    *scopes: tuple[str, list[Span]], instance: str = "w1", service: str = "app"
) -> ExportTraceServiceRequest:
    resource = Resource(
        attributes=[_attr("service.name", service), _attr("service.instance.id", instance)]
    )
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=resource,
                scope_spans=[
                    ScopeSpans(scope=InstrumentationScope(name=name), spans=spans)
                    for name, spans in scopes
                ],
            )
        ]
    )


def _recorder() -> tuple[SlowQueryStore, SlowSpanRecorder]:
    store = SlowQueryStore()
    return store, SlowSpanRecorder(store, 0.5, fingerprint, max_statement_length=1000)


def test_raw_statements_are_fingerprinted_and_no_literal_is_kept() -> None:
    store, recorder = _recorder()
    spans = [
        _span(0.9, **{"db_query_text": RAW, "db_system_name": "postgresql"}),
        _span(0.7, **{"db_statement": RAW.replace("alice", "bob"), "db_system": "postgresql"}),
    ]
    assert recorder.record(_request(("opentelemetry.instrumentation.asyncpg", spans))) == 2
    (entry,) = store.top(10)
    assert entry.fingerprint == "SELECT * FROM users WHERE email = ? AND pw = ? AND card IN (?)"
    assert entry.calls == 2 and entry.db_operation_name == "SELECT"
    assert entry.example_trace_id == TRACE.hex()
    served = json.dumps([e.as_json() for e in store.top(10)]) + render(store.collect()).decode()
    for secret in SECRETS:
        assert secret not in served


def test_fast_spans_and_spans_without_statements_are_ignored() -> None:
    store, recorder = _recorder()
    spans = [
        _span(0.1, db_query_text="SELECT 1"),
        _span(5.0, http_route="/trades"),
        _span(5.0, db_system_name="postgresql"),
        _span(-1.0, db_query_text="SELECT 2", tradesense_slow_query=True),
        _span(5.0, db_query_text="   "),
    ]
    recorder.record(_request(("s", spans)))
    assert len(store) == 0


def test_marked_spans_count_below_the_threshold_and_are_refingerprinted() -> None:
    store, recorder = _recorder()
    span = _span(
        0.2,
        tradesense_slow_query=True,
        db_query_fingerprint="UPDATE trades SET note = 'leaked' WHERE id = ?",
        db_operation_name="update",
        db_collection_name="trades",
        db_system_name="sqlite",
    )
    recorder.record(_request(("exporter.instrument", [span])))
    (entry,) = store.top(1)
    assert entry.fingerprint == "UPDATE trades SET note = ? WHERE id = ?"
    assert (entry.db_operation_name, entry.db_collection_name, entry.db_system_name) == (
        "UPDATE",
        "trades",
        "sqlite",
    )


def test_sqlalchemy_spans_of_a_self_reporting_producer_are_not_counted_twice() -> None:
    store, recorder = _recorder()
    statement = "SELECT pg_sleep(?)"
    ours = _span(0.8, tradesense_slow_query=True, db_query_fingerprint=statement)
    theirs = _span(0.8, db_statement="SELECT pg_sleep(%(p)s)")
    driver = _span(0.9, db_query_text="SELECT count(*) FROM big")
    recorder.record(
        _request(
            ("opentelemetry.instrumentation.sqlalchemy", [theirs]),
            ("exporter.instrument", [ours]),
            ("opentelemetry.instrumentation.asyncpg", [driver]),
        )
    )
    # Later batches from the same producer, with only the SQLAlchemy span.
    recorder.record(_request(("opentelemetry.instrumentation.sqlalchemy", [theirs])))
    totals = {e.fingerprint: e.calls for e in store.top(10)}
    assert totals == {"SELECT pg_sleep(?)": 1, "SELECT count(*) FROM big": 1}
    # Another producer that does not use exporter.instrument is counted.
    recorder.record(_request(("opentelemetry.instrumentation.sqlalchemy", [theirs]), instance="w2"))
    assert {e.fingerprint: e.calls for e in store.top(10)}["SELECT pg_sleep(?)"] == 2


def test_overlong_statements_are_not_fingerprinted() -> None:
    store, recorder = _recorder()
    recorder.record(_request(("s", [_span(1.0, db_query_text="SELECT '" + "x" * 2000 + "'")])))
    (entry,) = store.top(1)
    assert entry.fingerprint == "(statement longer than 1000 characters)"


def test_each_statement_is_recorded_under_its_producers_service() -> None:
    store, recorder = _recorder()
    statement = "SELECT * FROM trades WHERE id = 7"
    recorder.record(_request(("s", [_span(0.9, db_query_text=statement)]), service="orders"))
    recorder.record(_request(("s", [_span(0.6, db_query_text=statement)]), service="orders",
                             instance="w2"))
    recorder.record(_request(("s", [_span(2.0, db_query_text=statement)]), service="billing"))
    entries = [(e.service_name, e.fingerprint, e.calls) for e in store.top(10)]
    assert entries == [
        ("billing", "SELECT * FROM trades WHERE id = ?", 1),
        ("orders", "SELECT * FROM trades WHERE id = ?", 2),
    ]
    text = render(store.collect()).decode()
    assert 'service_name="orders",db_operation_name="SELECT",db_collection_name=""} 2' in text
    assert 'service_name="billing",db_operation_name="SELECT",db_collection_name=""} 1' in text
