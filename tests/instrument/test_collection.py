from __future__ import annotations

import pytest

from exporter.instrument.collection import describe


@pytest.mark.parametrize(
    ("sql", "operation", "collection"),
    [
        ("select * from trades where id = 1", "SELECT", "trades"),
        ("SELECT extract(year FROM t.created_at) FROM public.trades t JOIN users u ON true",
         "SELECT", "public.trades"),
        ("SELECT * FROM (SELECT * FROM trades) AS x", "SELECT", "trades"),
        ("WITH recent AS (SELECT * FROM trades) SELECT * FROM recent", "SELECT", "trades"),
        ("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT * FROM n",
         "SELECT", None),
        ('INSERT INTO "Trades" (a) VALUES (1)', "INSERT", "Trades"),
        ("UPDATE trades SET note = 'FROM secrets' WHERE id = 2", "UPDATE", "trades"),
        ("DELETE FROM trades WHERE id IN (1, 2)", "DELETE", "trades"),
        ("SELECT * FROM trades FOR UPDATE", "SELECT", "trades"),
        ("SELECT pg_sleep(0.5)", "SELECT", None),
        ("SELECT * FROM generate_series(1, 10)", "SELECT", None),
        ("CREATE TABLE IF NOT EXISTS trades (id INTEGER)", "CREATE", "trades"),
        ("/* comment FROM x */ -- FROM y\n SELECT 1", "SELECT", None),
        ("BEGIN", "BEGIN", None),
        ("(SELECT a FROM t1) UNION (SELECT a FROM t2)", "SELECT", "t1"),
        ("42", None, None),
        ("", None, None),
    ],
)
def test_operation_and_collection(sql: str, operation: str | None, collection: str | None) -> None:
    assert describe(sql) == (operation, collection)
