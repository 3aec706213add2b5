"""Several worker processes of one app against one sidecar: every request counted exactly once.

uvicorn's and gunicorn's own worker models, each worker a producer with its own
`service_instance_id`; the sum over them in what the sidecar serves must equal what the client
sent, no more (nothing counted twice) and no less.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from tests.support.e2e_app import Metrics, app_env, poll, scrape, serving
from tests.support.net import free_port
from tests.support.sidecar import SidecarProcess, run_sidecar

COUNT = "http_server_request_duration_seconds_count"
REQUESTS = 120
WORKERS = 3


@pytest.fixture(scope="module")
def sidecar() -> Iterator[SidecarProcess]:
    with run_sidecar(["--redis.addr="]) as process:
        yield process


@contextmanager
def serve(command: Sequence[str], otlp_url: str, service: str, port: int) -> Iterator[str]:
    base = f"http://127.0.0.1:{port}"
    with serving(["-m", *command], app_env(otlp_url, service), f"{base}/trades/0"):
        yield base


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as response:
        return int(response.status)


def send(base: str) -> None:
    with ThreadPoolExecutor(max_workers=WORKERS * 2) as pool:
        statuses = list(pool.map(get, [f"{base}/trades/{n}" for n in range(REQUESTS)]))
    assert statuses == [200] * REQUESTS


def counted(metrics: Metrics, service: str, route: str) -> tuple[float, int]:
    samples = metrics.find(COUNT, service_name=service, http_route=route)
    return sum(s.value for s in samples), len({s.labels["service_instance_id"] for s in samples})


def check(sidecar: SidecarProcess, base: str, service: str, route: str) -> None:
    warmup = poll(lambda: counted(scrape(sidecar.web_url), service, route)[0] or None,
                  "the warm-up request", timeout=30)
    send(base)
    expected = warmup + REQUESTS

    def settled() -> tuple[float, int] | None:
        total, instances = counted(scrape(sidecar.web_url), service, route)
        return (total, instances) if total >= expected else None

    total, instances = poll(settled, f"{expected} requests counted", timeout=30)
    assert total == expected
    assert instances >= 2, "the requests should have been spread over the workers"


def test_uvicorn_workers(sidecar: SidecarProcess) -> None:
    port = free_port()
    command = ["uvicorn", "--factory", "tests.e2e.http_apps:starlette_app", "--port", str(port),
               "--workers", str(WORKERS), "--log-level", "warning"]
    with serve(command, sidecar.otlp_url, "workers-uvicorn", port) as base:
        check(sidecar, base, "workers-uvicorn", "/trades/{trade_id:int}")


def test_gunicorn_sync_workers_flask(sidecar: SidecarProcess) -> None:
    port = free_port()
    command = ["gunicorn", "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}",
               "--log-level", "warning", "tests.e2e.http_apps:flask_app()"]
    with serve(command, sidecar.otlp_url, "workers-gunicorn", port) as base:
        check(sidecar, base, "workers-gunicorn", "/trades/<int:trade_id>")
