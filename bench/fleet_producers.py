"""Many producers, one sidecar, for a long time: 200 app workers pushing every 10 s.

The sidecar runs as it is deployed (`python -m exporter --redis.addr=`, its own process, the
limits of docs/limits.md in place; `--config` adds a config file). The producers are made by the
real OpenTelemetry SDK: each has its own MeterProvider and resource (its own
`service.instance.id`), records what one app worker records between two exports (the 70-point
set of bench/otlp_receiver.py: a pool's `db.client.connection.*` and
`db.client.operation.duration` for 4 operations x 12 tables), and is collected and encoded by the
SDK's OTLP encoder every `--interval` seconds, staggered over the interval, then POSTed over its
own keep-alive connection. `--loaders` processes share the producers.

Every `--scrape-every` seconds a scraper reads `/metrics` as Prometheus does (gzip) and times it;
the sidecar's resident memory (VmRSS) and the series and producer counts are sampled then.
Every push must be answered 200 with no rejected points.

    .venv/bin/python bench/fleet_producers.py --producers 200 --minutes 30 --out /tmp/fleet.json
    .venv/bin/python bench/fleet_producers.py --producers 38 --minutes 10 --limits default
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.otlp_receiver import encoded  # noqa: E402
from tests.support.net import free_port, wait_http, wait_port  # noqa: E402

OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE")
TABLES = 12
SERVICES = 10
# Every worker of a pod pushes from 127.0.0.1 and the SDK keeps its connection open (64 per
# client by default); 200 x 52 series of one histogram (2,000 per metric by default); 42 MB of
# exposition (8 MiB by default).
FLEET_LIMITS = """\
server:
  max_connections_per_client: 256
otlp:
  max_series_per_metric: 16000
  max_exposition_bytes: 67108864
"""


class Producer:
    """One app worker: its own SDK meter provider, collected and encoded on each push."""

    def __init__(self, index: int, seed: int) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.resources import Resource

        self.reader = InMemoryMetricReader()
        resource = Resource.create({"service.name": f"fleet-svc-{index % SERVICES}",
                                    "service.instance.id": f"worker-{index:04d}"})
        self.provider = MeterProvider(metric_readers=[self.reader], resource=resource)
        meter = self.provider.get_meter("exporter.instrument", "0.1.0")
        self.rng = random.Random(seed)
        buckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]
        self.duration = meter.create_histogram(
            "db.client.operation.duration", unit="s", explicit_bucket_boundaries_advisory=buckets)
        self.pool = {"db.client.connection.pool.name": "main", "db.system.name": "postgresql"}
        self.count = meter.create_up_down_counter("db.client.connection.count",
                                                  unit="{connection}")
        self.count.add(15, {**self.pool, "db.client.connection.state": "idle"})
        self.count.add(5, {**self.pool, "db.client.connection.state": "used"})
        for name, value in (("max", 60), ("idle.max", 20), ("idle.min", 0),
                            ("pending_requests", 0)):
            meter.create_up_down_counter(f"db.client.connection.{name}").add(value, self.pool)
        self.timeouts = meter.create_counter("db.client.connection.timeouts", unit="{timeout}")
        self.pool_times = [meter.create_histogram(f"db.client.connection.{name}", unit="s")
                           for name in ("create_time", "wait_time", "use_time")]
        self.timeouts.add(0, self.pool)

    def work(self) -> None:
        """What a worker records between two exports."""
        for op in OPERATIONS:
            for table in range(TABLES):
                attrs = {"db.system.name": "postgresql", "db.operation.name": op,
                         "db.collection.name": f"table_{table}"}
                for _ in range(3):
                    self.duration.record(self.rng.expovariate(200), attrs)
                if table % 4 == 0:
                    self.duration.record(0.2, {**attrs, "error.type": "OperationalError"})
        for h in self.pool_times:
            h.record(self.rng.expovariate(100), self.pool)

    def payload(self) -> tuple[bytes, int]:
        return encoded(self.reader.get_metrics_data())


def loader(port: int, indexes: list[int], total: int, interval: float, until: float,
           out: Any) -> None:
    producers = [(i, Producer(i, i)) for i in indexes]
    conns: dict[int, http.client.HTTPConnection] = {}
    pushes = failures = partial = points = 0
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    start = time.time()
    round_ = 0
    while True:
        for i, producer in producers:
            due = start + round_ * interval + i * interval / total
            if due >= until:
                out.put({"pushes": pushes, "failures": failures, "partial": partial,
                         "points": points, "latencies": latencies, "statuses": statuses})
                return
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            producer.work()
            body, n = producer.payload()
            began = time.perf_counter()
            status, text = post(conns, i, port, body)
            latencies.append(time.perf_counter() - began)
            pushes += 1
            points += n
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status != 200:
                failures += 1
            elif text:
                partial += 1
        round_ += 1


def post(conns: dict[int, http.client.HTTPConnection], i: int, port: int,
         body: bytes) -> tuple[int, bytes]:
    """One push on producer i's keep-alive connection (reopened when the sidecar closed it)."""
    for attempt in (0, 1):
        conn = conns.get(i) or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conns[i] = conn
        try:
            conn.request("POST", "/v1/metrics", body,
                         {"Content-Type": "application/x-protobuf"})
            response = conn.getresponse()
            data = response.read()
            # an ExportMetricsServiceResponse with a partial_success has bytes; an empty one none
            return response.status, data
        except (ConnectionError, http.client.HTTPException, OSError):
            conn.close()
            conns.pop(i, None)
            if attempt:
                return 0, b""
    return 0, b""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> tuple[float, int, dict[str, float]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    began = time.perf_counter()
    conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
    response = conn.getresponse()
    raw = response.read()
    seconds = time.perf_counter() - began
    conn.close()
    text = gzip.decompress(raw) if response.getheader("Content-Encoding") == "gzip" else raw
    wanted = {}
    for line in text.decode().splitlines():
        if line.startswith("tradesense_exporter_otlp_data_points_dropped_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            wanted[f"dropped_{reason}"] = float(line.split()[-1])
        for name in ("tradesense_exporter_otlp_series ", "tradesense_exporter_otlp_producers ",
                     "tradesense_exporter_otlp_data_points_accepted_total "):
            if line.startswith(name):
                wanted[name.strip()] = float(line.split()[-1])
    return seconds, len(raw), wanted


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--producers", type=int, default=200)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--loaders", type=int, default=2)
    parser.add_argument("--scrape-every", type=float, default=15.0)
    parser.add_argument("--limits", choices=("fleet", "default"), default="fleet",
                        help="fleet: raise the three limits 200 producers of 71 series pass "
                             "(FLEET_LIMITS); default: the sidecar's defaults")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--memwatch", metavar="JSONL",
                        help="run the sidecar under bench/memwatch.py, writing its memory "
                             "breakdown here every 30 s")
    parser.add_argument("--memwatch-every", type=float, default=30.0, metavar="S")
    parser.add_argument("--tracemalloc", metavar="DIR",
                        help="with --memwatch: trace Python allocations, a snapshot per sample")
    args = parser.parse_args()

    web, otlp = free_port(), free_port()
    log = tempfile.NamedTemporaryFile(prefix="fleet-sidecar-", suffix=".log", delete=False)  # noqa: SIM115
    config = Path(log.name).with_suffix(".yml")
    config.write_text(FLEET_LIMITS)
    if args.memwatch:
        launcher = [sys.executable, "bench/memwatch.py", args.memwatch,
                    f"--every={args.memwatch_every}",
                    *(["--tracemalloc", args.tracemalloc] if args.tracemalloc else []), "--"]
    else:
        launcher = [sys.executable, "-m", "exporter"]
    sidecar = subprocess.Popen(
        [*launcher, "--redis.addr=", f"--web.listen-address=127.0.0.1:{web}",
         f"--otlp.listen-address=127.0.0.1:{otlp}",
         *([f"--config.file={config}"] if args.limits == "fleet" else [])],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    timeline: list[dict[str, float]] = []
    try:
        wait_http(f"http://127.0.0.1:{otlp}/v1/metrics")
        wait_port("127.0.0.1", web)
        started = time.time()
        until = started + args.minutes * 60
        queue: Any = multiprocessing.Queue()
        shares = [list(range(k, args.producers, args.loaders)) for k in range(args.loaders)]
        procs = [multiprocessing.Process(target=loader, args=(otlp, share, args.producers,
                                                              args.interval, until, queue))
                 for share in shares]
        for p in procs:
            p.start()
        cpu0 = cpu_seconds(sidecar.pid)
        next_scrape = time.time() + args.scrape_every
        while time.time() < until:
            time.sleep(max(0.0, next_scrape - time.time()))
            next_scrape += args.scrape_every
            seconds, size, values = scrape(web)
            timeline.append({"t": round(time.time() - started, 1), "scrape_s": round(seconds, 4),
                             "gzip_bytes": size, "rss_kib": rss_kib(sidecar.pid),
                             "cpu_s": round(cpu_seconds(sidecar.pid) - cpu0, 2), **values})
            print(json.dumps(timeline[-1]), flush=True)
        results = [queue.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
    finally:
        sidecar.terminate()
        sidecar.wait(20)
    latencies = [x for r in results for x in r["latencies"]]
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    warm = [t for t in timeline if t["t"] >= 120] or timeline
    scrapes = [t["scrape_s"] for t in timeline]
    summary = {
        "command": " ".join([".venv/bin/python bench/fleet_producers.py", *sys.argv[1:]]),
        "producers": args.producers, "interval_s": args.interval,
        "minutes": round((timeline[-1]["t"] if timeline else 0) / 60, 1),
        "pushes": sum(r["pushes"] for r in results),
        "push_failures": sum(r["failures"] for r in results),
        "pushes_with_partial_success": sum(r["partial"] for r in results),
        "points_sent": sum(r["points"] for r in results),
        "statuses": statuses,
        "push_latency_ms_p50": round(pct(latencies, 0.5) * 1000, 2),
        "push_latency_ms_p99": round(pct(latencies, 0.99) * 1000, 2),
        "push_latency_ms_max": round(max(latencies, default=0) * 1000, 2),
        "series_first_last_min_max": [timeline[0].get("tradesense_exporter_otlp_series"),
                                      timeline[-1].get("tradesense_exporter_otlp_series"),
                                      min(t.get("tradesense_exporter_otlp_series", 0)
                                          for t in warm),
                                      max(t.get("tradesense_exporter_otlp_series", 0)
                                          for t in warm)],
        "producers_last": timeline[-1].get("tradesense_exporter_otlp_producers"),
        "points_accepted_last": timeline[-1].get(
            "tradesense_exporter_otlp_data_points_accepted_total"),
        "rss_mib_first_at2min_last_max": [round(timeline[0]["rss_kib"] / 1024, 1),
                                          round(warm[0]["rss_kib"] / 1024, 1),
                                          round(timeline[-1]["rss_kib"] / 1024, 1),
                                          round(max(t["rss_kib"] for t in timeline) / 1024, 1)],
        "rss_growth_after_2min_pct": round(100 * (timeline[-1]["rss_kib"] / warm[0]["rss_kib"]
                                                  - 1), 2),
        "metrics_scrape_s_p50_p99_max": [round(pct(scrapes, 0.5), 3), round(pct(scrapes, 0.99), 3),
                                         round(max(scrapes), 3)],
        "metrics_gzip_bytes_last": timeline[-1]["gzip_bytes"],
        "sidecar_cpu_s_per_minute": round(timeline[-1]["cpu_s"] / (timeline[-1]["t"] / 60), 2),
        "load_average_after": os.getloadavg(),
        "sidecar_log": log.name,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "timeline": timeline},
                                             indent=1))


if __name__ == "__main__":
    main()
