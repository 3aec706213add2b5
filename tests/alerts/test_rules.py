"""The Prometheus rules in alerts/: promtool, conventions, runbooks, Alertmanager routing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dashboard_queries import iter_panels, metric_uses
from tests.support.exported_metrics import allowed_series, is_counter_like
from tests.support.tools import run_tool

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "alerts"
ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
RULE_FILES = sorted(ALERTS.glob("*.rules.yml"))
TEST_FILES = sorted((ALERTS / "tests").glob("*_test.yml"))
RUNBOOKS = ALERTS / "runbooks.md"
RUNBOOK_BASE = "https://github.com/tradesense/tradesense-exporter/blob/main/alerts/runbooks.md"
REQUIRED_ALERTS = {"RedisDown", "RedisCacheHitRateLow", "DatabaseSlowQueries",
                   "DatabasePoolSaturated", "DatabasePoolTimeouts",
                   "ApiAvailabilityBudgetBurnFast", "ApiAvailabilityBudgetBurnSlow",
                   "ApiLatencyBudgetBurnFast", "ApiLatencyBudgetBurnSlow",
                   "AppCacheHitRatioLow", "AppCacheFallback"}
SEVERITIES = {"critical", "warning", "info"}
RATE_FUNCTIONS = {"rate", "irate", "increase"}


def _load(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _rules(kind: str) -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for group in _load(path)["groups"]
            for rule in group["rules"] if kind in rule]


ALERT_RULES = _rules("alert")
RECORDING_RULES = _rules("record")
ALERT_IDS = [rule["alert"] for rule in ALERT_RULES]


def _duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(int(n) * units[u] for n, u in parts)


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub generates for the headings of a markdown file."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", markdown, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_rule_files_exist() -> None:
    assert {p.name for p in RULE_FILES} >= {"redis.rules.yml", "database.rules.yml",
                                            "sidecar.rules.yml", "api.rules.yml"}


def test_promtool_check_rules() -> None:
    result = run_tool("promtool", ["check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES), result.stdout


def test_promtool_test_rules() -> None:
    result = run_tool("promtool", ["test", "rules", *map(str, TEST_FILES)], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES), result.stdout


def test_promtool_test_rules_can_fail(tmp_path: Path) -> None:
    """A rule that no longer matches its tests makes `promtool test rules` fail."""
    (tmp_path / "tests").mkdir()
    rules = (ALERTS / "redis.rules.yml").read_text(encoding="utf-8")
    broken = rules.replace("redis_up == 0", "redis_up == 2")
    assert broken != rules
    (tmp_path / "redis.rules.yml").write_text(broken, encoding="utf-8")
    test_file = tmp_path / "tests" / "redis_test.yml"
    test_file.write_text((ALERTS / "tests" / "redis_test.yml").read_text(encoding="utf-8"),
                         encoding="utf-8")
    result = run_tool("promtool", ["test", "rules", str(test_file)])
    assert result.returncode != 0
    assert "RedisDown" in result.stdout + result.stderr


def test_every_rule_file_is_tested() -> None:
    tested = {(path.parent / name).resolve() for path in TEST_FILES
              for name in _load(path)["rule_files"]}
    assert {p.resolve() for p in RULE_FILES} <= tested


def test_required_alerts_present() -> None:
    assert set(ALERT_IDS) >= REQUIRED_ALERTS
    assert len(ALERT_IDS) == len(set(ALERT_IDS)), "duplicate alert names"


@pytest.mark.parametrize("rule", ALERT_RULES, ids=ALERT_IDS)
def test_alert_conventions(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+", rule["alert"]), "CamelCase name"
    assert rule["labels"]["severity"] in SEVERITIES
    assert _duration_seconds(rule.get("for", "0s")) > 0, "a `for` that a test can run out"
    annotations = rule["annotations"]
    assert set(annotations) >= {"summary", "description", "runbook_url"}
    assert "{{" not in annotations["summary"], "summary is static"
    description = annotations["description"]
    assert "$value" in description, "description states the value"
    assert re.search(r"\$labels\.(instance|service_name)", description), "and where"


def test_runbook_urls_point_at_existing_sections() -> None:
    anchors = github_anchors(RUNBOOKS.read_text(encoding="utf-8"))
    for rule in ALERT_RULES:
        url = rule["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base == RUNBOOK_BASE, url
        assert anchor == rule["alert"].lower(), url
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in runbooks.md"


def test_every_runbook_section_is_an_alert() -> None:
    sections = re.findall(r"^## (\S+)\s*$", RUNBOOKS.read_text(encoding="utf-8"), re.MULTILINE)
    assert sorted(sections) == sorted(ALERT_IDS)


def test_runbook_anchor_slugs() -> None:
    assert github_anchors("## RedisDown\n### Memory used vs maxmemory\n") == {
        "redisdown", "memory-used-vs-maxmemory"}


def test_recording_rule_names_are_level_metric_operations() -> None:
    for rule in RECORDING_RULES:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]
    names = {r["record"] for r in RECORDING_RULES}
    assert "instance:redis_keyspace_hit_ratio:ratio_rate5m" in names
    assert {f"service_operation:db_client_operation_duration_seconds:p{q}_rate5m"
            for q in (50, 95, 99)} <= names
    # What the API dashboard and the end-to-end tests read.
    assert {f"service_route:http_server_request_duration_seconds:p{q}_rate5m"
            for q in (50, 95, 99)} <= names
    assert {"service_route:http_server_request_duration_seconds_count:rate5m",
            "service_route:http_server_request_error_ratio:ratio_rate5m",
            "service_cache:cache_hit_ratio:ratio_rate5m",
            "service_cache_layer:cache_hit_share:ratio_rate5m",
            "service_cache_layer:cache_errors:rate5m"} <= names
    assert {f"service:http_server_request_{sli}_ratio:ratio_rate{w}"
            for sli in ("error", "slow")
            for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")} <= names


def test_rule_expressions_use_exported_metrics_only() -> None:
    allowed = allowed_series()
    recorded = {r["record"] for r in RECORDING_RULES}
    for rule in ALERT_RULES + RECORDING_RULES:
        name = rule.get("alert") or rule["record"]
        for use in metric_uses(rule["expr"]):
            assert use.name in allowed or use.name in recorded, f"{name}: {use.name}"
            if RATE_FUNCTIONS & set(use.functions) and use.name in allowed:
                assert is_counter_like(use.name, allowed[use.name]), f"{name}: rate of {use.name}"


def _alert_evals(alertname: str) -> list[list[tuple[str, bool]]]:
    """Per test case: (eval_time, fires) of each evaluation of `alertname`."""
    cases = []
    for path in TEST_FILES:
        for case in _load(path)["tests"]:
            evals = [(e["eval_time"], bool(e.get("exp_alerts")))
                     for e in case.get("alert_rule_test", []) if e["alertname"] == alertname]
            if evals:
                cases.append(evals)
    return cases


@pytest.mark.parametrize("alertname", ALERT_IDS)
def test_every_alert_has_firing_and_quiet_cases(alertname: str) -> None:
    cases = _alert_evals(alertname)
    assert any(fires for case in cases for _, fires in case), "no case fires it"
    # Before `for` elapses: a quiet evaluation earlier than a firing one on the same input.
    assert any(
        any(not quiet_fires and _duration_seconds(t0) < _duration_seconds(t1)
            for t0, quiet_fires in case for t1, fires in case if fires)
        for case in cases
    ), "no case shows it quiet before `for` elapses"
    # Under the threshold: a case in which it never fires.
    assert any(not any(fires for _, fires in case) for case in cases), "no quiet case"


def test_alertmanager_config_is_valid() -> None:
    result = run_tool("amtool", ["check-config", str(ALERTMANAGER)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("severity", "receiver"), [
    ("critical", "pager"), ("warning", "ticket"), ("info", "blackhole")])
def test_alertmanager_routes_by_severity(severity: str, receiver: str) -> None:
    result = run_tool("amtool", ["config", "routes", "test",
                                 f"--config.file={ALERTMANAGER}",
                                 f"severity={severity}", "alertname=RedisDown"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_alertmanager_inhibitions_name_real_alerts() -> None:
    config = _load(ALERTMANAGER)
    named = set()
    for rule in config.get("inhibit_rules", []):
        for matcher in rule.get("source_matchers", []) + rule.get("target_matchers", []):
            match = re.fullmatch(r'alertname(=~?)"(.+)"', matcher)
            if match:
                named.update(match.group(2).split("|"))
    assert named and named <= set(ALERT_IDS)


def test_runbooks_name_real_dashboard_panels() -> None:
    """Every "quoted" name in runbooks.md outside code spans is a panel of a shipped dashboard."""
    titles = {p["title"] for path in sorted((REPO / "dashboards").glob("*.json"))
              for p in iter_panels(json.loads(path.read_text(encoding="utf-8")))}
    text = re.sub(r"`[^`]*`", "", RUNBOOKS.read_text(encoding="utf-8"))
    quoted = {" ".join(q.split()) for q in re.findall(r'"([^"]+)"', text)}
    assert quoted, "the runbooks point at no panel"
    assert quoted <= titles, sorted(quoted - titles)

