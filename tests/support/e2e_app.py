"""Application processes beside a sidecar process, and reading what the sidecar serves.

    with AppWorker.start(sidecar.otlp_url, "e2e-sqlite", "sqlite", path, "5") as worker:
        report = worker.read()          # the JSON line the worker printed after flushing
        metrics = scrape(sidecar.web_url)
        metrics.value("db_client_connection_max", service_name="e2e-sqlite")
        worker.go_on()                  # a line on its stdin; closing stdin ends it
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from tests.support.net import wait_http

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "e2e" / "app_worker.py"
T = TypeVar("T")


def app_env(otlp_url: str, service_name: str, **extra: str) -> dict[str, str]:
    """The environment of an app process exporting to `otlp_url` every half second."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {
        **env,
        "PYTHONPATH": str(ROOT),
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url,
        "OTEL_SERVICE_NAME": service_name,
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        **extra,
    }


@contextmanager
def serving(argv: Sequence[str], env: dict[str, str], ready_url: str,
            output: IO[bytes] | int = subprocess.DEVNULL) -> Iterator[subprocess.Popen[bytes]]:
    """`python <argv>` from the repository root until it answers `ready_url`; stopped on exit
    (SIGTERM, so that it flushes its telemetry, then SIGKILL after 20 s)."""
    proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=output,
                            stderr=subprocess.STDOUT)
    try:
        wait_http(ready_url, timeout=60)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class AppWorker:
    """tests/e2e/app_worker.py in its own process; its stdout lines are read in a thread."""

    def __init__(self, proc: subprocess.Popen[str], stderr: IO[bytes]) -> None:
        self.proc, self._stderr = proc, stderr
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    @classmethod
    def start(cls, otlp_url: str, service_name: str, *argv: str,
              cwd: Path | None = None) -> AppWorker:
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by __exit__)
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), *argv], env=app_env(otlp_url, service_name),
            cwd=cwd or ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
            text=True,
        )
        return cls(proc, stderr)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def read(self, timeout: float = 30.0) -> dict[str, Any]:
        """The worker's next report; fails with its stderr if it exits or stays silent."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no report within {timeout}s: {self.stderr()}") from None
        if line is None:
            self.proc.wait(10)
            raise AssertionError(f"worker exited {self.proc.returncode}: {self.stderr()}")
        report: dict[str, Any] = json.loads(line)
        return report

    def go_on(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 30.0) -> int:
        """Closes its stdin and waits: the worker exports once more on its way out."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    def __enter__(self) -> AppWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc.poll() is None:
                self.finish(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        finally:
            self._stderr.close()


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Metrics:
    """One scrape of /metrics, parsed by prometheus_client's own text parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [
            Sample(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def find(self, name: str, **labels: str) -> list[Sample]:
        return [s for s in self.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float:
        """The value of the one sample that matches; fails when none or several do."""
        found = self.find(name, **labels)
        assert len(found) == 1, f"{len(found)} samples of {name} {labels}: {found}"
        return found[0].value

    def buckets(self, name: str, **labels: str) -> dict[str, float]:
        return {s.labels["le"]: s.value for s in self.find(f"{name}_bucket", **labels)}


def fetch(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def scrape(web_url: str) -> Metrics:
    return Metrics(fetch(f"{web_url}/metrics"))


def slow_queries(web_url: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(fetch(f"{web_url}/api/slow-queries"))[
        "slow_queries"]
    return entries


def poll(probe: Callable[[], T | None], what: str, timeout: float = 20.0,
         interval: float = 0.1) -> T:
    """The first result of `probe` that is neither None nor False, within `timeout` seconds.
    An AssertionError from `probe` counts as not yet, and is shown if time runs out."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
            if result is not None and result is not False:
                return result
        except AssertionError as error:
            last = error
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last}")
        time.sleep(interval)


def only(items: Sequence[T]) -> T:
    assert len(items) == 1, f"expected exactly one, got {items}"
    return items[0]
