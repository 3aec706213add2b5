"""The drop-in claim, live: Debian's Go redis_exporter and the sidecar scrape the same Redis, and
every redis_* family of the Go exporter must be in ours with the same name, type and label names
(save the corrections documented in docs/metrics.md)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port, wait_http
from tests.support.prom_compare import compare_to_reference, quantile_problems
from tests.support.redis_servers import RedisServer
from tests.support.sidecar import run_sidecar
from tests.support.tools import require_tool

pytestmark = pytest.mark.e2e


@contextmanager
def go_exporter(url: str, extra: Sequence[str] = ()) -> Iterator[str]:
    binary = require_tool("prometheus-redis-exporter")
    port = free_port()
    proc = subprocess.Popen([binary, f"--redis.addr={url}",
                             f"--web.listen-address=127.0.0.1:{port}", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics")
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        proc.terminate()
        proc.wait(10)


def both(server: RedisServer, go_flags: Sequence[str] = ()) -> tuple[str, str]:
    with go_exporter(server.url, go_flags) as go_url, \
            run_sidecar([f"--redis.addr={server.url}"]) as sidecar:
        go_text = httpx.get(go_url, timeout=10).text
        ours = httpx.get(f"{sidecar.web_url}/metrics", timeout=10).text
    return go_text, ours


def assert_compatible(go_text: str, ours: str) -> None:
    problems = compare_to_reference(go_text, ours)
    assert not problems, "\n".join(problems)
    assert not quantile_problems(ours)


def test_master(redis_master: RedisServer) -> None:
    assert_compatible(*both(redis_master))


def test_replica(redis_replica: RedisServer) -> None:
    assert_compatible(*both(redis_replica))


def test_cluster_node(redis_cluster: list[RedisServer]) -> None:
    assert_compatible(*both(redis_cluster[0], ["--is-cluster"]))


def test_sentinel(redis_sentinel: RedisServer) -> None:
    assert_compatible(*both(redis_sentinel))


def test_promtool_accepts_our_metrics(redis_master: RedisServer) -> None:
    with run_sidecar([f"--redis.addr={redis_master.url}"]) as sidecar:
        text = httpx.get(f"{sidecar.web_url}/metrics", timeout=10).text
    proc = subprocess.run([require_tool("promtool"), "check", "metrics"], input=text,
                          capture_output=True, text=True, timeout=60)
    output = proc.stdout + proc.stderr
    complaints = [line for line in output.splitlines() if line.strip()]
    allowed = compatibility_names()
    unexpected = [c for c in complaints if c.split()[0] not in allowed]
    assert not unexpected, "\n".join(unexpected)


def compatibility_names() -> str:
    """The "Compatibility names" section of docs/metrics.md: the names kept from redis_exporter
    although promtool's lint rules dislike them."""
    text = Path("docs/metrics.md").read_text()
    start = text.index("Compatibility names")
    end = text.find("\n## ", start)
    return text[start:] if end < 0 else text[start:end]
