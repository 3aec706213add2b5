import asyncio

import httpx
import pytest
from starlette.applications import Starlette

from exporter.exposition import render
from exporter.otlp.slowqueries import SlowQueryStore, slow_queries_route

SELECT = "SELECT * FROM trades WHERE user_id = ?"


def test_statistics_per_fingerprint() -> None:
    store = SlowQueryStore(wall_clock=lambda: 1_700_000_000.0)
    store.record(SELECT, 0.6, "aa" * 16, "SELECT", "trades", "postgresql", when=1_700_000_100.0)
    store.record(SELECT, 1.4, "bb" * 16, "SELECT", "trades", "postgresql")
    store.record(SELECT, 1.0, "cc" * 16)
    (entry,) = store.top(10)
    assert entry.calls == 3
    assert entry.total_seconds == pytest.approx(3.0)
    assert entry.max_seconds == 1.4
    assert entry.example_trace_id == "bb" * 16  # the slowest call's trace
    assert entry.last_seen == 1_700_000_100.0
    doc = entry.as_json()
    assert doc["mean_seconds"] == pytest.approx(1.0)
    assert doc["last_seen"] == "2023-11-14T22:15:00+00:00"
    assert (doc["db_operation_name"], doc["db_collection_name"], doc["db_system_name"]) == (
        "SELECT",
        "trades",
        "postgresql",
    )


def test_eviction_drops_the_least_total_time_and_lengths_are_capped() -> None:
    store = SlowQueryStore(max_fingerprints=3, max_fingerprint_length=10)
    for i, seconds in enumerate([5.0, 1.0, 3.0, 4.0]):
        store.record(f"SELECT {i} FROM a_long_table_name", seconds)
    assert len(store) == 3
    assert [e.total_seconds for e in store.top(10)] == [5.0, 4.0, 3.0]
    assert all(len(e.fingerprint) == 10 for e in store.top(10))


def test_nonsense_durations_are_ignored() -> None:
    store = SlowQueryStore()
    for bad in (float("nan"), float("inf"), -1.0):
        store.record(SELECT, bad)
    store.record(SELECT, 1.0, when=float("inf"))
    assert [e.calls for e in store.top(5)] == [1]


def test_counter_labels_are_bounded() -> None:
    store = SlowQueryStore(max_collections=2, max_operations=1)
    for table in ("a", "b", "c", "d", "a"):
        store.record(f"SELECT x FROM {table}", 1.0, operation="SELECT", collection=table)
    store.record("UPDATE a SET x = ?", 1.0, operation="UPDATE", collection="a")
    store.record("SELECT 1", 1.0, operation="SELECT", collection="x" * 500)
    text = render(store.collect()).decode()
    assert (
        'tradesense_slow_queries_total{service_name="unknown_service",'
        'db_operation_name="SELECT",db_collection_name="a"} 2\n' in text
    )
    assert 'db_operation_name="SELECT",db_collection_name="_other"} 3\n' in text
    assert 'db_operation_name="_other",db_collection_name="a"} 1\n' in text
    assert "tradesense_exporter_slow_query_fingerprints 6\n" in text


def test_the_same_statement_of_two_services_is_two_entries_and_two_series() -> None:
    store = SlowQueryStore()
    store.record(SELECT, 1.0, operation="SELECT", collection="trades", service="orders")
    store.record(SELECT, 2.0, operation="SELECT", collection="trades", service="orders")
    store.record(SELECT, 5.0, operation="SELECT", collection="trades", service="billing")
    assert len(store) == 2
    assert [(e.service_name, e.fingerprint, e.calls, e.total_seconds) for e in store.top(10)] == [
        ("billing", SELECT, 1, 5.0),
        ("orders", SELECT, 2, 3.0),
    ]
    assert [e.as_json()["service_name"] for e in store.top(10)] == ["billing", "orders"]
    text = render(store.collect()).decode()
    assert (
        'tradesense_slow_queries_total{service_name="orders",db_operation_name="SELECT",'
        'db_collection_name="trades"} 2\n' in text
    )
    assert (
        'tradesense_slow_queries_total{service_name="billing",db_operation_name="SELECT",'
        'db_collection_name="trades"} 1\n' in text
    )


def test_services_are_bounded_past_the_cap_they_are_other() -> None:
    store = SlowQueryStore(max_services=2)
    for service in ("a", "b", "c", "d", "a"):
        store.record(SELECT, 1.0, operation="SELECT", collection="t", service=service)
    store.record(SELECT, 1.0, operation="SELECT", collection="t", service="x" * 500)
    entries = {e.service_name: e.calls for e in store.top(10)}
    assert entries == {"a": 2, "b": 1, "_other": 3}
    text = render(store.collect()).decode()
    assert text.count("tradesense_slow_queries_total{") == 3
    assert 'service_name="_other",db_operation_name="SELECT",db_collection_name="t"} 3\n' in text
    assert "tradesense_exporter_slow_query_fingerprints 3\n" in text


def _get(store: SlowQueryStore, url: str) -> httpx.Response:
    app = Starlette(routes=[slow_queries_route(store)])

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(url)

    return asyncio.run(go())


def test_endpoint_sorts_by_total_time_and_limits() -> None:
    store = SlowQueryStore()
    for i in range(60):
        store.record(f"SELECT {i}", 1.0 + i)
    body = _get(store, "/api/slow-queries").json()
    assert body["fingerprints"] == 60
    totals = [e["total_seconds"] for e in body["slow_queries"]]
    assert len(totals) == 50 and totals == sorted(totals, reverse=True) and totals[0] == 60.0
    body = _get(store, "/api/slow-queries?limit=2").json()
    assert [e["fingerprint"] for e in body["slow_queries"]] == ["SELECT 59", "SELECT 58"]


def test_endpoint_filters_by_service() -> None:
    store = SlowQueryStore()
    for i, service in enumerate(("orders", "billing", "orders", "ns/reports")):
        store.record(f"SELECT {i}", 1.0 + i, service=service)
    body = _get(store, "/api/slow-queries?service=orders").json()
    assert body["fingerprints"] == 4
    assert [(e["service_name"], e["fingerprint"]) for e in body["slow_queries"]] == [
        ("orders", "SELECT 2"),
        ("orders", "SELECT 0"),
    ]
    body = _get(store, "/api/slow-queries?service=ns%2Freports&service=billing&limit=1").json()
    assert [(e["service_name"], e["fingerprint"]) for e in body["slow_queries"]] == [
        ("ns/reports", "SELECT 3")
    ]
    assert _get(store, "/api/slow-queries?service=nobody").json()["slow_queries"] == []
    assert len(_get(store, "/api/slow-queries").json()["slow_queries"]) == 4


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1.5", "1001", "9" * 5000, "²", ""])
def test_endpoint_refuses_bad_limits(limit: str) -> None:
    response = _get(SlowQueryStore(), f"/api/slow-queries?limit={limit}")
    assert response.status_code == 400
    assert "limit" in response.json()["error"]


def test_names_from_spans_are_cut_to_label_length() -> None:
    store = SlowQueryStore()
    store.record("SELECT ?", 0.6, operation="S" * 10_000, collection="c" * 10_000,
                 db_system="d" * 10_000)
    (entry,) = store.top(1)
    assert max(len(entry.db_operation_name), len(entry.db_collection_name),
               len(entry.db_system_name)) <= 128


def test_the_service_cap_is_a_config_key_that_reaches_the_store() -> None:
    from exporter.config import slow_queries_from_yaml
    from exporter.otlp import OtlpState

    limits = slow_queries_from_yaml({"max_services": 1})
    assert limits.max_services == 1
    store = OtlpState(slow=limits).slow_queries
    store.record(SELECT, 1.0, service="orders")
    store.record(SELECT, 1.0, service="billing")
    assert sorted(e.service_name for e in store.top(10)) == ["_other", "orders"]
