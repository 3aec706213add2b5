"""Structure of the Grafana dashboards in dashboards/, checked without Grafana."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dashboard_queries import (
    DASHBOARD_DIR,
    PanelQuery,
    iter_panels,
    metric_uses,
    panel_queries,
    template_variables,
    variable_queries,
)
from tests.support.exported_metrics import allowed_series, is_counter_like
from tests.support.tools import run_tool

PATHS = sorted(DASHBOARD_DIR.glob("*.json"))
UIDS = {"redis.json": "tradesense-redis", "database.json": "tradesense-database",
        "sidecar.json": "tradesense-sidecar", "api.json": "tradesense-api"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Panel types that Grafana 10.0 and 11 both ship.
PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "text"}
GRAFANA_10_0_SCHEMA = 38


def _dashboard(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


DASHBOARDS = {p.name: _dashboard(p) for p in PATHS}


def _panels(name: str) -> list[dict[str, Any]]:
    return [p for p in iter_panels(DASHBOARDS[name]) if p["type"] not in ("row", "text")]


def test_the_dashboards_with_stable_uids() -> None:
    assert {name: d["uid"] for name, d in DASHBOARDS.items()} == UIDS
    titles = [d["title"] for d in DASHBOARDS.values()]
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("name", sorted(UIDS))
def test_importable_into_grafana_10_and_11(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert dashboard["schemaVersion"] <= GRAFANA_10_0_SCHEMA
    assert dashboard.get("id") is None, "an id would clash on import"
    assert {p["type"] for p in iter_panels(dashboard)} <= PANEL_TYPES


@pytest.mark.parametrize("name", sorted(UIDS))
def test_panel_ids_unique(name: str) -> None:
    ids = [p["id"] for p in iter_panels(DASHBOARDS[name])]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) for i in ids)


@pytest.mark.parametrize("name", sorted(UIDS))
def test_variables(name: str) -> None:
    variables = template_variables(DASHBOARDS[name])
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= set(variables)
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    # Every variable's label_values() query has a metric the sidecar serves.
    allowed = allowed_series()
    for query in variable_queries(DASHBOARDS[name]):
        for use in metric_uses(query.expr):
            assert use.name in allowed, f"${query.name}: {use.name}"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_every_panel_has_unit_thresholds_description_and_datasource(name: str) -> None:
    for panel in _panels(name):
        title = panel["title"]
        assert panel.get("description", "").strip(), f"{title}: description"
        assert panel["datasource"] == DATASOURCE, f"{title}: panel datasource"
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit"), f"{title}: unit"
        steps = defaults["thresholds"]["steps"]
        assert steps and steps[0]["value"] is None, f"{title}: thresholds"
        assert [s["value"] for s in steps[1:]] == sorted(s["value"] for s in steps[1:])
        assert panel["targets"], f"{title}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, f"{title}: target datasource"
            assert target.get("expr", "").strip(), f"{title}: empty query"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_grid_has_no_overlap(name: str) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in iter_panels(DASHBOARDS[name]):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("name", sorted(UIDS))
def test_ranges_use_grafana_intervals(name: str) -> None:
    """Every range vector is [$__rate_interval] or [$__range], so it follows the scrape interval."""
    for query in panel_queries(DASHBOARDS[name]):
        for window in re.findall(r"\[([^\]]*)\]", query.raw_expr):
            assert window in ("$__rate_interval", "$__range"), f"{query.panel_title}: [{window}]"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_queries_use_exported_metrics_only(name: str) -> None:
    allowed = allowed_series()
    for query in panel_queries(DASHBOARDS[name]):
        for use in metric_uses(query.expr):
            assert use.name in allowed, f"{query.panel_title}: {use.name} is not exported"
            if {"rate", "irate", "increase"} & set(use.functions):
                assert is_counter_like(use.name, allowed[use.name]), (
                    f"{query.panel_title}: rate() of {allowed[use.name]} {use.name}")


def test_queries_filter_by_the_variables() -> None:
    for name, dashboard in DASHBOARDS.items():
        for query in panel_queries(dashboard):
            assert '$job' in query.raw_expr, f"{name} {query.panel_title}: no $job"
            assert '$instance' in query.raw_expr, f"{name} {query.panel_title}: no $instance"


def test_every_query_parses(tmp_path: Path) -> None:
    """promtool parses each query (variables substituted) as a recording rule expression."""
    rules = []
    for name, dashboard in DASHBOARDS.items():
        for q in panel_queries(dashboard):
            record = f"dashboard:{name.removesuffix('.json')}_{q.panel_id}_{q.ref_id}:check"
            rules.append({"record": record, "expr": q.expr})
    assert len(rules) > 50
    path = tmp_path / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}),
                    encoding="utf-8")
    result = run_tool("promtool", ["check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    """The parse check above can fail."""
    path = tmp_path / "broken.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "a:b:c", "expr": "sum by (job (redis_up)"}]}]}), encoding="utf-8")
    assert run_tool("promtool", ["check", "rules", str(path)]).returncode != 0


def test_maxmemory_is_only_drawn_when_set() -> None:
    """With maxmemory 0 (no limit) no panel divides by it or draws a 0-byte limit."""
    for name, dashboard in DASHBOARDS.items():
        for query in panel_queries(dashboard):
            for metric in ("redis_memory_max_bytes", "redis_config_maxmemory"):
                uses = len(re.findall(rf"{metric}\{{[^}}]*\}}", query.raw_expr))
                guarded = len(re.findall(rf"{metric}\{{[^}}]*\}}\s*>\s*0\b", query.raw_expr))
                assert uses == guarded, f"{name} {query.panel_title}: {metric} unguarded"


def test_cache_hit_rate_is_hits_over_hits_plus_misses() -> None:
    panels = [p for p in _panels("redis.json") if "hit rate" in p["title"].lower()]
    assert len(panels) >= 2
    for panel in panels:
        expr = panel["targets"][0]["expr"]
        numerator, _, denominator = expr.partition("/")
        assert "redis_keyspace_hits_total" in numerator
        assert "redis_keyspace_misses_total" not in numerator
        assert {"redis_keyspace_hits_total", "redis_keyspace_misses_total"} <= {
            u.name for u in metric_uses(denominator)}
        assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit"


def _slow_query_panels() -> list[PanelQuery]:
    return [q for q in panel_queries(DASHBOARDS["database.json"])
            if "tradesense_slow_queries_total" in q.raw_expr]


def test_slow_query_panels_filter_on_and_group_by_service() -> None:
    queries = _slow_query_panels()
    assert len(queries) >= 2
    for q in queries:
        assert 'service_name=~"$service"' in q.raw_expr, q.panel_title
        panel = next(p for p in _panels("database.json") if p["title"] == q.panel_title)
        if panel["type"] == "timeseries":
            groupings = re.findall(r"\bsum by \(([^)]*)\)", q.raw_expr)
            assert groupings and all("service_name" in g for g in groupings), q.panel_title
            assert all("{{service_name}}" in t["legendFormat"] for t in panel["targets"])


def test_slow_query_panels_over_two_services_with_one_selected(tmp_path: Path) -> None:
    """orders at 2 slow statements per second, billing at 1, the same statement: with orders
    selected the panels show only orders; with every service, one line per service."""
    labels = ('job="tradesense-exporter", instance="127.0.0.1:9121", '
              'db_operation_name="SELECT", db_collection_name="trades"')
    series = [{"series": f'tradesense_slow_queries_total{{{labels}, service_name="{service}"}}',
               "values": f"0+{per_second * 15:g}x60"} for service, per_second in
              (("orders", 2), ("billing", 1))]
    builtins = {"__rate_interval": "1m", "__range": "5m"}
    row = {"job": "tradesense-exporter", "db_operation_name": "SELECT",
           "db_collection_name": "trades"}

    def tests_for(values: dict[str, list[str]],
                  lines: dict[str, float], total: float) -> list[dict[str, Any]]:
        out = []
        for q in panel_queries(DASHBOARDS["database.json"], values=values, builtins=builtins):
            if "tradesense_slow_queries_total" not in q.raw_expr:
                continue
            if "sum by" in q.raw_expr:
                samples = [{"labels": "{" + ", ".join(
                    f'{k}="{v}"' for k, v in sorted({**row, "service_name": s}.items())
                    if k != "job") + "}", "value": v} for s, v in lines.items()]
            else:
                samples = [{"labels": "{}", "value": total}]
            out.append({"expr": q.expr, "eval_time": "10m", "exp_samples": samples})
        return out

    tests = [{"interval": "15s", "input_series": series, "promql_expr_test": [
        *tests_for({"service": ["orders"]}, {"orders": 2}, 600),
        *tests_for({}, {"orders": 2, "billing": 1}, 900),
    ]}]
    path = tmp_path / "slow-queries.test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m",
                                    "tests": tests}, sort_keys=False), encoding="utf-8")
    result = run_tool("promtool", ["test", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_issue_panels_present() -> None:
    def titles(name: str) -> str:
        return "\n".join(p["title"].lower() for p in _panels(name))

    redis = titles("redis.json")
    for word in ("up", "uptime", "version", "cache hit rate", "commands per second by command",
                 "latency", "maxmemory", "evictions", "clients", "rejected", "keys per db",
                 "network", "slowlog", "rdb", "aof", "replication lag"):
        assert word in redis, word
    database = titles("database.json")
    for word in ("pool connections vs max", "pending", "wait time", "timeouts",
                 "p50 / p95 / p99", "queries per second", "slow queries per second",
                 "redis client"):
        assert word in database, word
    sidecar = titles("sidecar.json")
    for word in ("scrape duration per target", "scrape errors per target", "rejected",
                 "dropped", "accepted", "series held"):
        assert word in sidecar, word
