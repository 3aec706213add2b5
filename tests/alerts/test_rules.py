"""The Prometheus rules in alerts/: promtool, conventions, runbooks, Alertmanager routing."""

from __future__ import annotations

import importlib.util
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
RUNBOOK_BASE = (ALERTS / "runbook-base.txt").read_text().strip()  # the one place to set it
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


@pytest.mark.e2e
def test_promtool_check_rules() -> None:
    result = run_tool("promtool", ["check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES), result.stdout


@pytest.mark.e2e
def test_promtool_test_rules() -> None:
    result = run_tool("promtool", ["test", "rules", *map(str, TEST_FILES)], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES), result.stdout


@pytest.mark.e2e
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


def test_runbook_base_is_set_in_one_place(tmp_path: Path) -> None:
    """`make runbook-base URL=...` rewrites every alert's runbook_url and the base file, and
    nothing else in the rule files."""
    spec = importlib.util.spec_from_file_location("set_runbook_base",
                                                  REPO / "scripts" / "set_runbook_base.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    set_base = module.set_base
    copy = tmp_path / "alerts"
    copy.mkdir()
    for path in [*RULE_FILES, ALERTS / "runbook-base.txt"]:
        (copy / path.name).write_text(path.read_text())
    new = "https://git.example.com/sre/tradesense-exporter/-/blob/main/alerts/runbooks.md"
    assert set_base(new, copy) == len(ALERT_RULES)
    assert (copy / "runbook-base.txt").read_text().strip() == new
    for path in RULE_FILES:
        before, after = path.read_text(), (copy / path.name).read_text()
        assert after.count(new + "#") == before.count(RUNBOOK_BASE + "#")
        assert after.replace(new, RUNBOOK_BASE) == before


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


@pytest.mark.e2e
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
    named: set[str] = set()
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


# ---------------------------------------------------------------------------- API SLO rules
API_RULES = ALERTS / "api.rules.yml"
API_TESTS = ALERTS / "tests" / "api_test.yml"
# The buckets of http.server.request.duration (the issue 7 contract: the conventions' advice).
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                         7.5, 10.0)
OBJECTIVES = {"slo:http_server_availability:objective", "slo:http_server_latency:objective",
              "slo:http_server_request_duration_seconds:threshold",
              "slo:http_server_requests:min_rate"}
BURN_ALERTS = {"ApiAvailabilityBudgetBurnFast": "availability",
               "ApiAvailabilityBudgetBurnSlow": "availability",
               "ApiLatencyBudgetBurnFast": "latency", "ApiLatencyBudgetBurnSlow": "latency"}


def _api_groups() -> dict[str, list[dict[str, Any]]]:
    return {group["name"]: group["rules"] for group in _load(API_RULES)["groups"]}


def _latency_threshold() -> tuple[float, str]:
    (expr,) = [r["expr"] for r in _api_groups()["api.objectives"]
               if r["record"] == "slo:http_server_request_duration_seconds:threshold"]
    match = re.fullmatch(r'label_replace\(vector\(([0-9.]+)\), "le", "([^"]*)", "", ""\)',
                         expr.strip())
    assert match, expr
    return float(match.group(1)), match.group(2)


def test_objectives_are_set_in_one_place() -> None:
    groups = _api_groups()
    assert {r["record"] for r in groups["api.objectives"]} == OBJECTIVES
    for name, rules in groups.items():
        if name == "api.objectives":
            continue
        for rule in rules:
            expr = rule["expr"]
            what = rule.get("alert") or rule["record"]
            assert "vector(" not in expr, f"{what}: a constant outside api.objectives"
            assert "le=" not in expr, f"{what}: the threshold bucket comes from its series"
            if what in BURN_ALERTS or what.startswith("service:"):
                assert not re.search(r"(?<![\w.])0\.\d", expr), f"{what}: an objective as a number"
    burn = {r["alert"]: r["expr"] for r in groups["api.alerts"] if r["alert"] in BURN_ALERTS}
    assert set(burn) == set(BURN_ALERTS)
    for alert, objective in BURN_ALERTS.items():
        assert burn[alert].count(f"slo:http_server_{objective}:objective") == 4, alert
        assert burn[alert].count("slo:http_server_requests:min_rate") == 2, alert


def test_api_rules_sum_over_workers_and_replicas() -> None:
    """What users feel is the service: no rule keeps one worker's (or one sidecar's) view."""
    allowed = allowed_series()
    for rules in _api_groups().values():
        for rule in rules:
            what = rule.get("alert") or rule["record"]
            for labels in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", rule["expr"]):
                names = {n.strip() for n in labels.split(",")}
                assert not names & {"instance", "service_instance_id"}, what
            for use in metric_uses(rule["expr"]):
                if use.name in allowed:
                    assert use.functions[:1] == ("sum",), f"{what}: {use.name} not summed"


def test_latency_threshold_is_a_bucket_bound_as_the_sidecar_writes_it() -> None:
    from exporter import semconv
    from exporter.exposition import render
    from exporter.otlp.naming import bound_text
    from exporter.otlp.store import SeriesStore
    from exporter.otlp.translate import apply_metrics
    from tests.otlp.sdk import metrics_request

    assert tuple(semconv.HTTP_DURATION_BUCKETS) == HTTP_DURATION_BUCKETS
    seconds, le = _latency_threshold()
    assert seconds in HTTP_DURATION_BUCKETS, "the latency threshold must be a bucket bound"
    assert le == bound_text(seconds)

    def record(meter: Any) -> None:
        meter.create_histogram(
            "http.server.request.duration", unit="s",
            explicit_bucket_boundaries_advisory=list(HTTP_DURATION_BUCKETS),
        ).record(0.3, {"http.request.method": "GET", "http.route": "/trades/{trade_id}",
                       "http.response.status_code": 200, "url.scheme": "http"})

    request, _ = metrics_request(record, resource={"service.name": "tradesense",
                                                   "service.instance.id": "w1"})
    store = SeriesStore()
    apply_metrics(request, store)
    text = render(store.collect()).decode()
    served = re.findall(r'^http_server_request_duration_seconds_bucket\{.*le="([^"]+)"\}', text,
                        re.MULTILINE)
    assert served == [bound_text(b) for b in HTTP_DURATION_BUCKETS] + ["+Inf"]
    assert le in served


# (text in api.rules.yml, its replacement, a case of api_test.yml, the alert that then misbehaves)
ONE_NUMBER = [
    ("vector(0.999)", "vector(0.9999)", "fast burn stays quiet at burn rate 5.8",
     "ApiAvailabilityBudgetBurnFast"),
    ("vector(0.99)", "vector(0.999)", "fast burn stays quiet at burn rate 5.8",
     "ApiLatencyBudgetBurnFast"),
    ('vector(0.5), "le", "0.5"', 'vector(0.25), "le", "0.25"',
     "fast burn stays quiet at burn rate 5.8", "ApiLatencyBudgetBurnFast"),
    # an `le` the sidecar never writes matches no bucket: the latency alerts go blind
    ('"le", "0.5"', '"le", "0.50"',
     "fast burn pages at burn rate 6.2 over 6 h and 30 m, not before its `for`",
     "ApiLatencyBudgetBurnFast"),
    ("vector(0.1)", "vector(0)",
     "burn-rate alerts stay quiet below the minimum request rate: 1 error among 3 requests an hour",
     "ApiAvailabilityBudgetBurnFast"),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("old", "new", "case", "alert"), ONE_NUMBER,
                         ids=[f"{o} -> {n}" for o, n, _, _ in ONE_NUMBER])
def test_one_number_in_api_objectives_moves_the_alerts(tmp_path: Path, old: str, new: str,
                                                       case: str, alert: str) -> None:
    rules = API_RULES.read_text(encoding="utf-8")
    assert rules.count(old) == 1
    suite = _load(API_TESTS)
    suite["tests"] = [t for t in suite["tests"] if t["name"] == case]
    assert len(suite["tests"]) == 1, case
    (tmp_path / "tests").mkdir()
    test_file = tmp_path / "tests" / "api_test.yml"
    test_file.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    outcomes = []
    for text in (rules, rules.replace(old, new)):
        (tmp_path / "api.rules.yml").write_text(text, encoding="utf-8")
        outcomes.append(run_tool("promtool", ["test", "rules", str(test_file)]))
    shipped, changed = outcomes
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    assert changed.returncode != 0, changed.stdout
    assert alert in changed.stdout + changed.stderr
