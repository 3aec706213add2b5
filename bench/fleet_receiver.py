"""The receiver's throughput on one core for small pushes (70 points) and large ones (400), as a
sidecar with many workers receives them.

The server and the load loop are bench/otlp_receiver.py's (the receiver under uvicorn with the
sidecar's settings, pinned to CPU 0; senders pinned to CPU 1 over keep-alive connections). The
payloads are made by the real OpenTelemetry SDK and encoded by its OTLP encoder: one worker's
export of a pool's `db.client.connection.*` set and `db.client.operation.duration` for 4
operations x N tables (a quarter of them with an `error.type` cell too), N = 12 for 70 points and
N = 78 for 400. Each request comes from its own producer (`service.instance.id` rotated over
`--producers`, at most as many as the default 2,000 series per metric hold: 20 and 5), so the
receiver holds that many producers' series, as a sidecar beside that many workers does. A
response with a partial_success (points dropped) counts as an error.

    .venv/bin/python bench/fleet_receiver.py --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from otlp_receiver import CLIENT_CPU, HEADERS, Run, encoded, stats, summary  # noqa: E402

from tests.support.net import free_port, wait_port  # noqa: E402

OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE")


def payload(tables: int, producer: int) -> tuple[bytes, int]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create(
        {"service.name": "tradesense-api", "service.instance.id": f"worker-{producer}"}))
    meter = provider.get_meter("exporter.instrument", "0.1.0")
    duration = meter.create_histogram(
        "db.client.operation.duration", unit="s",
        explicit_bucket_boundaries_advisory=[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10])
    rng = random.Random(producer)
    for op in OPERATIONS:
        for table in range(tables):
            attrs = {"db.system.name": "postgresql", "db.operation.name": op,
                     "db.collection.name": f"table_{table}"}
            for _ in range(5):
                duration.record(rng.expovariate(200), attrs)
            if table % 4 == 0:
                duration.record(0.2, {**attrs, "error.type": "OperationalError"})
    pool = {"db.client.connection.pool.name": "main", "db.system.name": "postgresql"}
    count = meter.create_up_down_counter("db.client.connection.count")
    count.add(15, {**pool, "db.client.connection.state": "idle"})
    count.add(5, {**pool, "db.client.connection.state": "used"})
    for name, value in (("max", 60), ("idle.max", 20), ("idle.min", 0), ("pending_requests", 1)):
        meter.create_up_down_counter(f"db.client.connection.{name}").add(value, pool)
    meter.create_counter("db.client.connection.timeouts").add(2, pool)
    for name in ("create_time", "wait_time", "use_time"):
        meter.create_histogram(f"db.client.connection.{name}", unit="s").record(0.01, pool)
    return encoded(reader.get_metrics_data())


def sender(port: int, bodies: list[bytes], deadline: float, out: list[float],
           errors: list[int]) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port)
    i = random.randrange(len(bodies))
    while time.perf_counter() < deadline:
        began = time.perf_counter()
        conn.request("POST", "/v1/metrics", bodies[i % len(bodies)], HEADERS)
        response = conn.getresponse()
        body = response.read()
        out.append(time.perf_counter() - began)
        if response.status != 200 or body:  # a partial_success says points were dropped
            errors.append(response.status)
        i += 1
    conn.close()


def load(port: int, bodies: list[bytes], seconds: float, connections: int) -> Run:
    deadline = time.perf_counter() + seconds
    parts: list[list[float]] = [[] for _ in range(connections)]
    errors: list[int] = []
    threads = [threading.Thread(target=sender, args=(port, bodies, deadline, parts[i], errors))
               for i in range(connections)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    merged = [x for part in parts for x in part]
    return Run(len(merged), time.perf_counter() - start, merged, len(errors))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--producers", type=int, default=20)
    args = parser.parse_args()
    os.sched_setaffinity(0, {CLIENT_CPU})
    results: dict[str, object] = {}
    for label, tables in (("70_points", 12), ("400_points", 78)):
        port = free_port()
        server = subprocess.Popen([sys.executable, str(ROOT / "bench" / "otlp_receiver.py"),
                                   "--serve", str(port)])
        try:
            wait_port("127.0.0.1", port)
            # every producer's series within the default 2,000 per metric (5 x 390 for 400 points)
            producers = min(args.producers, 2000 // (5 * tables))
            made = [payload(tables, p) for p in range(producers)]
            bodies = [b for b, _ in made]
            points = made[0][1]
            load(port, bodies, 1.0, args.connections)  # warm-up: every producer's series made
            run = load(port, bodies, args.seconds, args.connections)
            results[label] = {"points_per_request": points, "payload_bytes": len(bodies[0]),
                              "producers": producers,
                              **summary(run, points), "server_counters": stats(port)}
        finally:
            server.terminate()
            server.wait(10)
    results["load_average_after"] = os.getloadavg()
    results["command"] = " ".join([".venv/bin/python bench/fleet_receiver.py", *sys.argv[1:]])
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
