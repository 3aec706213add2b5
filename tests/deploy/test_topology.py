"""Dashboards and rules right at fleet scale (docs/deployment.md, "Why nothing is counted twice"):
Redis aggregated per server (never summed across the processes that scrape it), app series
summed by service across pods and workers, pool capacity never resurrected from processes that
are gone."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import ROOT

AGGREGATION = re.compile(
    r"\b(sum|avg|min|max|count|stddev|topk|bottomk|quantile)\s*(by|without)?\s*(\([^()]*\))?\s*\(")
APP = re.compile(r"(?<![:\w])(http_server_|db_client_|cache_)\w*")  # raw, not a recorded series
REDIS = re.compile(r"(?<![:\w])redis_\w*")


def _walk(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(path.name, expr) for path in sorted((ROOT / "dashboards").glob("*.json"))
            for expr in _walk(json.loads(path.read_text()))]


def rule_exprs() -> list[tuple[str, str]]:
    return [(path.name, str(rule["expr"]))
            for path in sorted((ROOT / "alerts").glob("*.rules.yml"))
            for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


def groupings(expr: str, series: re.Pattern[str] = re.compile("")) -> list[tuple[str, str]]:
    """(by|without|"", the label list) of every aggregation in `expr`; with `series`, only of
    those applied straight to it (no other aggregation between: `sum(max by (instance)
    (redis_up))` counts servers, each aggregated on its own first)."""
    found = list(AGGREGATION.finditer(expr))
    out = []
    for m, after in zip(found, [*found[1:], None], strict=False):
        inner = expr[m.end():after.start() if after else len(expr)]
        if series.search(inner):
            out.append((m.group(2) or "", m.group(3) or ""))
    return out


def test_the_expressions_are_found() -> None:
    assert len(dashboard_exprs()) > 50 and len(rule_exprs()) > 40


@pytest.mark.parametrize(("where", "expr"), dashboard_exprs() + rule_exprs())
def test_redis_is_aggregated_per_server_never_across_scrapers(where: str, expr: str) -> None:
    if "redis_" not in expr or "db_system_name" in expr:
        return
    for how, labels in groupings(expr, REDIS):
        assert how == "by" and "instance" in labels, f"{where}: {expr}"


@pytest.mark.parametrize(("where", "expr"), dashboard_exprs() + rule_exprs())
def test_pool_capacity_is_only_the_live_processes(where: str, expr: str) -> None:
    """A gone process's db_client_connection_max leaves /metrics at once (clean exit) or after
    three of its intervals (killed): nothing may bring it back over a time range."""
    assert not re.search(r"_over_time\s*\([^()]*db_client_connection_max", expr), where


@pytest.mark.parametrize(("where", "expr"), rule_exprs())
def test_rules_sum_app_series_by_service(where: str, expr: str) -> None:
    for how, labels in groupings(expr, APP):
        assert how == "by" and "service_name" in labels, f"{where}: {expr}"


def test_the_redis_check_catches_a_sum_across_scrapers() -> None:
    expr = "sum(max by (instance) (redis_up)) / sum(rate(redis_keyspace_hits_total[5m]))"
    assert groupings(expr, REDIS) == [("by", "(instance)"), ("", "")]


def service_rules() -> list[tuple[str, str]]:
    return [(str(rule["record"]), str(rule["expr"]))
            for path in sorted((ROOT / "alerts").glob("*.rules.yml"))
            for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if str(rule.get("record", "")).startswith("service")]


@pytest.mark.parametrize(("record", "expr"), service_rules())
def test_a_service_rule_adds_up_its_pods_and_processes(record: str, expr: str) -> None:
    """A series recorded per service keeps no label of one pod or process: ten pods at a tenth
    of a threshold each are one service over it."""
    for _, labels in groupings(expr):
        assert not re.search(r"\b(instance|service_instance_id|pod)\b", labels), f"{record}: {expr}"


def test_the_service_rule_check_catches_a_per_pod_grouping() -> None:
    expr = "sum by (job, instance, service_name) (rate(tradesense_slow_queries_total[5m]))"
    assert re.search(r"\binstance\b", groupings(expr)[0][1])
