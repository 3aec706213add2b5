"""The monitoring stack end to end, against a real Prometheus.

A private Redis (64 MB, allkeys-lru, AOF everysec) with the example app's cache traffic; the
sidecar scraping it and receiving OTLP from the example app (SQLite) and from a worker that puts a
small PostgreSQL pool in trouble (tests/e2e/stack_worker.py); Debian's Prometheus scraping the
sidecar every second with deploy/prometheus/prometheus.local.yml and the rules in alerts/.

Every query of every dashboard panel must parse and return data; the shipped rules must load and
evaluate; induced trouble must make the matching alert expressions true (evaluated directly as
instant queries: the `for` durations are the promtool tests' business).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import yaml

from tests.e2e.stack_worker import POOL_NAME, SERVICE_NAME
from tests.support.dashboard_queries import (
    PanelQuery,
    dashboard_paths,
    load_dashboard,
    panel_queries,
    variable_queries,
)
from tests.support.net import free_port, wait_http
from tests.support.prometheus import (
    ALERTS_DIR,
    SIDECAR_JOB,
    PrometheusServer,
    QueryError,
    run_prometheus,
    wait_until,
)
from tests.support.redis_servers import LUA_BUSY_LOOP, RedisServer, start_redis
from tests.support.sidecar import SidecarProcess, run_sidecar

REPO = Path(__file__).resolve().parents[2]
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCRAPE_INTERVAL = 1.0  # Prometheus's scrape timeout and rule evaluation interval too
# Grafana's $__rate_interval is at least four scrape intervals; a little more absorbs a late
# scrape on a loaded machine.
BUILTINS = {
    "__rate_interval": "10s",
    "__interval": "2s",
    "__interval_ms": "2000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}
RULE_FILES = sorted(ALERTS_DIR.glob("*.rules.yml"))
# The example app's own slow-query threshold is set far above its queries, so that slow queries
# (and DatabaseSlowQueries) come from the worker's pg_sleep only and the quiet case is certain.
APP_SLOW_QUERY_THRESHOLD = "5"

pytestmark = pytest.mark.timeout(150)


# --------------------------------------------------------------------------- the processes
def tail(name: str, text: str, lines: int = 8, width: int = 240) -> str:
    """The last `lines` lines of a log, each cut to `width` characters, for failure messages."""
    kept = [line[:width] for line in text.splitlines()[-lines:]]
    return f"--- {name} log (last {len(kept)} lines):\n" + "\n".join(kept)


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[str]
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 8) -> str:
        return tail(self.name, self.log(), lines)

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)


def spawn(name: str, args: list[str], workdir: Path, env: dict[str, str],
          stdin: int | None = subprocess.DEVNULL) -> Process:
    log_path = workdir / f"{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env={**os.environ, **env},
                                stdin=stdin, stdout=log, stderr=subprocess.STDOUT, text=True)
    return Process(name, proc, log_path)


class Worker:
    """tests/e2e/stack_worker.py, driven over its stdin."""

    def __init__(self, process: Process) -> None:
        self.process = process

    @property
    def stdin(self) -> IO[str]:
        assert self.process.proc.stdin is not None
        return self.process.proc.stdin

    def send(self, command: str) -> None:
        self.stdin.write(command + "\n")
        self.stdin.flush()

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            if self.process.proc.poll() is not None:
                raise RuntimeError(f"the worker exited\n{self.process.log_tail()}")
            return "ready" in self.process.log().split()

        wait_until(ready, "the worker to be ready", timeout, 0.1)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stdin.close()
        try:
            self.process.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.process.stop()


@dataclass
class Stack:
    redis: RedisServer
    sidecar: SidecarProcess
    prometheus: PrometheusServer
    app: Process
    traffic: Process
    worker: Worker
    started: float  # wall-clock time Prometheus became ready
    app_url: str
    workdir: Path

    def diagnostics(self) -> str:
        return "\n".join([self.app.log_tail(), self.worker.process.log_tail(),
                          tail("sidecar", self.sidecar.logs()),
                          tail("prometheus", self.prometheus.logs())])


def _child_env(sidecar: SidecarProcess) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sidecar.otlp_url,
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("e2e-stack")
    with ExitStack() as cleanup:
        server = start_redis(workdir / "redis", [
            "maxmemory 64mb", "maxmemory-policy allkeys-lru",
            "appendonly yes", "appendfsync everysec",
        ])
        cleanup.callback(server.stop)
        sidecar = cleanup.enter_context(run_sidecar([f"--redis.addr={server.url}"]))
        prometheus = cleanup.enter_context(
            run_prometheus(workdir / "prometheus", f"127.0.0.1:{sidecar.web_port}",
                           scrape_interval=f"{SCRAPE_INTERVAL:g}s"))
        started = time.time()
        otel = _child_env(sidecar)
        app_port = free_port()
        app = spawn("app", ["-m", "examples.tradesense_app", "--port", str(app_port),
                            "--log-level", "warning"], workdir, {
            **otel,
            "DATABASE_URL": f"sqlite:///{workdir / 'tradesense.db'}",
            "REDIS_URL": f"{server.url}/0",
            "SLOW_QUERY_THRESHOLD": APP_SLOW_QUERY_THRESHOLD,
            "TRADESENSE_FAULTS": "1",
        })
        cleanup.callback(app.stop)
        worker = Worker(spawn("worker", ["-m", "tests.e2e.stack_worker",
                                         "--database-url", POSTGRES_URL], workdir, otel,
                              stdin=subprocess.PIPE))
        cleanup.callback(worker.stop)
        wait_http(f"http://127.0.0.1:{app_port}/healthz", timeout=60)
        traffic = spawn("traffic", ["-m", "examples.tradesense_app.traffic",
                                    "--base-url", f"http://127.0.0.1:{app_port}",
                                    "--rate", "10", "--concurrency", "10", "--slow-every", "0"],
                        workdir, {})
        cleanup.callback(traffic.stop)
        worker.wait_ready()
        with server.admin() as client:
            client.eval(LUA_BUSY_LOOP, 0, 20_000)  # one slow log entry, > 10 ms
        yield Stack(server, sidecar, prometheus, app, traffic, worker, started,
                    f"http://127.0.0.1:{app_port}", workdir)


# --------------------------------------------------------------------------- helpers
def _alert_exprs() -> dict[str, str]:
    exprs = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    exprs[rule["alert"]] = rule["expr"]
    return exprs


ALERT_EXPRS = _alert_exprs()


def _has_finite_point(result: list[dict[str, Any]]) -> bool:
    """Some sample of an instant or range query result is a number (Grafana draws no NaN)."""
    points = [point for series in result for point in series.get("values") or [series["value"]]]
    return any(math.isfinite(float(value)) for _, value in points)


def _series_text(result: list[dict[str, Any]]) -> str:
    return "; ".join(f"{s['metric']} = {s['value'][1]}" for s in result) or "(empty)"


def _poll_alert(prom: PrometheusServer, alert: str, accept: Callable[[dict[str, Any]], bool],
                timeout: float, stack: Stack) -> list[dict[str, Any]]:
    """The alert's expression, queried until one of its series passes `accept`."""
    expr = ALERT_EXPRS[alert]
    last: list[dict[str, Any]] = []

    def matching() -> list[dict[str, Any]]:
        nonlocal last
        last = prom.query(expr)
        return [s for s in last if accept(s)]

    try:
        return wait_until(matching, f"{alert} to be true", timeout)
    except TimeoutError:
        pytest.fail(f"{alert} never became true within {timeout:g}s.\nexpr: {expr}\n"
                    f"last result: {_series_text(last)}\n{stack.diagnostics()}")


# --------------------------------------------------------------------------- dashboards
_COUNT_BY = re.compile(r"^count by \((\w+)\)")


def _resolve_variables(prom: PrometheusServer,
                       dashboard: dict[str, Any]) -> tuple[dict[str, list[str]], list[str]]:
    """Template variable values as Grafana would discover them, in dashboard order (a variable's
    query may use the ones before it), and the problems met on the way."""
    values: dict[str, list[str]] = {}
    problems: list[str] = []
    names = [q.name for q in variable_queries(dashboard, builtins=BUILTINS)]
    for name in names:
        query = next(q for q in variable_queries(dashboard, values, BUILTINS) if q.name == name)
        where = f"{dashboard.get('title')} variable ${name}"
        try:
            result = prom.query(query.expr)
        except QueryError as error:
            problems.append(f"{where}: {error}\n    expr: {query.expr}")
            continue
        if not result:
            problems.append(f"{where}: no data\n    expr: {query.expr}")
            continue
        match = _COUNT_BY.match(query.expr)
        assert match is not None, query.expr
        found = sorted({s["metric"].get(match.group(1), "") for s in result} - {""})
        if found:  # else (no series has the label: `target` with one Redis) "All" stays selected
            values[name] = found
    return values, problems


def _panel_problem(prom: PrometheusServer, query: PanelQuery, start: float) -> str | None:
    """Why this panel query fails (None when it parses and returns data now and lately)."""
    where = f"{query.dashboard_title} / {query.panel_title} [{query.ref_id}]"
    end = time.time()
    try:
        instant = prom.query(query.expr, at=end)
        ranged = prom.query_range(query.expr, max(start, end - 60), end, 2 * SCRAPE_INTERVAL)
    except QueryError as error:
        return f"{where}: {error}\n    expr: {query.expr}"
    if query.hidden:
        return None
    if not instant:
        return f"{where}: no data (instant query)\n    expr: {query.expr}"
    if not _has_finite_point(instant) and not _has_finite_point(ranged):
        return (f"{where}: only NaN/Inf in the last minute ({_series_text(instant)})\n"
                f"    expr: {query.expr}")
    return None


def _discover(prom: PrometheusServer, dashboards: dict[str, dict[str, Any]],
              ) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    values: dict[str, dict[str, list[str]]] = {}
    problems: list[str] = []
    for key, dashboard in dashboards.items():
        values[key], found = _resolve_variables(prom, dashboard)
        problems += found
    return values, problems


def _check_panels(prom: PrometheusServer, queries: list[PanelQuery],
                  start: float) -> dict[PanelQuery, str]:
    checked = {query: _panel_problem(prom, query, start) for query in queries}
    return {query: problem for query, problem in checked.items() if problem}


def test_every_dashboard_query_parses_and_returns_data(stack: Stack) -> None:
    prom = stack.prometheus
    dashboards = {str(path): load_dashboard(path) for path in dashboard_paths()}
    assert len(dashboards) >= 3, f"dashboards found: {sorted(dashboards)}"
    deadline = time.monotonic() + 40

    values, problems = _discover(prom, dashboards)
    while problems and time.monotonic() < deadline:
        time.sleep(1.0)
        values, problems = _discover(prom, dashboards)
    assert not problems, "template variable queries failed:\n" + "\n".join(problems)

    queries = [query for key, dashboard in dashboards.items()
               for query in panel_queries(dashboard, values[key], BUILTINS)]
    assert len(queries) >= 80, f"only {len(queries)} panel queries found"
    failing = _check_panels(prom, queries, stack.started)
    while failing and time.monotonic() < deadline:
        time.sleep(1.0)
        failing = _check_panels(prom, list(failing), stack.started)
    assert not failing, (f"{len(failing)} of {len(queries)} panel queries failed:\n"
                         + "\n".join(failing.values()))


# --------------------------------------------------------------------------- API symptoms
APP_SERVICE = "tradesense-demo"


def _alerts_of_severity(severity: str) -> list[str]:
    return [rule["alert"] for path in RULE_FILES
            for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
            for rule in group["rules"]
            if "alert" in rule and rule["labels"]["severity"] == severity]


def _is_app(series: dict[str, Any]) -> bool:
    return bool(series["metric"].get("service_name") == APP_SERVICE)


def test_healthy_traffic_keeps_every_page_quiet(stack: Stack) -> None:
    prom = stack.prometheus
    busy = (f'service:http_server_request_duration_seconds_count:rate5m{{service_name='
            f'"{APP_SERVICE}"}} > 1')
    wait_until(lambda: prom.query(busy), "the example app's traffic in the SLO rules", 30)
    pages = _alerts_of_severity("critical")
    assert {"ApiAvailabilityBudgetBurnFast", "ApiLatencyBudgetBurnFast"} <= set(pages)
    loud = {alert: _series_text(result) for alert in pages
            if (result := prom.query(ALERT_EXPRS[alert]))}
    assert not loud, f"pages true under healthy traffic: {loud}"


def test_injected_errors_and_latency_make_the_fast_burns_true(stack: Stack) -> None:
    faults = spawn("faults", ["-m", "examples.tradesense_app.traffic",
                              "--base-url", stack.app_url, "--rate", "10", "--concurrency", "10",
                              "--slow-every", "0", "--error-rate", "0.5", "--latency-ms", "600",
                              "--duration", "60"], stack.workdir, {})
    try:
        errors = _poll_alert(stack.prometheus, "ApiAvailabilityBudgetBurnFast", _is_app, 40,
                             stack)
        slow = _poll_alert(stack.prometheus, "ApiLatencyBudgetBurnFast", _is_app, 40, stack)
    finally:
        faults.stop()
    assert all(float(s["value"][1]) > 6 for s in errors + slow)  # burn rates, 6 at the least


# --------------------------------------------------------------------------- rules
def test_shipped_rules_load_and_evaluate_cleanly(stack: Stack) -> None:
    expected: dict[str, list[str]] = {}
    files: dict[str, str] = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            expected[group["name"]] = [r.get("alert") or r["record"] for r in group["rules"]]
            files[group["name"]] = str(path.resolve())
    assert {"redis.alerts", "database.alerts", "sidecar.alerts"} <= set(expected)

    def evaluated() -> list[dict[str, Any]] | None:
        groups = stack.prometheus.rule_groups()
        rules = [r for g in groups for r in g["rules"]]
        return groups if rules and all(r["health"] != "unknown" for r in rules) else None

    groups = wait_until(evaluated, "every rule to be evaluated once", 20)
    loaded = {g["name"]: [r["name"] for r in g["rules"]] for g in groups}
    assert loaded == expected
    assert {g["name"]: g["file"] for g in groups} == files
    unhealthy = [f"{g['name']}/{r['name']}: health {r['health']}, {r.get('lastError')}"
                 for g in groups for r in g["rules"]
                 if r["health"] != "ok" or r.get("lastError")]
    assert not unhealthy, "\n".join(unhealthy)


# --------------------------------------------------------------------------- redis trouble
def test_cache_miss_burst_makes_redis_cache_hit_rate_low_true(stack: Stack) -> None:
    prom = stack.prometheus
    with stack.redis.admin() as client:
        hot = [f"e2e:hot:{i}" for i in range(100)]
        client.mset({key: "1" for key in hot})
        pipe = client.pipeline(transaction=False)
        for i in range(3000):
            pipe.get(hot[i % len(hot)])
        pipe.execute()
        healthy = ("instance:redis_keyspace_hit_ratio:ratio_rate5m >= 0.8"
                   " and on (job, instance, target) instance:redis_keyspace_lookups:rate5m >= 1")
        wait_until(lambda: prom.query(healthy), "a busy cache with a healthy hit rate", 20)
        quiet = prom.query(ALERT_EXPRS["RedisCacheHitRateLow"])
        assert quiet == [], f"true before any miss burst: {_series_text(quiet)}"

        for chunk in range(20):
            pipe = client.pipeline(transaction=False)
            for i in range(1000):
                pipe.get(f"e2e:missing:{chunk}:{i}")
            assert set(pipe.execute()) == {None}
    fired = _poll_alert(prom, "RedisCacheHitRateLow", lambda s: True, 20, stack)
    assert all(float(s["value"][1]) < 0.8 for s in fired)


# --------------------------------------------------------------------------- database trouble
def _worker_selector(metric: str) -> str:
    labels = f'service_name="{SERVICE_NAME}", db_client_connection_pool_name="{POOL_NAME}"'
    return f"{metric}{{{labels}}}"


def _is_worker_pool(series: dict[str, Any]) -> bool:
    labels: dict[str, str] = series["metric"]
    return (labels.get("service_name") == SERVICE_NAME
            and labels.get("db_client_connection_pool_name") == POOL_NAME)


@dataclass
class DbTrouble:
    quiet: dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def db_trouble(stack: Stack) -> Iterator[DbTrouble]:
    """The worker's pool seen calm by Prometheus (its timeout counter scraped at zero), the three
    database alerts' results at that moment, then the worker in trouble until the module ends."""
    prom = stack.prometheus
    wait_until(lambda: prom.query(_worker_selector("db_client_connection_timeouts_total") + " == 0")
               and prom.query(_worker_selector("db_client_connection_max") + " == 3"),
               "the worker's pool series (timeouts at 0, max 3)", 30)
    quiet = {alert: prom.query(ALERT_EXPRS[alert]) for alert in
             ("DatabaseSlowQueries", "DatabasePoolTimeouts", "DatabasePoolSaturated")}
    stack.worker.send("trouble")
    try:
        yield DbTrouble(quiet)
    finally:
        with contextlib.suppress(OSError, ValueError):
            stack.worker.send("calm")


def test_pg_sleep_queries_make_database_slow_queries_true(stack: Stack,
                                                          db_trouble: DbTrouble) -> None:
    quiet = db_trouble.quiet["DatabaseSlowQueries"]
    assert not quiet, f"true before any trouble: {_series_text(quiet)}"
    fired = _poll_alert(stack.prometheus, "DatabaseSlowQueries",
                        lambda s: s["metric"].get("db_operation_name") == "SELECT"
                        and s["metric"].get("service_name") == SERVICE_NAME, 30, stack)
    assert all(float(s["value"][1]) > 1 for s in fired)
    # What the alert's description sends the on-call engineer to: the service's statements,
    # fingerprinted.
    listing = httpx.get(f"{stack.sidecar.web_url}/api/slow-queries",
                        params={"service": SERVICE_NAME}, timeout=10).json()
    named = [q for q in listing["slow_queries"] if "pg_sleep" in q["fingerprint"]]
    assert named and named[0]["calls"] > 1, listing
    assert {q["service_name"] for q in listing["slow_queries"]} == {SERVICE_NAME}, listing


def test_full_pool_makes_database_pool_saturated_true(stack: Stack,
                                                      db_trouble: DbTrouble) -> None:
    quiet = [s for s in db_trouble.quiet["DatabasePoolSaturated"] if _is_worker_pool(s)]
    assert not quiet, f"true before any trouble: {_series_text(quiet)}"
    fired = _poll_alert(stack.prometheus, "DatabasePoolSaturated", _is_worker_pool, 30, stack)
    assert all(float(s["value"][1]) >= 0.9 for s in fired)


def test_checkout_timeouts_make_database_pool_timeouts_true(stack: Stack,
                                                            db_trouble: DbTrouble) -> None:
    quiet = [s for s in db_trouble.quiet["DatabasePoolTimeouts"] if _is_worker_pool(s)]
    assert not quiet, f"true before any trouble: {_series_text(quiet)}"
    fired = _poll_alert(stack.prometheus, "DatabasePoolTimeouts", _is_worker_pool, 30, stack)
    assert all(float(s["value"][1]) > 0 for s in fired)


def test_worker_counted_its_trouble(stack: Stack, db_trouble: DbTrouble) -> None:
    """The worker really ran slow statements and met checkout timeouts: the alerts above saw a
    pool in trouble, not an artefact of the test. Stops the worker."""
    stack.worker.send("calm")
    stack.worker.stop()
    summary = json.loads(stack.worker.process.log().splitlines()[-1])
    assert summary["slow"] > 0 and summary["timeouts"] > 0, summary


# --------------------------------------------------------------------------- redis down
SIDECAR_UP = f'up{{job="{SIDECAR_JOB}"}}'
SERVED_DOWN = f'({ALERT_EXPRS["RedisDown"]}) and on (job, instance) {SIDECAR_UP} == 1'


def _redis_up(prom: PrometheusServer) -> bool:
    return bool(prom.query("redis_up == 1"))


def _assert_down_served_in_time(stack: Stack, what: str) -> None:
    """RedisDown's expression true, from a scrape of the sidecar that succeeded: Prometheus got
    `redis_up 0` within its scrape timeout."""
    prom = stack.prometheus
    try:
        wait_until(lambda: prom.query(SERVED_DOWN), f"RedisDown with {what}", 20)
    except TimeoutError:
        pytest.fail(f"RedisDown not true from a successful scrape with {what}:\n"
                    f"expr: {ALERT_EXPRS['RedisDown']} -> {_series_text(prom.query('redis_up'))}\n"
                    f"up: {_series_text(prom.query(SIDECAR_UP))}\n"
                    f"{stack.diagnostics()}")
    durations = prom.values(f'scrape_duration_seconds{{job="{SIDECAR_JOB}"}}')
    assert durations and max(durations) < SCRAPE_INTERVAL, durations


def test_hung_redis_makes_redis_down_true_within_the_scrape_timeout(stack: Stack) -> None:
    prom = stack.prometheus
    wait_until(lambda: _redis_up(prom), "redis_up 1", 20)
    quiet = prom.query(ALERT_EXPRS["RedisDown"])
    assert not quiet, f"true while Redis is up: {_series_text(quiet)}"
    assert stack.redis.proc is not None
    os.kill(stack.redis.proc.pid, signal.SIGSTOP)
    try:
        _assert_down_served_in_time(stack, "Redis stopped by SIGSTOP")
    finally:
        os.kill(stack.redis.proc.pid, signal.SIGCONT)
    wait_until(lambda: _redis_up(prom), "redis_up 1 once Redis runs again", 20)


def test_stopped_redis_makes_redis_down_true(stack: Stack) -> None:
    prom = stack.prometheus
    wait_until(lambda: _redis_up(prom), "redis_up 1", 20)
    quiet = prom.query(ALERT_EXPRS["RedisDown"])
    assert not quiet, f"true while Redis is up: {_series_text(quiet)}"
    stack.redis.stop()
    try:
        _assert_down_served_in_time(stack, "Redis shut down")
    finally:
        stack.redis.start(stack.redis.port)
    wait_until(lambda: _redis_up(prom), "redis_up 1 once Redis is back", 20)
