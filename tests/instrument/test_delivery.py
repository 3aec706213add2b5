"""The app when its sidecar is away: one line when it goes and one when it is back, slow-query
spans kept and delivered on its return, and an exit that waits at most about a second.

The app and the sidecar are real processes talking OTLP/HTTP over loopback.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.support.e2e_app import ROOT, app_env, fetch, poll
from tests.support.net import free_port, wait_http
from tests.support.sidecar import run_sidecar

pytestmark = pytest.mark.e2e

CUMULATIVE_LINE = re.compile(r"[a-z_]+(_total|_bucket|_sum|_count)\{")
SDK_NOISE = "opentelemetry."  # any record of the SDK's exporters


class AwayApp:
    def __init__(self, endpoint: str) -> None:
        env = app_env(endpoint, "away")
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT")
        env["OTEL_METRIC_EXPORT_INTERVAL"] = "60000"  # exports happen when the test says
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.instrument.away_app", endpoint], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def exit_seconds(self) -> tuple[float, str]:
        """Seconds from the end of its input to its exit, and everything it logged."""
        assert self.proc.stdin
        started = time.monotonic()
        self.proc.stdin.close()
        self.proc.wait(30)
        elapsed = time.monotonic() - started
        assert self.proc.stderr
        return elapsed, self.proc.stderr.read()


@contextmanager
def hung_listener() -> Iterator[int]:
    """A port that accepts connections (in the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


def lines(log: str, needle: str) -> list[str]:
    return [line for line in log.splitlines() if needle in line]


def test_sidecar_away_then_back_two_lines_and_the_slow_queries_delivered() -> None:
    port = free_port()
    app = AwayApp(f"http://127.0.0.1:{port}")
    for _ in range(2):  # two failed rounds: still one line
        assert app.ask("query") == {"queried": 5}
        app.ask("flush")  # the SDK's force_flush says whether it collected, not delivered
    with run_sidecar(["--redis.addr=", f"--otlp.listen-address=127.0.0.1:{port}"],
                     wait=False) as sidecar:
        wait_http(f"http://127.0.0.1:{port}/v1/metrics")
        assert app.ask("flush") == {"flushed": True}

        def delivered() -> int | None:
            listing = json.loads(fetch(f"{sidecar.web_url}/api/slow-queries"))["slow_queries"]
            calls = sum(q["calls"] for q in listing if "away_probe" in q["fingerprint"])
            return calls or None

        assert poll(delivered, "the kept slow-query spans at the sidecar") == 10
        _, log = app.exit_seconds()
    assert len(lines(log, "is unreachable")) == 1, log
    assert len(lines(log, "is reachable again; delivered 10 kept slow-query spans")) == 1, log
    assert not lines(log, SDK_NOISE), log
    assert "(refused, or no answer within 1 s)" in lines(log, "is unreachable")[0]


def test_exit_with_the_sidecar_down_waits_about_a_second() -> None:
    app = AwayApp(f"http://127.0.0.1:{free_port()}")
    app.ask("query")
    elapsed, log = app.exit_seconds()
    assert elapsed < 3.0, f"exit took {elapsed:.1f}s\n{log}"  # the design bound is 1 s
    assert len(lines(log, "is unreachable")) == 1, log


def test_exit_with_the_sidecar_hung_waits_about_a_second() -> None:
    with hung_listener() as port:
        app = AwayApp(f"http://127.0.0.1:{port}")
        app.ask("query")
        elapsed, log = app.exit_seconds()
    assert elapsed < 3.0, f"exit took {elapsed:.1f}s\n{log}"
    assert len(lines(log, "is unreachable")) == 1, log


def test_a_worker_that_exits_cleanly_takes_its_gauges_and_leaves_its_last_counts() -> None:
    """Its last export is followed by one that ends every series it sent: the sidecar drops its
    gauges (pool state, capacity) and its target_info then, not after its 5-minute staleness
    window; its counters and histograms keep their final values until it would have been taken
    for dead, so a scraper sees what it counted last (issue 13: a recycled worker's last
    requests were lost)."""
    port = free_port()
    with run_sidecar(["--redis.addr=", f"--otlp.listen-address=127.0.0.1:{port}"],
                     wait=False) as sidecar:
        wait_http(f"http://127.0.0.1:{port}/v1/metrics")
        app = AwayApp(f"http://127.0.0.1:{port}")
        app.ask("query")
        app.ask("flush")

        def app_series() -> list[str]:
            # The sidecar's own slow-query counter is per service, not per process: it stays.
            text = fetch(f"{sidecar.web_url}/metrics")
            return [line for line in text.splitlines() if 'service_name="away"' in line
                    and not line.startswith("tradesense_slow_queries_total")]

        assert poll(lambda: app_series() or None, "the app's series")
        _, log = app.exit_seconds()
        left = app_series()
        assert [line for line in left if not CUMULATIVE_LINE.match(line)] == [], log
        gauges = ("db_client_connection_count{", "db_client_connection_max{", "target_info{")
        assert not [line for line in left if line.startswith(gauges)], log
        assert any(line.startswith("db_client_operation_duration_seconds_count{")
                   for line in left), left
