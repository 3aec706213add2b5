"""Scrape benchmark: the sidecar against the Go redis_exporter, in one run, on the same Redis.

Starts a private redis-server with the reference workload, the sidecar and Debian's
prometheus-redis-exporter, then for each in turn (interleaved in rounds, so that machine noise
falls on both): the median and p99 time of a /metrics scrape, CPU seconds per 1,000 scrapes, and
resident memory at start, after 1,000 and after all scrapes.

    .venv/bin/python bench/redis_scrape.py --scrapes 10000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.net import free_port, wait_http  # noqa: E402
from tests.support.redis_servers import run_master_workload, start_master  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


@dataclass
class Subject:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    times: list[float] = field(default_factory=list)
    cpu: float = 0.0
    rss: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def scrape(self) -> float:
        started = time.perf_counter()
        self.conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        resp = self.conn.getresponse()
        resp.read()
        elapsed = time.perf_counter() - started
        if resp.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {resp.status}")
        return elapsed

    def run(self, n: int) -> None:
        before = cpu_seconds(self.proc.pid)
        self.times.extend(self.scrape() for _ in range(n))
        self.cpu += cpu_seconds(self.proc.pid) - before


def start_sidecar(redis_url: str, workdir: Path, source: Path | None = None) -> Subject:
    port, otlp = free_port(), free_port()
    # Scrapes here come back to back; redis.min_round_trip_interval (200 ms) would make most of
    # them share a round trip. Each scrape gets its own, as a Prometheus scrape every few seconds
    # does.
    config = workdir / "sidecar.yml"
    config.write_text("redis:\n  min_round_trip_interval: 1ms\n")
    command = [str(ROOT / ".venv/bin/tradesense-exporter")]
    env = dict(os.environ)
    if source is not None:  # another checkout's code, in this venv
        command = [sys.executable, "-m", "exporter"]
        env["PYTHONPATH"] = str(source)
    proc = subprocess.Popen(
        [*command, f"--redis.addr={redis_url}",
         f"--web.listen-address=127.0.0.1:{port}", f"--otlp.listen-address=127.0.0.1:{otlp}",
         f"--config.file={config}", "--log.level=warn"], stdout=subprocess.DEVNULL, env=env,
        cwd=source or ROOT)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return Subject("tradesense-exporter", proc, port)


def start_go(redis_url: str) -> Subject:
    binary = shutil.which("prometheus-redis-exporter")
    if binary is None:
        raise SystemExit("prometheus-redis-exporter is missing: apt-get install "
                         "prometheus-redis-exporter")
    port = free_port()
    proc = subprocess.Popen([binary, f"--redis.addr={redis_url}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/metrics")
    return Subject("redis_exporter (Go)", proc, port)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scrapes", type=int, default=10000)
    parser.add_argument("--round", type=int, default=500, help="scrapes per turn")
    parser.add_argument("--source", type=Path, default=None,
                        help="run the sidecar from this checkout (to compare two commits)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis = start_master(Path(tmp) / "master")
        run_master_workload(redis)
        subjects = [start_sidecar(redis.url, Path(tmp), args.source), start_go(redis.url)]
        try:
            for s in subjects:
                s.scrape()
                s.rss["start"] = rss_bytes(s.proc.pid)
            done = 0
            while done < args.scrapes:
                n = min(args.round, args.scrapes - done)
                for s in subjects:
                    s.run(n)
                    if done + n >= 1000 and "after_1000" not in s.rss:
                        s.rss["after_1000"] = rss_bytes(s.proc.pid)
                done += n
            for s in subjects:
                s.rss["end"] = rss_bytes(s.proc.pid)
            report(subjects, args.scrapes)
        finally:
            for s in subjects:
                s.proc.terminate()
                s.proc.wait(10)
            redis.stop()


class Row(TypedDict):
    median_ms: float
    p99_ms: float
    cpu_s_per_1000: float
    rss_mb: dict[str, float]


def report(subjects: list[Subject], scrapes: int) -> None:
    rows: dict[str, Row] = {}
    for s in subjects:
        rows[s.name] = {
            "median_ms": round(statistics.median(s.times) * 1000, 3),
            "p99_ms": round(percentile(s.times, 0.99) * 1000, 3),
            "cpu_s_per_1000": round(s.cpu / len(s.times) * 1000, 3),
            "rss_mb": {k: round(v / 2**20, 1) for k, v in s.rss.items()},
        }
    ours, go = rows[subjects[0].name], rows[subjects[1].name]
    ratio = {
        "median": round(ours["median_ms"] / go["median_ms"], 2),
        "p99": round(ours["p99_ms"] / go["p99_ms"], 2),
        "cpu": round(ours["cpu_s_per_1000"] / go["cpu_s_per_1000"], 2),
    }
    print(json.dumps({"scrapes_each": scrapes, **rows, "ratio_ours_over_go": ratio}, indent=2))


if __name__ == "__main__":
    main()
