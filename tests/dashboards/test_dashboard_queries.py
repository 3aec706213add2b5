"""The panel-query extractor of tests/support/dashboard_queries.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import dashboard_queries as dq

REPO = Path(__file__).resolve().parents[2]


def _var(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "query", "query": f"label_values(redis_up, {name})",
            "includeAll": True, "multi": True, "allValue": ".*", **extra}


def _dashboard(*exprs: str, variables: list[dict[str, Any]] | None = None,
               nested: bool = False) -> dict[str, Any]:
    targets = [{"refId": chr(65 + i), "expr": e} for i, e in enumerate(exprs)]
    panel = {"id": 2, "type": "timeseries", "title": "P", "targets": targets}
    panels: list[dict[str, Any]] = (
        [{"id": 1, "type": "row", "title": "R", "collapsed": True, "panels": [panel]}]
        if nested else [panel])
    return {"uid": "u", "title": "T", "panels": panels,
            "templating": {"list": variables if variables is not None else [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                _var("job", allValue=None), _var("instance")]}}


def _exprs(dashboard: dict[str, Any], **kwargs: Any) -> list[str]:
    return [q.expr for q in dq.panel_queries(dashboard, **kwargs)]


def test_all_selected_becomes_the_custom_all_value_or_match_anything() -> None:
    d = _dashboard('redis_up{job=~"$job", instance=~"${instance}"}')
    assert _exprs(d) == ['redis_up{job=~".*", instance=~".*"}']


def test_builtin_intervals() -> None:
    d = _dashboard("rate(x_total[$__rate_interval])", "increase(x_total[${__range}])")
    assert _exprs(d) == ["rate(x_total[1m])", "increase(x_total[1h])"]
    assert _exprs(d, builtins={"__rate_interval": "2m"})[0] == "rate(x_total[2m])"


def test_given_values_are_regex_escaped_and_joined() -> None:
    d = _dashboard('redis_up{instance=~"$instance", job=~"[[job]]"}')
    got = _exprs(d, values={"instance": ["10.0.0.1:9121", "b"], "job": "redis"})
    assert got == ['redis_up{instance=~"(10\\\\.0\\\\.0\\\\.1:9121|b)", job=~"redis"}']


def test_raw_format_is_not_escaped() -> None:
    d = _dashboard('redis_up{instance="${instance:raw}"}')
    assert _exprs(d, values={"instance": "a.b"}) == ['redis_up{instance="a.b"}']


def test_resolver_supplies_query_variable_values() -> None:
    seen = []

    def resolve(variable: dict[str, Any]) -> list[str]:
        seen.append(variable["name"])
        return ["tradesense-exporter"] if variable["name"] == "job" else []

    d = _dashboard('redis_up{job=~"$job", instance=~"$instance"}')
    assert _exprs(d, resolver=resolve) == [
        'redis_up{job=~"tradesense-exporter", instance=~".*"}']
    assert seen == ["job", "instance"]


def test_undefined_variable_is_an_error() -> None:
    with pytest.raises(KeyError, match=r"\$cluster"):
        dq.panel_queries(_dashboard('redis_up{cluster="$cluster"}'))


def test_panels_inside_collapsed_rows_are_found() -> None:
    queries = dq.panel_queries(_dashboard("redis_up", "up", nested=True))
    assert [(q.panel_id, q.ref_id, q.expr) for q in queries] == [(2, "A", "redis_up"),
                                                                (2, "B", "up")]
    assert queries[0].dashboard_uid == "u" and queries[0].panel_title == "P"


def test_variable_queries_become_promql() -> None:
    d = _dashboard("redis_up", variables=[
        {"name": "datasource", "type": "datasource", "query": "prometheus"},
        _var("job", allValue=None),
        {"name": "instance", "type": "query", "includeAll": True, "allValue": ".*",
         "query": {"query": 'label_values(redis_up{job=~"$job", x="a,b"}, instance)'}},
    ])
    assert [(v.name, v.expr) for v in dq.variable_queries(d)] == [
        ("job", "count by (job) (redis_up)"),
        ("instance", 'count by (instance) (redis_up{job=~".*", x="a,b"})'),
    ]


@pytest.mark.parametrize(("expr", "expected"), [
    ("redis_up", [("redis_up", ())]),
    ('sum by (job, le) (rate(x_bucket{le="+Inf", job=~"a|b"}[5m]))',
     [("x_bucket", ("sum", "rate"))]),
    ("sum(rate(a_total[1m])) by (cmd) / on (job) group_left (role) b",
     [("a_total", ("sum", "rate")), ("b", ())]),
    ('histogram_quantile(0.99, sum without (instance) (rate(h_bucket[5m] offset 1h)))',
     [("h_bucket", ("histogram_quantile", "sum", "rate"))]),
    ("level:metric:ratio_rate5m > bool 0.5 and up unless nan or Inf",
     [("level:metric:ratio_rate5m", ()), ("up", ())]),
    ('label_replace(x, "dst", "redis_up", "src", "(.*)") or on () vector(0)',
     [("x", ("label_replace",))]),
    ('{__name__="redis_up", job="a"} * 1e3 + 0x1f', [("redis_up", ())]),
    ("max_over_time(deriv(g[10m:1m])[1h:]) - time()", [("g", ("max_over_time", "deriv"))]),
])
def test_metric_uses(expr: str, expected: list[tuple[str, tuple[str, ...]]]) -> None:
    assert [(u.name, u.functions) for u in dq.metric_uses(expr)] == expected


@pytest.mark.parametrize("expr", ["sum(rate(x[5m])", "x{job='a'", "sum by (job) x", "x ?? y"])
def test_malformed_expressions_are_errors(expr: str) -> None:
    with pytest.raises(ValueError):
        dq.metric_uses(expr)


def test_shipped_dashboards_every_target_extracted() -> None:
    targets = sum(len(p.get("targets", [])) for path in dq.dashboard_paths()
                  for p in dq.iter_panels(dq.load_dashboard(path)))
    queries = dq.all_panel_queries()
    assert len(queries) == targets > 50
    for q in queries:
        assert "$" not in q.expr, f"{q.dashboard_uid} {q.panel_title}: {q.expr}"
        assert not q.hidden


def test_script_prints_one_json_object_per_query() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tests/support/dashboard_queries.py"),
         str(REPO / "dashboards/redis.json"), "--var", "job=tradesense-exporter",
         "--rate-interval", "30s"],
        capture_output=True, text=True, check=True, timeout=30)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows and all(r["dashboard_uid"] == "tradesense-redis" for r in rows)
    assert all('job=~"tradesense-exporter"' in r["expr"] for r in rows)
    assert any("[30s]" in r["expr"] for r in rows)
    assert set(rows[0]) == {"dashboard_uid", "dashboard_title", "panel_id", "panel_title",
                            "ref_id", "expr", "raw_expr", "hidden"}
