"""The API dashboard (dashboards/api.json): symptoms first, summed over every worker process.

The structure is checked here, and the arithmetic of every panel query through promtool over the
series two worker processes would send, shaped as issue 7's metric contract describes (the
labels, one get per cache lookup, no http_route on a request that matched no route). That each
panel returns data from the real instrumented example app is
tests/e2e/test_prometheus_stack.py's business (it queries every shipped dashboard).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dashboard_queries import (
    DASHBOARD_DIR,
    PanelQuery,
    dashboard_paths,
    load_dashboard,
    metric_uses,
    panel_queries,
    template_variables,
)
from tests.support.exported_metrics import allowed_series
from tests.support.tools import run_tool

API = load_dashboard(DASHBOARD_DIR / "api.json")
OTHERS = {d["uid"]: d for d in map(load_dashboard, dashboard_paths()) if d["uid"] != API["uid"]}
DATABASE_UID = "tradesense-database"
REDIS_UID = "tradesense-redis"
DRILL_DOWN_ROW = "Per process (drill-down)"
REQUESTS = "http_server_request_duration_seconds"
APP_PREFIXES = ("http_server_", "cache_")
# The app's series names (not its labels, cache_name and the like), each with its selector.
APP_SERIES = re.compile(r"\b(" + "|".join(sorted(
    (re.escape(n) for n in allowed_series() if n.startswith(APP_PREFIXES)),
    key=len, reverse=True)) + r")\b(\{[^}]*\})?")
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile"}
# Grafana's built-in link variables that are not template variables.
LINK_BUILTINS = {"__url_time_range"}


def _panels_by_row() -> Iterator[tuple[str, dict[str, Any]]]:
    """(title of the row a panel sits under, panel) for every non-row panel."""
    row = ""
    for panel in API["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
            for nested in panel.get("panels", []):
                yield row, nested
        else:
            yield row, panel


PANELS = {panel["title"]: panel for _, panel in _panels_by_row()}
ROW_OF = {panel["title"]: row for row, panel in _panels_by_row()}


def _queries(**kwargs: Any) -> list[PanelQuery]:
    return panel_queries(API, **kwargs)


# --------------------------------------------------------------------------------- structure
def test_identity_and_schema_like_the_other_dashboards() -> None:
    database = OTHERS[DATABASE_UID]
    assert API["uid"] == "tradesense-api"
    assert API["title"] == "TradeSense / API"
    assert "tradesense" in API["tags"]
    for key in ("schemaVersion", "__requires", "graphTooltip", "refresh", "time", "timezone"):
        assert API[key] == database[key], key


def test_panel_titles_unique() -> None:
    """Runbooks name panels by title."""
    titles = [panel["title"] for _, panel in _panels_by_row()]
    assert len(titles) == len(set(titles))


def test_variables() -> None:
    variables = template_variables(API)
    assert list(variables) == ["datasource", "job", "instance", "service", "route"]
    service, route = variables["service"], variables["route"]
    assert service["query"] == (
        f'label_values({REQUESTS}_count{{job=~"$job", instance=~"$instance"}}, service_name)')
    assert route["query"] == (
        f'label_values({REQUESTS}_count{{job=~"$job", instance=~"$instance", '
        'service_name=~"$service"}, http_route)')
    assert route["multi"] and route["includeAll"]
    # "All" must also match requests that matched no route (they have no http_route label).
    assert route["allValue"] == ".*"
    for variable in (service, route):
        assert variable["definition"] == variable["query"]


def test_every_query_uses_exported_series_and_the_app_families() -> None:
    allowed = allowed_series()
    used = {use.name for q in _queries() for use in metric_uses(q.expr)}
    assert used <= set(allowed), used - set(allowed)
    for family in (f"{REQUESTS}_count", f"{REQUESTS}_bucket", "http_server_active_requests",
                   "cache_gets_total", "cache_puts_total", "cache_evictions_total",
                   "cache_invalidations_total", "cache_errors_total",
                   "redis_keyspace_hits_total", "redis_keyspace_misses_total"):
        assert family in used, family


def test_app_series_are_filtered_by_service_and_route() -> None:
    for query in _queries():
        for name, selector in APP_SERIES.findall(query.raw_expr):
            assert selector, f"{query.panel_title}: bare {name}"
            assert 'service_name=~"$service"' in selector, f"{query.panel_title}: {name}"
            if name.startswith(REQUESTS):
                assert 'http_route=~"$route"' in selector, f"{query.panel_title}: {name}"


def test_app_series_are_summed_over_processes_never_one_workers_view() -> None:
    """Every http_/cache_ series is inside a sum (the innermost and only aggregation), never
    `without`; only the drill-down row keeps service_instance_id, and it always does; the
    time series panels keep service_name, so two services never add up."""
    for query in _queries():
        row = ROW_OF[query.panel_title]
        where = f"{query.panel_title} [{query.ref_id}]"
        assert not re.search(r"\bwithout\b", query.raw_expr), where
        for use in metric_uses(query.expr):
            if not use.name.startswith(APP_PREFIXES):
                continue
            aggregations = [f for f in use.functions if f in AGGREGATIONS]
            assert aggregations == ["sum"], f"{where}: {use.name} under {use.functions}"
        groupings = re.findall(r"\bsum by \(([^)]*)\)", query.raw_expr)
        if row == DRILL_DOWN_ROW:
            assert groupings and all("service_instance_id" in g for g in groupings), where
        else:
            assert "service_instance_id" not in query.raw_expr, where
        if PANELS[query.panel_title]["type"] == "timeseries" and APP_SERIES.search(
                query.raw_expr):
            assert groupings and all("service_name" in g for g in groupings), where


def test_quantiles_come_from_buckets_summed_by_le() -> None:
    quantiles = 0
    for query in _queries():
        buckets = [u for u in metric_uses(query.expr) if u.name == f"{REQUESTS}_bucket"]
        found = re.findall(r"histogram_quantile\(([0-9.]+), sum by \(([^)]*)\) \(rate\("
                           rf"{REQUESTS}_bucket\{{", query.raw_expr)
        assert len(found) == len(buckets), query.panel_title
        for _, labels in found:
            assert "le" in [label.strip() for label in labels.split(",")], query.panel_title
        quantiles += len(found)
    per_route = [q.raw_expr for q in _queries()
                 if q.panel_title == "Latency p50 / p95 / p99 per route"]
    assert [re.search(r"histogram_quantile\(([0-9.]+)", e).group(1)  # type: ignore[union-attr]
            for e in per_route] == ["0.5", "0.95", "0.99"]
    assert quantiles >= 5


def test_links_walk_down_to_the_database_and_redis_dashboards() -> None:
    variables = set(template_variables(API))
    links = [link for link in API["links"] if link["type"] == "link"]
    assert {_uid(link["url"]) for link in links} == {DATABASE_UID, REDIS_UID}
    assert all(link["keepTime"] for link in links)
    panel_links = {title: {_uid(link["url"]) for link in panel.get("links", [])}
                   for title, panel in PANELS.items()}
    for title in ("Error ratio per route (5xx share)", "Latency p50 / p95 / p99 per route"):
        assert {DATABASE_UID, REDIS_UID} <= panel_links[title], title
    for title in ("Redis server-side hit ratio", "Cache fallbacks per second"):
        assert REDIS_UID in panel_links[title], title
    every_url = [link["url"] for link in links] + [
        link["url"] for panel in PANELS.values() for link in panel.get("links", [])]
    for url in every_url:
        assert _uid(url) in OTHERS, f"{url}: no shipped dashboard has that uid"
        for name in re.findall(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", url):
            assert (name[0] or name[1]) in variables | LINK_BUILTINS, url


def _uid(url: str) -> str:
    match = re.match(r"^/d/([\w-]+)", url)
    assert match, url
    return match.group(1)


def test_issue_panels_present() -> None:
    titles = "\n".join(title.lower() for title in PANELS)
    for words in ("request rate per route", "error ratio per route", "p50 / p95 / p99 per route",
                  "active requests", "429", "status class", "app cache hit ratio per cache",
                  "each cache layer", "redis server-side hit ratio", "fallbacks",
                  "invalidations", "puts and evictions", "per process"):
        assert words in titles, words


def test_app_hit_ratio_stands_beside_redis_hit_ratio() -> None:
    app = PANELS["App cache hit ratio per cache (end to end)"]
    redis = PANELS["Redis server-side hit ratio"]
    assert app["gridPos"]["y"] == redis["gridPos"]["y"]
    assert app["gridPos"]["h"] == redis["gridPos"]["h"]
    for panel in (app, redis):
        defaults = panel["fieldConfig"]["defaults"]
        assert (defaults["unit"], defaults["min"], defaults["max"]) == ("percentunit", 0, 1)
    numerator, _, denominator = app["targets"][0]["expr"].partition("\n/\n")
    assert 'cache_result="hit"' in numerator
    assert "cache_result" not in denominator  # all gets: hits and misses of every layer


def test_drill_down_row_is_collapsed_and_last() -> None:
    row = API["panels"][-1]
    assert (row["type"], row["title"], row["collapsed"]) == ("row", DRILL_DOWN_ROW, True)
    assert len(row["panels"]) >= 4
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in API["panels"][:-1])
    assert row["gridPos"]["y"] >= bottom


def test_provisioning_loads_every_dashboard_file() -> None:
    """Grafana's file provider loads every *.json in the mounted dashboards/ folder."""
    providers = yaml.safe_load(
        (DASHBOARD_DIR / "provisioning" / "dashboards.yml").read_text())["providers"]
    assert [p["type"] for p in providers] == ["file"]
    assert (DASHBOARD_DIR / "api.json") in dashboard_paths()


# ------------------------------------------------------------------------ query arithmetic
# Two worker processes (w1, w2) of one service behind one sidecar, 15 s apart, every counter
# growing at a constant rate from 0; the queries are evaluated 10 minutes in with
# $__rate_interval = 1m and $__range = 5m.
SERVICE = "tradesense"
TARGET = {"job": "tradesense-exporter", "instance": "127.0.0.1:9121"}
SCOPE = {"otel_scope_name": "exporter.instrument", "otel_scope_version": "0.1.0"}
STEP = 15
BUILTINS = {"__rate_interval": "1m", "__range": "5m"}
EVAL_TIME = "10m"
Labels = dict[str, str]
Series = list[tuple[str, Labels, float]]  # (metric name, labels, increase per second)


def _app(worker: str, **labels: str) -> Labels:
    return {**TARGET, "service_name": SERVICE, "service_instance_id": worker, **SCOPE, **labels}


def _requests(worker: str, route: str | None, status: str | None, per_second: float,
              error_type: str | None = None) -> tuple[str, Labels, float]:
    labels = _app(worker, http_request_method="GET", url_scheme="http")
    if route is not None:
        labels["http_route"] = route
    if status is not None:
        labels["http_response_status_code"] = status
    if error_type is not None:
        labels["error_type"] = error_type
    return (f"{REQUESTS}_count", labels, per_second)


def _buckets(worker: str, route: str, counts: dict[str, float]) -> Series:
    labels = _app(worker, http_request_method="GET", url_scheme="http", http_route=route)
    return [(f"{REQUESTS}_bucket", {**labels, "le": le}, n) for le, n in counts.items()]


def _cache(metric: str, worker: str, cache: str, layer: str, per_second: float,
           **labels: str) -> tuple[str, Labels, float]:
    return (metric, _app(worker, cache_name=cache, cache_layer=layer, **labels), per_second)


TRADES, TRADE = "/trades", "/trades/{trade_id}"
BUSY: Series = [
    _requests("w1", TRADES, "200", 1.0),
    _requests("w2", TRADES, "200", 2.0),
    _requests("w2", TRADES, "500", 0.5, error_type="500"),
    _requests("w1", TRADES, None, 0.5, error_type="RuntimeError"),  # raised, no status sent
    _requests("w1", TRADE, "200", 1.0),
    _requests("w2", TRADE, "429", 1.5),
    _requests("w1", None, "404", 1.5),  # matched no route
    _requests("w1", "/healthz", "200", 0.0),  # no requests in the window
    *_buckets("w1", TRADES, {"0.25": 1.5, "0.5": 1.5, "+Inf": 1.5}),
    *_buckets("w2", TRADES, {"0.25": 1.0, "0.5": 2.0, "+Inf": 2.5}),
    ("http_server_active_requests", _app("w1", http_request_method="GET", url_scheme="http"),
     0.0),
    ("http_server_active_requests", _app("w2", http_request_method="GET", url_scheme="http"),
     0.0),
    _cache("cache_gets_total", "w1", "trades", "memory", 2.0, cache_result="hit"),
    _cache("cache_gets_total", "w1", "trades", "redis", 1.0, cache_result="hit"),
    _cache("cache_gets_total", "w1", "trades", "redis", 1.0, cache_result="miss"),
    _cache("cache_gets_total", "w2", "trades", "redis", 2.0, cache_result="hit"),
    _cache("cache_gets_total", "w2", "trades", "redis", 2.0, cache_result="miss"),
    _cache("cache_gets_total", "w1", "analytics", "redis", 1.0, cache_result="miss"),
    _cache("cache_errors_total", "w2", "trades", "redis", 0.5, error_type="ConnectionError"),
    _cache("cache_invalidations_total", "w1", "trades", "redis", 0.25),
    _cache("cache_invalidations_total", "w2", "trades", "redis", 0.25),
    _cache("cache_puts_total", "w1", "trades", "redis", 0.5),
    _cache("cache_puts_total", "w2", "trades", "redis", 0.5),
    ("redis_keyspace_hits_total", dict(TARGET), 1.0),
    ("redis_keyspace_misses_total", dict(TARGET), 3.0),
]
# Gauges hold a constant value instead of growing.
GAUGES = {("http_server_active_requests", "w1"): 3.0, ("http_server_active_requests", "w2"): 2.0}


def _s(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


SVC = {"service_name": SERVICE}
NONE = _s()
# (panel title, refId) -> {result labels: value}; every query of the dashboard has an entry.
EXPECTED_BUSY: dict[tuple[str, str], dict[frozenset[tuple[str, str]], float]] = {
    ("Requests per second", "A"): {NONE: 8.0},
    ("Error ratio (5xx)", "A"): {NONE: 0.125},  # (0.5 answered 500 + 0.5 raised) / 8
    ("Latency p99", "A"): {NONE: 0.5},
    ("Active requests (now)", "A"): {NONE: 5.0},
    ("Rate-limited (429, time range)", "A"): {NONE: 1.5 * 300},
    ("App cache hit ratio (time range)", "A"): {_s(cache_name="trades"): 5 / 8,
                                                 _s(cache_name="analytics"): 0.0},
    ("Redis hit ratio (time range)", "A"): {_s(**TARGET): 0.25},
    ("Cache fallbacks (time range)", "A"): {NONE: 0.5 * 300},
    ("Request rate per route", "A"): {
        _s(**SVC, http_route=TRADES): 4.0, _s(**SVC, http_route=TRADE): 2.5,
        _s(**SVC, http_route="(unmatched)"): 1.5, _s(**SVC, http_route="/healthz"): 0.0},
    ("Error ratio per route (5xx share)", "A"): {  # /healthz: no requests, no ratio
        _s(**SVC, http_route=TRADES): 0.25, _s(**SVC, http_route=TRADE): 0.0,
        _s(**SVC, http_route="(unmatched)"): 0.0},
    # /trades buckets summed over both workers: 2.5 under 0.25 s, 3.5 under 0.5 s, 4 in all.
    ("Latency p50 / p95 / p99 per route", "A"): {_s(**SVC, http_route=TRADES): 0.2},
    ("Latency p50 / p95 / p99 per route", "B"): {_s(**SVC, http_route=TRADES): 0.5},
    ("Latency p50 / p95 / p99 per route", "C"): {_s(**SVC, http_route=TRADES): 0.5},
    ("Requests by status class", "A"): {_s(**SVC): 4.0},
    ("Requests by status class", "B"): {_s(**SVC): 0.0},
    ("Requests by status class", "C"): {_s(**SVC): 3.0},
    ("Requests by status class", "D"): {_s(**SVC): 1.0},
    ("Rate-limited requests (429) per route", "A"): {
        _s(**SVC, http_route=TRADES): 0.0, _s(**SVC, http_route=TRADE): 1.5,
        _s(**SVC, http_route="(unmatched)"): 0.0, _s(**SVC, http_route="/healthz"): 0.0},
    ("Active requests", "A"): {_s(**SVC): 5.0},
    ("Requests with an error type per second, by route", "A"): {
        _s(**SVC, http_route=TRADES, error_type="500"): 0.5,
        _s(**SVC, http_route=TRADES, error_type="RuntimeError"): 0.5,
        _s(**SVC, http_route=TRADE): 0.0, _s(**SVC, http_route="(unmatched)"): 0.0,
        _s(**SVC, http_route="/healthz"): 0.0},
    ("App cache hit ratio per cache (end to end)", "A"): {
        _s(**SVC, cache_name="trades"): 5 / 8, _s(**SVC, cache_name="analytics"): 0.0},
    ("Share of lookups each cache layer serves", "A"): {
        _s(**SVC, cache_name="trades", cache_layer="memory"): 2 / 8,
        _s(**SVC, cache_name="trades", cache_layer="redis"): 3 / 8,
        _s(**SVC, cache_name="analytics", cache_layer="redis"): 0.0},
    ("Share of lookups each cache layer serves", "B"): {
        _s(**SVC, cache_name="trades"): 3 / 8, _s(**SVC, cache_name="analytics"): 1.0},
    ("Redis server-side hit ratio", "A"): {_s(**TARGET): 0.25},
    ("Cache fallbacks per second", "A"): {
        _s(**SVC, cache_name="trades", cache_layer="redis", error_type="ConnectionError"): 0.5,
        _s(**SVC, cache_name="trades", cache_layer="memory"): 0.0,
        _s(**SVC, cache_name="analytics", cache_layer="redis"): 0.0},
    ("Cache invalidations per second", "A"): {
        _s(**SVC, cache_name="trades", cache_layer="redis"): 0.5,
        _s(**SVC, cache_name="trades", cache_layer="memory"): 0.0,
        _s(**SVC, cache_name="analytics", cache_layer="redis"): 0.0},
    ("Cache puts and evictions per second", "A"): {
        _s(**SVC, cache_name="trades", cache_layer="redis"): 1.0,
        _s(**SVC, cache_name="trades", cache_layer="memory"): 0.0,
        _s(**SVC, cache_name="analytics", cache_layer="redis"): 0.0},
    ("Cache puts and evictions per second", "B"): {
        _s(**SVC, cache_name="trades", cache_layer="redis"): 0.0,
        _s(**SVC, cache_name="trades", cache_layer="memory"): 0.0,
        _s(**SVC, cache_name="analytics", cache_layer="redis"): 0.0},
    ("Cache lookups per second by layer and result", "A"): {
        _s(**SVC, cache_name="trades", cache_layer="memory", cache_result="hit"): 2.0,
        _s(**SVC, cache_name="trades", cache_layer="redis", cache_result="hit"): 3.0,
        _s(**SVC, cache_name="trades", cache_layer="redis", cache_result="miss"): 3.0,
        _s(**SVC, cache_name="analytics", cache_layer="redis", cache_result="miss"): 1.0},
    ("Request rate per process", "A"): {
        _s(**SVC, service_instance_id="w1"): 4.0, _s(**SVC, service_instance_id="w2"): 4.0},
    ("Error ratio per process (5xx share)", "A"): {
        _s(**SVC, service_instance_id="w1"): 0.125, _s(**SVC, service_instance_id="w2"): 0.125},
    ("Latency p99 per process", "A"): {
        _s(**SVC, service_instance_id="w1"): 0.25 * 0.99, _s(**SVC, service_instance_id="w2"): 0.5},
    ("Active requests per process", "A"): {
        _s(**SVC, service_instance_id="w1"): 3.0, _s(**SVC, service_instance_id="w2"): 2.0},
    ("App cache hit ratio per process", "A"): {
        _s(**SVC, service_instance_id="w1", cache_name="trades"): 0.75,
        _s(**SVC, service_instance_id="w2", cache_name="trades"): 0.5,
        _s(**SVC, service_instance_id="w1", cache_name="analytics"): 0.0},
    ("Cache fallbacks per process", "A"): {
        _s(**SVC, service_instance_id="w2", cache_name="trades", cache_layer="redis"): 0.5,
        _s(**SVC, service_instance_id="w1", cache_name="trades", cache_layer="memory"): 0.0,
        _s(**SVC, service_instance_id="w1", cache_name="trades", cache_layer="redis"): 0.0,
        _s(**SVC, service_instance_id="w1", cache_name="analytics", cache_layer="redis"): 0.0},
}

# Healthy traffic: nothing ever failed, was limited or invalidated, so those series were never
# created; the panels must still show 0, not "No data".
QUIET: Series = [
    _requests("w1", TRADES, "200", 1.0),
    _requests("w2", TRADES, "200", 1.0),
    *_buckets("w1", TRADES, {"0.25": 1.0, "0.5": 1.0, "+Inf": 1.0}),
    _cache("cache_gets_total", "w1", "trades", "memory", 1.0, cache_result="hit"),
    _cache("cache_gets_total", "w2", "trades", "redis", 1.0, cache_result="miss"),
]
EXPECTED_QUIET: dict[tuple[str, str], dict[frozenset[tuple[str, str]], float]] = {
    ("Requests per second", "A"): {NONE: 2.0},
    ("Error ratio (5xx)", "A"): {NONE: 0.0},
    ("Rate-limited (429, time range)", "A"): {NONE: 0.0},
    ("Cache fallbacks (time range)", "A"): {NONE: 0.0},
    ("Error ratio per route (5xx share)", "A"): {_s(**SVC, http_route=TRADES): 0.0},
    ("Requests by status class", "D"): {_s(**SVC): 0.0},
    ("Rate-limited requests (429) per route", "A"): {_s(**SVC, http_route=TRADES): 0.0},
    ("Requests with an error type per second, by route", "A"): {
        _s(**SVC, http_route=TRADES): 0.0},
    ("App cache hit ratio per cache (end to end)", "A"): {_s(**SVC, cache_name="trades"): 0.5},
    ("Cache fallbacks per second", "A"): {
        _s(**SVC, cache_name="trades", cache_layer="memory"): 0.0,
        _s(**SVC, cache_name="trades", cache_layer="redis"): 0.0},
    ("Error ratio per process (5xx share)", "A"): {
        _s(**SVC, service_instance_id="w1"): 0.0, _s(**SVC, service_instance_id="w2"): 0.0},
}

# With one route selected (its template's braces regex-escaped as Grafana does).
EXPECTED_ONE_ROUTE: dict[tuple[str, str], dict[frozenset[tuple[str, str]], float]] = {
    ("Requests per second", "A"): {NONE: 2.5},
    ("Request rate per route", "A"): {_s(**SVC, http_route=TRADE): 2.5},
    ("Rate-limited (429, time range)", "A"): {NONE: 1.5 * 300},
}


def _selector(name: str, labels: Labels) -> str:
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _input_series(series: Series) -> list[dict[str, str]]:
    samples = 60  # 15 minutes at 15 s
    out = []
    for name, labels, per_second in series:
        gauge = GAUGES.get((name, labels.get("service_instance_id", "")))
        values = (f"{gauge:g}x{samples}" if gauge is not None
                  else f"0+{per_second * STEP:g}x{samples}")
        out.append({"series": _selector(name, labels), "values": values})
    return out


# Values are compared as integers in millionths: promtool compares floats exactly.
SCALE = 1_000_000


def _promtool_test(series: Series, expected: dict[tuple[str, str], dict[Any, float]],
                   queries: list[PanelQuery]) -> dict[str, Any]:
    by_key = {(q.panel_title, q.ref_id): q for q in queries}
    tests = []
    for key, results in expected.items():
        tests.append({
            "expr": f"round(({by_key[key].expr}) * {SCALE})",
            "eval_time": EVAL_TIME,
            "exp_samples": [
                {"labels": _selector("", dict(sorted(labels))), "value": round(value * SCALE)}
                for labels, value in results.items()],
        })
    return {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": f"{STEP}s", "input_series": _input_series(series),
        "promql_expr_test": tests}]}


def _run_promtool(tmp_path: Path, name: str, content: dict[str, Any]) -> str:
    path = tmp_path / f"{name}.test.yml"
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    result = run_tool("promtool", ["test", "rules", str(path)])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS" in output, output
    return output


def test_every_query_has_its_arithmetic_checked() -> None:
    keys = {(q.panel_title, q.ref_id) for q in _queries()}
    assert keys == set(EXPECTED_BUSY), keys ^ set(EXPECTED_BUSY)


@pytest.mark.parametrize(("series", "expected", "values"), [
    pytest.param(BUSY, EXPECTED_BUSY, {}, id="two-workers-errors-fallbacks"),
    pytest.param(QUIET, EXPECTED_QUIET, {}, id="healthy-zero-not-no-data"),
    pytest.param(BUSY, EXPECTED_ONE_ROUTE, {"route": [TRADE]}, id="one-route-selected"),
])
def test_query_arithmetic_over_two_workers(
        tmp_path: Path, series: Series, expected: dict[tuple[str, str], dict[Any, float]],
        values: dict[str, list[str]]) -> None:
    queries = _queries(values=values, builtins=BUILTINS)
    _run_promtool(tmp_path, "api-dashboard", _promtool_test(series, expected, queries))


def test_arithmetic_check_can_fail(tmp_path: Path) -> None:
    """One worker's view (w1 only: 4 requests per second) is not the service's 8."""
    queries = _queries(builtins=BUILTINS)
    content = _promtool_test(BUSY, {("Requests per second", "A"): {NONE: 4.0}}, queries)
    path = tmp_path / "wrong.test.yml"
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    result = run_tool("promtool", ["test", "rules", str(path)])
    assert result.returncode != 0
    assert "got: {} 8E+06" in result.stdout + result.stderr
