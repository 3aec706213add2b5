"""A real Prometheus (Debian's `prometheus` binary) for end-to-end tests, and its HTTP API.

    with run_prometheus(tmp_path, sidecar="127.0.0.1:9121", scrape_interval="1s") as prom:
        prom.query('redis_up == 0')           # instant vector/scalar: list of result dicts
        prom.query_range(expr, start, end, step)
        prom.rule_groups()                    # GET /api/v1/rules

The configuration is deploy/prometheus/prometheus.local.yml (what `make demo` runs) with only the
addresses, the intervals and the rule-file paths changed, so the shipped scrape jobs and rules are
what the test exercises.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from tests.support.net import free_port
from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
LOCAL_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.local.yml"
ALERTS_DIR = REPO / "alerts"
SIDECAR_JOB = "tradesense-exporter"
PROMETHEUS_JOB = "prometheus"
READY_TIMEOUT = 30.0

T = TypeVar("T")


class QueryError(RuntimeError):
    """Prometheus refused a query (HTTP error or `status: error`)."""


def local_config(
    sidecar: str,
    prometheus: str,
    scrape_interval: str = "1s",
    scrape_timeout: str | None = None,
    evaluation_interval: str | None = None,
    source: Path = LOCAL_CONFIG,
) -> dict[str, Any]:
    """`source` with its scrape targets pointed at `sidecar` and `prometheus` (host:port), the
    intervals shortened, and its rule files resolved to absolute paths."""
    config: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8"))
    config["global"].update(
        scrape_interval=scrape_interval,
        scrape_timeout=scrape_timeout or scrape_interval,
        evaluation_interval=evaluation_interval or scrape_interval,
    )
    config["rule_files"] = [
        str((source.parent / pattern).resolve()) for pattern in config.get("rule_files", [])
    ]
    addresses = {SIDECAR_JOB: sidecar, PROMETHEUS_JOB: prometheus}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    missing = set(addresses) - set(jobs)
    if missing:
        raise ValueError(f"{source} has no scrape job {sorted(missing)}")
    for name, address in addresses.items():
        static = jobs[name]["static_configs"]
        if len(static) != 1 or len(static[0]["targets"]) != 1:
            raise ValueError(f"{source}: job {name} should have exactly one static target")
        static[0]["targets"] = [address]
    return config


@dataclass
class PrometheusServer:
    proc: subprocess.Popen[bytes]
    port: int
    config_path: Path
    log_path: Path
    client: httpx.Client

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, path: str, **params: Any) -> Any:
        """`data` of GET /api/v1/<path>; QueryError carrying Prometheus's message otherwise."""
        response = self.client.get(f"/api/v1/{path}", params=params)
        try:
            body = response.json()
        except ValueError:
            raise QueryError(f"HTTP {response.status_code}: {response.text[:200]}") from None
        if response.status_code != 200 or body.get("status") != "success":
            raise QueryError(
                f"HTTP {response.status_code} {body.get('errorType', '')}: {body.get('error')}"
            )
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; a scalar or string result comes back as one unlabelled sample."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}",
                        step=f"{step:g}")
        return list(data["result"])

    def values(self, expr: str) -> list[float]:
        return [float(sample["value"][1]) for sample in self.query(expr)]

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self.api("rules")["groups"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", state="active")["activeTargets"])

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)


def wait_until(condition: Callable[[], T | None], what: str, timeout: float,
               interval: float = 0.25) -> T:
    """The first truthy value of `condition()`, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _ready(server: PrometheusServer) -> bool:
    if server.proc.poll() is not None:
        raise RuntimeError(f"prometheus exited with {server.proc.returncode}:\n{server.logs()}")
    with contextlib.suppress(httpx.HTTPError):
        return server.client.get("/-/ready").status_code == 200
    return False


@contextmanager
def run_prometheus(
    workdir: Path,
    sidecar: str,
    scrape_interval: str = "1s",
    scrape_timeout: str | None = None,
    evaluation_interval: str | None = None,
) -> Iterator[PrometheusServer]:
    """A Prometheus on a free loopback port, scraping `sidecar` (host:port) with the local
    configuration and the repository's rules; its TSDB and log live in `workdir`."""
    binary = require_tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = local_config(sidecar, f"127.0.0.1:{port}", scrape_interval, scrape_timeout,
                          evaluation_interval)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    server = PrometheusServer(proc, port, config_path, log_path, client)
    try:
        wait_until(lambda: _ready(server), "Prometheus to be ready", READY_TIMEOUT, 0.1)
        yield server
    finally:
        server.stop()
        client.close()
