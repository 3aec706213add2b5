"""The app and the sidecar in separate processes, talking real OTLP/HTTP over loopback.

Each app process is tests/e2e/app_worker.py (or the example app): exporter.instrument on a real
engine or redis-py pool, exporting with the OpenTelemetry SDK to a `python -m exporter` process.
What the sidecar serves on /metrics and /api/slow-queries is checked against what the app did.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from exporter.otlp.store import EXPIRY_FLOOR_SECONDS
from tests.e2e.app_worker import LITERAL_CALLS, SECRETS, SLEEP
from tests.support.e2e_app import (
    ROOT,
    AppWorker,
    Metrics,
    app_env,
    fetch,
    only,
    poll,
    scrape,
    slow_queries,
)
from tests.support.net import free_port, wait_http
from tests.support.redis_servers import RedisServer, start_redis
from tests.support.sidecar import SidecarProcess, run_sidecar

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
PG_ASYNC_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
STALENESS = 60.0  # the stale sidecar's otlp.staleness: the bound, far above what its tests wait

DURATION = "db_client_operation_duration_seconds"
COUNT = "db_client_connection_count"
MAX = "db_client_connection_max"
IDLE_MAX = "db_client_connection_idle_max"
PENDING = "db_client_connection_pending_requests"
TIMEOUTS = "db_client_connection_timeouts_total"
WAIT = "db_client_connection_wait_time_seconds"
USE = "db_client_connection_use_time_seconds"
CREATE = "db_client_connection_create_time_seconds"
SLOW_TOTAL = "tradesense_slow_queries_total"
SEMCONV_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, math.inf]


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def sidecar() -> Iterator[SidecarProcess]:
    """Debug logging, so that the log check below sees everything the sidecar would say."""
    with run_sidecar(["--redis.addr=", "--log.level=debug"]) as process:
        yield process


@pytest.fixture(scope="module")
def stale_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    config = tmp_path_factory.mktemp("stale") / "exporter.yml"
    config.write_text(f"otlp:\n  staleness: {STALENESS:g}s\n")
    with run_sidecar(["--redis.addr=", f"--config.file={config}"]) as process:
        yield process


@pytest.fixture(scope="module")
def postgres() -> None:
    if not _reachable(5432):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")


@pytest.fixture(scope="module")
def pg_table(postgres: None) -> Iterator[str]:
    """A table of accounts in a schema of its own on the shared PostgreSQL, dropped after."""
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    connection = psycopg2.connect(PG_DSN)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {schema}")
            cursor.execute(f"CREATE TABLE {schema}.accounts (id serial PRIMARY KEY, email text, "
                           "password text, card_number text, note text)")
        yield f"{schema}.accounts"
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.close()


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("e2e-redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slow_run(sidecar: SidecarProcess, pg_table: str) -> dict[str, Any]:
    """The slow-pg worker's report, once its slow statements have reached the sidecar, and the
    sidecar's /metrics while the worker ran (a worker that exits ends its series)."""
    started = time.time()
    with AppWorker.start(sidecar.otlp_url, "e2e-slow-pg", "slow-pg", PG_URL, pg_table) as worker:
        report = worker.read(timeout=60)
        assert report["flushed"] is True
        poll(lambda: len(_entries(sidecar, pg_table)) >= 2, "the slow statements")
        metrics = scrape(sidecar.web_url)
    return {**report, "started": started, "finished": time.time(), "metrics": metrics}


def _entries(sidecar: SidecarProcess, table: str) -> list[dict[str, Any]]:
    return [e for e in slow_queries(sidecar.web_url) if e["db_collection_name"] == table]


def test_slow_postgres_queries_by_fingerprint(
    sidecar: SidecarProcess, pg_table: str, slow_run: dict[str, Any]
) -> None:
    found = _entries(sidecar, pg_table)
    entries = {e["db_operation_name"]: e for e in found}
    assert len(found) == len(entries) == 2, found
    select, update = entries["SELECT"], entries["UPDATE"]
    assert select["fingerprint"] == (
        f"SELECT a.id FROM {pg_table} a, pg_sleep(?) WHERE a.email = ? AND a.password = ? "
        "AND a.card_number IN (?)"
    )
    assert update["fingerprint"] == (
        f"UPDATE {pg_table} SET note = ? WHERE id IN (SELECT id FROM {pg_table}, pg_sleep(?) "
        "WHERE email = ? AND card_number IN (?))"
    )
    calls = slow_run["calls"]
    selects = [c for c in calls if c["operation"] == "SELECT"]
    [updated] = [c for c in calls if c["operation"] == "UPDATE"]
    assert len(selects) == len(LITERAL_CALLS) == select["calls"]
    assert update["calls"] == 1
    for entry, made in ((select, selects), (update, [updated])):
        assert entry["service_name"] == "e2e-slow-pg", entry
        assert entry["db_system_name"] == "postgresql"
        slack = 0.005 * len(made)
        assert SLEEP * len(made) <= entry["total_seconds"] <= sum(c["seconds"] for c in made)
        assert SLEEP <= entry["max_seconds"] <= max(c["seconds"] for c in made) + slack
        assert entry["mean_seconds"] == pytest.approx(entry["total_seconds"] / len(made))
        assert entry["example_trace_id"] in {c["trace_id"] for c in made}
        seen = datetime.fromisoformat(entry["last_seen"]).timestamp()
        assert slow_run["started"] <= seen <= slow_run["finished"]

    metrics: Metrics = slow_run["metrics"]
    labels = {"db_collection_name": pg_table, "service_name": "e2e-slow-pg"}
    assert metrics.value(SLOW_TOTAL, db_operation_name="SELECT", **labels) == 2
    assert metrics.value(SLOW_TOTAL, db_operation_name="UPDATE", **labels) == 1
    buckets = metrics.buckets(DURATION, db_operation_name="SELECT", db_system_name="postgresql",
                              **labels)
    assert (buckets["0.5"], buckets["+Inf"]) == (0, 2)


def test_slow_queries_filtered_by_service(
    sidecar: SidecarProcess, pg_table: str, slow_run: dict[str, Any]
) -> None:
    url = f"{sidecar.web_url}/api/slow-queries?limit=1000&service="
    mine = json.loads(fetch(url + "e2e-slow-pg"))["slow_queries"]
    assert {e["service_name"] for e in mine} == {"e2e-slow-pg"}
    assert {e["fingerprint"] for e in _entries(sidecar, pg_table)} <= {
        e["fingerprint"] for e in mine}
    others = json.loads(fetch(url + "another-service"))["slow_queries"]
    assert not [e for e in others if e["db_collection_name"] == pg_table]


def test_no_literal_of_a_slow_statement_in_any_sidecar_output(
    sidecar: SidecarProcess, pg_table: str, slow_run: dict[str, Any]
) -> None:
    outputs = {
        "/metrics": fetch(f"{sidecar.web_url}/metrics"),
        "/api/slow-queries": fetch(f"{sidecar.web_url}/api/slow-queries?limit=1000"),
        "/healthz": fetch(f"{sidecar.web_url}/healthz"),
        "/": fetch(f"{sidecar.web_url}/"),
        "log": sidecar.logs(),
    }
    assert pg_table in outputs["/metrics"] and pg_table in outputs["/api/slow-queries"]
    assert "level=debug" in outputs["log"]
    leaks = [(where, secret) for where, text in outputs.items()
             for secret in SECRETS if secret.lower() in text.lower()]
    assert leaks == []


def test_pool_of_two_plus_one_waits_and_times_out(
    sidecar: SidecarProcess, postgres: None
) -> None:
    labels = {"service_name": "e2e-pool", "db_client_connection_pool_name": "127.0.0.1:5432/test",
              "db_system_name": "postgresql"}
    with AppWorker.start(sidecar.otlp_url, "e2e-pool", "pool", PG_URL) as worker:
        held = worker.read(timeout=60)
        assert held["flushed"] is True
        metrics = scrape(sidecar.web_url)
        assert metrics.value(MAX, **labels) == 3
        assert metrics.value(IDLE_MAX, **labels) == 2
        assert _counts(metrics, labels) == (3, 0)
        assert 1 <= metrics.value(PENDING, **labels) <= 2
        timeouts = metrics.value(TIMEOUTS, **labels)
        assert 2 <= held["timeouts_before"] <= timeouts <= held["timeouts_after"]

        worker.go_on()
        released = worker.read()
        assert released["flushed"] is True
        metrics = scrape(sidecar.web_url)
        assert _counts(metrics, labels) == (0, 2)
        assert metrics.value(PENDING, **labels) == 0
        assert metrics.value(TIMEOUTS, **labels) == released["timeouts"]
        # three holders and the one checkout that waited for a holder; timed-out ones never
        # got a connection
        assert metrics.value(f"{WAIT}_count", **labels) == 4
        assert metrics.buckets(WAIT, **labels)["0.05"] <= 3
        assert metrics.value(f"{WAIT}_sum", **labels) >= 0.09
        assert released["waited"] >= 0.09
        assert metrics.value(f"{USE}_count", **labels) == 4
        assert metrics.value(f"{CREATE}_count", **labels) == 3


def _counts(metrics: Metrics, labels: dict[str, str]) -> tuple[float, float]:
    state = "db_client_connection_state"
    return (metrics.value(COUNT, **{state: "used"}, **labels),
            metrics.value(COUNT, **{state: "idle"}, **labels))


def test_sqlite_query_durations(sidecar: SidecarProcess, tmp_path: Path) -> None:
    service = "e2e-sqlite"
    path = tmp_path / "trades.db"
    with AppWorker.start(sidecar.otlp_url, service, "sqlite", str(path), "7") as worker:
        assert worker.read()["flushed"] is True
        metrics = scrape(sidecar.web_url)
    labels = {"service_name": service, "db_system_name": "sqlite"}
    query = {**labels, "db_operation_name": "SELECT", "db_collection_name": "trades"}
    buckets = metrics.buckets(DURATION, **query)
    assert sorted(float(le) for le in buckets) == SEMCONV_BUCKETS
    assert buckets["+Inf"] == metrics.value(f"{DURATION}_count", **query) == 7
    assert list(buckets.values()) == sorted(buckets.values())
    assert 0 < metrics.value(f"{DURATION}_sum", **query) < 7 * 10
    for operation in ("CREATE", "INSERT"):
        assert metrics.value(f"{DURATION}_count", **labels, db_operation_name=operation,
                             db_collection_name="trades") == 1
    pool = {**labels, "db_client_connection_pool_name": str(path)}
    assert _counts(metrics, pool) == (0, 1)


@pytest.mark.parametrize("driver", ["asyncpg", "aiosqlite"])
def test_async_engine(sidecar: SidecarProcess, tmp_path: Path, driver: str,
                      request: pytest.FixtureRequest) -> None:
    if driver == "asyncpg":
        url, table, system = PG_ASYNC_URL, request.getfixturevalue("pg_table"), "postgresql"
    else:
        url, table, system = f"sqlite+aiosqlite:///{tmp_path}/async.db", "trades", "sqlite"
    service = f"e2e-async-{driver}"
    with AppWorker.start(sidecar.otlp_url, service, "async", url, table, "12") as worker:
        assert worker.read()["flushed"] is True
        metrics = scrape(sidecar.web_url)
    labels = {"service_name": service, "db_system_name": system}
    query = {**labels, "db_operation_name": "SELECT", "db_collection_name": table}
    assert metrics.value(f"{DURATION}_count", **query) == 12
    assert sorted(float(le) for le in metrics.buckets(DURATION, **query)) == SEMCONV_BUCKETS
    # 12 concurrent checkouts from a pool of 3 + 2 overflow
    assert metrics.value(MAX, **labels) == 5
    assert metrics.value(IDLE_MAX, **labels) == 3
    assert _counts(metrics, labels) == (0, 3)
    checkouts = 12 + (system == "sqlite")  # the SQLite worker creates its table first
    assert metrics.value(f"{WAIT}_count", **labels) == checkouts
    assert metrics.value(f"{USE}_count", **labels) == checkouts
    assert metrics.value(TIMEOUTS, **labels) == 0


@pytest.mark.parametrize("scenario", ["redis", "redis-async"])
def test_redis_pool(sidecar: SidecarProcess, private_redis: RedisServer, scenario: str) -> None:
    service = f"e2e-{scenario}"
    labels = {"service_name": service, "db_system_name": "redis",
              "db_client_connection_pool_name": f"127.0.0.1:{private_redis.port}/0"}
    with AppWorker.start(sidecar.otlp_url, service, scenario, private_redis.url) as worker:
        held = worker.read()
        assert held["flushed"] is True
        metrics = scrape(sidecar.web_url)
        assert metrics.value(MAX, **labels) == 3
        assert _counts(metrics, labels) == (3, 0)
        assert metrics.value(TIMEOUTS, **labels) == 1
        assert metrics.value(PENDING, **labels) == 0
        # SET, GET and the three held; the PING that timed out got none
        assert metrics.value(f"{WAIT}_count", **labels) == 5

        worker.go_on()
        assert worker.read()["flushed"] is True
        metrics = scrape(sidecar.web_url)
        assert _counts(metrics, labels) == (0, 3)
        assert metrics.value(f"{USE}_count", **labels) == 5
        assert metrics.value(f"{CREATE}_count", **labels) == 3


def _by_instance(metrics: Metrics, service: str) -> dict[str, float]:
    """SELECT counts per producer of `service`."""
    found = metrics.find(f"{DURATION}_count", service_name=service, db_operation_name="SELECT")
    return {s.labels["service_instance_id"]: s.value for s in found}


def _pushes(sidecar: SidecarProcess) -> float:
    return scrape(sidecar.web_url).value("tradesense_exporter_otlp_requests_total",
                                         signal="metrics")


def test_several_producers_keep_their_own_series(
    stale_sidecar: SidecarProcess, tmp_path: Path
) -> None:
    service = "e2e-producers"
    dirs = [tmp_path / "a", tmp_path / "b"]
    for directory in dirs:
        directory.mkdir()
    # Same service, same relative database path, so only the producer tells the series apart.
    with AppWorker.start(stale_sidecar.otlp_url, service, "sqlite", "e2e.db", "3",
                         cwd=dirs[0]) as first, \
         AppWorker.start(stale_sidecar.otlp_url, service, "sqlite", "e2e.db", "7",
                         cwd=dirs[1]) as second:
        assert first.read()["flushed"] is True
        assert second.read()["flushed"] is True
        counts = poll(lambda: _two_producers(stale_sidecar, service), "both producers' series")
        pushes = _pushes(stale_sidecar)
        poll(lambda: _pushes(stale_sidecar) >= pushes + 6, "three more pushes from each")
        metrics = scrape(stale_sidecar.web_url)
        assert _by_instance(metrics, service) == counts
        targets = metrics.find("target_info", service_name=service)
        assert {t.labels["service_instance_id"] for t in targets} == set(counts)
        for instance in counts:
            pool = {"service_name": service, "service_instance_id": instance,
                    "db_client_connection_pool_name": "e2e.db"}
            assert _counts(metrics, pool) == (0, 1)


def _two_producers(sidecar: SidecarProcess, service: str) -> dict[str, float] | None:
    counts = _by_instance(scrape(sidecar.web_url), service)
    return counts if sorted(counts.values()) == [3, 7] else None


def test_series_of_a_producer_that_dies_go_stale(
    stale_sidecar: SidecarProcess, tmp_path: Path
) -> None:
    """Killed, a worker pushing every 0.5 s is gone after a few of its intervals (3 to 4 s,
    the floor being 3 s), long before the sidecar's staleness (60 s); the one beside it stays."""
    service = "e2e-stale"
    expired = "tradesense_exporter_otlp_producers_expired_total"
    with AppWorker.start(stale_sidecar.otlp_url, service, "sqlite", str(tmp_path / "gone.db"),
                         "2") as leaving, \
         AppWorker.start(stale_sidecar.otlp_url, service, "sqlite", str(tmp_path / "stays.db"),
                         "4") as staying:
        assert leaving.read()["flushed"] is True
        assert staying.read()["flushed"] is True
        counts = poll(lambda: _stale_pair(stale_sidecar, service), "both producers' series")
        gone = only([i for i, v in counts.items() if v == 2])
        stays = only([i for i, v in counts.items() if v == 4])
        pushes = _pushes(stale_sidecar)
        poll(lambda: _pushes(stale_sidecar) >= pushes + 6, "three more pushes from each")
        expired_before = scrape(stale_sidecar.web_url).value(expired)

        asked = time.monotonic()
        leaving.proc.kill()  # no last export: its series can only go stale
        leaving.proc.wait(10)
        exited = time.monotonic()

        flaps: list[float] = []  # scrapes without the worker that stays (poll would retry)

        def the_one_that_stays_is_there() -> Metrics:
            metrics = scrape(stale_sidecar.web_url)
            if not (metrics.find("target_info", service_instance_id=stays)
                    and _by_instance(metrics, service).get(stays) == 4):
                flaps.append(time.monotonic() - exited)
            return metrics

        def leaving_is_gone() -> bool:
            metrics = the_one_that_stays_is_there()
            mine = [s for s in metrics.samples if s.labels.get("service_instance_id") == gone]
            return not mine

        poll(leaving_is_gone, "the series of the producer that left to go",
             timeout=STALENESS / 3, interval=0.05)
        vanished = time.monotonic()
        assert flaps == []
        # Never sooner than the floor after its last push, which was at most a few export
        # intervals (0.5 s) before `asked`; and long before the staleness period.
        assert vanished - asked >= EXPIRY_FLOOR_SECONDS - 1.5
        assert vanished - exited < STALENESS / 3
        assert scrape(stale_sidecar.web_url).value(expired) >= expired_before + 1
        until = time.monotonic() + 2 * EXPIRY_FLOOR_SECONDS  # the live one never flaps
        while time.monotonic() < until:
            assert _by_instance(the_one_that_stays_is_there(), service) == {stays: 4}
            time.sleep(0.05)
        assert flaps == []


def _stale_pair(sidecar: SidecarProcess, service: str) -> dict[str, float] | None:
    counts = _by_instance(scrape(sidecar.web_url), service)
    return counts if sorted(counts.values()) == [2, 4] else None


def test_example_app_with_traffic(private_redis: RedisServer, tmp_path: Path) -> None:
    service = "tradesense-demo"
    with run_sidecar([f"--redis.addr={private_redis.url}"]) as sidecar:
        env = app_env(sidecar.otlp_url, service, OTEL_METRIC_EXPORT_INTERVAL="1000",
                      DATABASE_URL=f"sqlite:///{tmp_path}/demo.db",
                      REDIS_URL=f"{private_redis.url}/0")
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        with (tmp_path / "app.log").open("wb") as app_log, \
             (tmp_path / "traffic.log").open("wb") as traffic_log:
            app = subprocess.Popen(
                [sys.executable, "-m", "examples.tradesense_app", "--port", str(port),
                 "--log-level", "warning"],
                cwd=ROOT, env=env, stdout=app_log, stderr=subprocess.STDOUT)
            traffic: subprocess.Popen[bytes] | None = None
            try:
                wait_http(f"{base_url}/healthz", timeout=30)
                traffic = subprocess.Popen(
                    [sys.executable, "-m", "examples.tradesense_app.traffic", "--base-url",
                     base_url, "--duration", "60"],
                    cwd=ROOT, env=env, stdout=traffic_log, stderr=subprocess.STDOUT)
                poll(lambda: _demo_is_visible(sidecar, service), "the demo's metrics",
                     timeout=30, interval=0.5)
            except AssertionError as error:
                raise AssertionError(f"{error}\napp log: {_tail(tmp_path / 'app.log')}") from None
            finally:
                _stop(traffic, app)


def _stop(*procs: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL for a process still draining its slow requests after 20 s."""
    running = [p for p in procs if p is not None and p.poll() is None]
    for proc in running:
        proc.terminate()
    for proc in running:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _demo_is_visible(sidecar: SidecarProcess, service: str) -> bool:
    metrics = scrape(sidecar.web_url)
    app = {"service_name": service}
    sql = {**app, "db_system_name": "sqlite"}
    assert metrics.value("redis_up") == 1
    assert metrics.value(MAX, **sql) == 60, "TradeSense's pool of 20 + 40"
    assert metrics.find(COUNT, **app, db_system_name="redis"), "the redis-py pool"
    assert metrics.value(f"{DURATION}_count", **sql, db_operation_name="SELECT",
                         db_collection_name="trades") > 0
    assert metrics.value(SLOW_TOTAL, db_operation_name="SELECT", db_collection_name="trades") > 0
    entries = slow_queries(sidecar.web_url)
    assert entries and entries[0]["db_system_name"] == "sqlite", entries
    assert entries[0]["calls"] >= 1 and entries[0]["mean_seconds"] >= 0.5
    return True


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]
