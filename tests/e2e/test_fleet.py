"""The deployment topology at scale, on one machine (docs/deployment.md).

Three app "pods", each a sidecar (`--redis.addr=`) beside a gunicorn app with three sync workers
(tests/e2e/fleet_app.py): pod-a recycles its workers (`--max-requests`), pod-b preloads the app
in the master (`--preload`, each worker instruments itself in `post_fork`), pod-c's sidecar is
misconfigured to scrape Redis too. One central scraper reads the Redis through `/scrape`. A real
Prometheus scrapes them all with the relabelling of the PodMonitor and the ServiceMonitor of
deploy/kubernetes (their Kubernetes labels given as static target labels).

What must hold: the request and query counts summed over pods and workers equal what the load
generator sent, also after a worker is killed and after workers are recycled, with no counter
reset; the pool capacity is that of the live workers; Redis is served once, and its hit ratio
equals the one computed from INFO.
"""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.manifests import KUBE
from tests.e2e.fleet_app import MAX_OVERFLOW, POOL_SIZE
from tests.support.e2e_app import app_env, poll, serving
from tests.support.net import free_port
from tests.support.prometheus import PrometheusServer, _ready, wait_until
from tests.support.redis_servers import RedisServer, start_redis
from tests.support.sidecar import SidecarProcess, run_sidecar
from tests.support.tools import require_tool

pytestmark = pytest.mark.timeout(300)

SERVICE = "fleet-api"
NAMESPACE = "tradesense"
WORKERS = 3
CAPACITY = POOL_SIZE + MAX_OVERFLOW
MAX_REQUESTS = 15
PER_POD = 60  # requests per pod and phase
WINDOW = "[10m]"
REQUESTS = 'http_server_request_duration_seconds_count{http_route="/quote/<int:n>"}'


def on_pod(selector: str, name: str) -> str:
    return selector.replace("}", f',pod="{name}"}}')
QUERIES = 'db_client_operation_duration_seconds_count{db_system_name="sqlite"}'


@dataclass
class Pod:
    name: str
    sidecar: SidecarProcess
    app: subprocess.Popen[bytes]
    base: str

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.app.pid}/task/{self.app.pid}/children").read_text()
        return [int(pid) for pid in children.split()]


def relabel(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Operator's relabelings in Prometheus's own spelling."""
    keys = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return [{keys.get(k, k): v for k, v in rule.items()} for rule in rules]


def load(path: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((KUBE / "base" / "monitoring" / path).read_text())
    return doc


def scrape_configs(pods: list[Pod], scraper: SidecarProcess, redis_url: str) -> list[Any]:
    """Prometheus jobs as the Operator makes them from the PodMonitor and the ServiceMonitor:
    its own target labels (namespace, pod, container, endpoint, a job) set before their
    relabelings, which then run as written in deploy/kubernetes."""
    monitor = load("podmonitor.yaml")["spec"]["podMetricsEndpoints"][0]
    jobs: list[Any] = [{
        "job_name": "podMonitor/tradesense/tradesense-exporter/0",
        "metrics_path": monitor["path"],
        "static_configs": [{"targets": [f"127.0.0.1:{pod.sidecar.web_port}"], "labels": {
            "__meta_kubernetes_pod_name": pod.name, "__meta_kubernetes_namespace": NAMESPACE,
            "namespace": NAMESPACE, "pod": pod.name, "container": "tradesense-exporter",
            "endpoint": "metrics", "job": f"{NAMESPACE}/tradesense-exporter"}} for pod in pods],
        "relabel_configs": relabel(monitor["relabelings"]),
        "metric_relabel_configs": relabel(monitor["metricRelabelings"]),
    }]
    scraper_pod = "tradesense-redis-scraper-7d9f-x2x"
    labels = {"__meta_kubernetes_pod_name": scraper_pod, "namespace": NAMESPACE,
              "pod": scraper_pod, "container": "tradesense-exporter", "endpoint": "metrics",
              "service": "tradesense-redis-scraper", "job": "tradesense-redis-scraper"}
    endpoints = load("servicemonitor-redis.yaml")["spec"]["endpoints"]
    own = next(e for e in endpoints if e["path"] == "/metrics")
    redis_endpoint = next(e for e in endpoints if e["path"] == "/scrape")
    for n, (endpoint, params) in enumerate([(own, {}), (redis_endpoint, {"target": [redis_url]})]):
        jobs.append({
            "job_name": f"serviceMonitor/tradesense/tradesense-redis-scraper/{n}",
            "metrics_path": endpoint["path"], "params": params,
            "static_configs": [{"targets": [f"127.0.0.1:{scraper.web_port}"],
                                "labels": labels}],
            "relabel_configs": relabel(endpoint["relabelings"]),
        })
    return jobs


@contextmanager
def prometheus(workdir: Path, jobs: list[Any]) -> Iterator[PrometheusServer]:
    binary = require_tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                         "evaluation_interval": "1s"}, "scrape_configs": jobs}
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    server = PrometheusServer(proc, port, config_path, log_path, client)
    try:
        wait_until(lambda: _ready(server), "Prometheus to be ready", 30, 0.1)
        # its first scrapes come a few seconds after it is ready (targets are handed over
        # every 5 s): a worker recycled before them would never be seen
        targets = sum(len(c["targets"]) for job in jobs for c in job["static_configs"])
        wait_until(lambda: server.values("count(up == 1)") == [float(targets)],
                   "every target scraped", 30, 0.2)
        yield server
    finally:
        server.stop()
        client.close()


@contextmanager
def pod(stack: ExitStack, tmp: Path, name: str, redis: RedisServer,
        gunicorn_args: list[str], sidecar_args: list[str]) -> Iterator[Pod]:
    sidecar = stack.enter_context(run_sidecar(["--redis.addr=", *sidecar_args]))
    port = free_port()
    env = app_env(sidecar.otlp_url, SERVICE, FLEET_REDIS_URL=f"{redis.url}/0",
                  FLEET_DATABASE=str(tmp / f"{name}.db"),
                  OTEL_RESOURCE_ATTRIBUTES=f"k8s.pod.name={name}")
    argv = ["-m", "gunicorn", "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}",
            "--log-level", "warning", *gunicorn_args]
    base = f"http://127.0.0.1:{port}"
    app = stack.enter_context(serving(argv, env, f"{base}/healthz"))
    yield Pod(name, sidecar, app, base)


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as response:
        return int(response.status)


def send(pods: list[Pod], start: int) -> int:
    """PER_POD requests to each pod, four at a time per pod; all must be answered 200."""
    urls = [f"{p.base}/quote/{start + i}" for i in range(PER_POD) for p in pods]
    with ThreadPoolExecutor(max_workers=4 * len(pods)) as executor:
        statuses = list(executor.map(get, urls))
    assert statuses == [200] * len(urls)
    return len(urls)


def by_pod(prom: PrometheusServer, expr: str) -> dict[str, float]:
    return {s["metric"].get("pod", ""): float(s["value"][1]) for s in prom.query(expr)}


def total(prom: PrometheusServer, metric: str) -> float:
    """Every worker's series summed over pods: each series' last value is what that worker
    counted in its life (a worker's counts start at 0 and only grow)."""
    values = prom.values(f'sum(max_over_time({metric}{WINDOW}))')
    return values[0] if values else 0.0


def settle(prom: PrometheusServer, metric: str, expected: float, what: str) -> None:
    """Waits until Prometheus holds `expected`, then checks it stays exact (never more)."""
    try:
        poll(lambda: total(prom, metric) >= expected, what, timeout=40, interval=0.5)
    except AssertionError:
        pods = by_pod(prom, f"sum by (pod) (max_over_time({metric}{WINDOW}))")
        workers = prom.query(f"max_over_time({metric}{WINDOW})")
        detail = sorted((w["metric"].get("pod"), w["metric"].get("service_instance_id", "")[:8],
                         w["value"][1]) for w in workers)
        raise AssertionError(f"{what}: {total(prom, metric)} of {expected}, by pod {pods}, "
                             f"by worker {detail}") from None
    assert total(prom, metric) == expected, what


def capacity(prom: PrometheusServer) -> dict[str, float]:
    return by_pod(prom, 'sum by (pod) (db_client_connection_max{db_system_name="sqlite"})')


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[list[Pod], RedisServer, PrometheusServer]]:
    with ExitStack() as stack:
        redis = start_redis(tmp_path / "redis")
        stack.callback(redis.stop)
        config = tmp_path / "scraper.yml"
        config.write_text(yaml.safe_dump({"scrape_targets": [{"address": redis.url}]}))
        scraper = stack.enter_context(run_sidecar(["--redis.addr=", f"--config.file={config}"]))
        app = "tests.e2e.fleet_app:create()"
        pods = [
            stack.enter_context(pod(stack, tmp_path, "pod-a", redis,
                                    ["--max-requests", str(MAX_REQUESTS), app], [])),
            stack.enter_context(pod(stack, tmp_path, "pod-b", redis,
                                    ["--preload", "-c", "python:tests.e2e.fleet_app",
                                     "tests.e2e.fleet_app:create(False)"], [])),
            # misconfigured: this sidecar scrapes Redis too; the PodMonitor drops its redis_*
            stack.enter_context(pod(stack, tmp_path, "pod-c", redis, [app],
                                    [f"--redis.addr={redis.url}"])),
        ]
        prom = stack.enter_context(prometheus(tmp_path / "prometheus",
                                              scrape_configs(pods, scraper, redis.url)))
        yield pods, redis, prom


def test_totals_capacity_and_redis_hold_across_pods_workers_kills_and_recycling(
        fleet: tuple[list[Pod], RedisServer, PrometheusServer]) -> None:
    pods, redis, prom = fleet
    sent = send(pods, 0)
    settle(prom, REQUESTS, sent, "the first phase's requests")
    settle(prom, QUERIES, sent, "the first phase's queries")

    pod_c = pods[2]
    victim = pod_c.workers()[0]
    os.kill(victim, signal.SIGKILL)
    poll(lambda: len(pod_c.workers()) == WORKERS and victim not in pod_c.workers(),
         "gunicorn to replace the killed worker", timeout=30)

    sent += send(pods, 1000)
    sent += send(pods, 2000)
    settle(prom, REQUESTS, sent, "every request, after a kill and recycling")
    settle(prom, QUERIES, sent, "every query, after a kill and recycling")
    per_pod = by_pod(prom, f"sum by (pod) (max_over_time({REQUESTS}{WINDOW}))")
    assert per_pod == {p.name: 3 * PER_POD for p in pods}
    assert prom.values(f"sum(resets({REQUESTS}{WINDOW}))") == [0.0]
    recycled = prom.values(f"count(count by (service_instance_id) "
                           f"(count_over_time({on_pod(REQUESTS, 'pod-a')}{WINDOW})))")
    assert recycled[0] >= WORKERS + 2, "pod-a should have recycled workers"

    # capacity: the live workers' pools only, the killed and recycled ones' gone
    poll(lambda: capacity(prom) == {p.name: WORKERS * CAPACITY for p in pods},
         "each pod's pool capacity to be its live workers'", timeout=40, interval=0.5)

    # Redis once, by the central scraper, identified by its address; its hit ratio is INFO's
    assert prom.values("count(redis_up)") == [1.0]
    info = redis.info("stats")
    hits, misses = float(info["keyspace_hits"]), float(info["keyspace_misses"])
    poll(lambda: prom.values("redis_keyspace_hits_total") == [hits],
         "the central scraper's latest Redis counters", timeout=20, interval=0.5)
    series = prom.query("redis_keyspace_hits_total")[0]["metric"]
    assert series["instance"] == redis.url and "pod" not in series
    ratio = prom.values("sum(redis_keyspace_hits_total) / (sum(redis_keyspace_hits_total)"
                        " + sum(redis_keyspace_misses_total))")
    assert ratio == [pytest.approx(hits / (hits + misses), rel=1e-12)]
    assert hits + misses == sent  # one GET per request

    app_series = prom.query(on_pod(REQUESTS, "pod-b"))[0]["metric"]
    assert app_series["instance"] == "pod-b" and app_series["job"] == "tradesense-exporter"
    assert app_series["namespace"] == NAMESPACE
