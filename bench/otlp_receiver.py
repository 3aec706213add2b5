"""OTLP receiver benchmark: throughput in data points and spans per second on one core, and the
request latency at that rate and at half of it.

The receiver runs under uvicorn (the sidecar's settings: default loop and HTTP implementation,
no access log) in its own process, pinned to CPU 0; the load generator runs in this process,
pinned to CPU 1, with keep-alive connections. Payloads are produced by the real OpenTelemetry
SDK and encoded by its OTLP exporter's encoder, as an app worker pushes them:

- metrics: one worker's periodic push of the pool and query instruments exporter.instrument
  records (one pool; `db.client.operation.duration` for 4 operations x 12 tables, some errors);
- traces: one BatchSpanProcessor batch of 512 spans: HTTP server spans, each with database
  client spans carrying `db.query.text`, 1 in 100 of them over the slow-query threshold.

For each signal: a closed-loop run with `--connections` senders back to back (the saturation
throughput, and the latency there, queueing included); one sender back to back (the latency of
a request alone); an open-loop run paced at half the saturation rate (latency measured from the
scheduled send time, so queueing and late sends are counted). `--gzip` sends the payloads
gzip-compressed (the SDK's OTEL_EXPORTER_OTLP_COMPRESSION=gzip).

    .venv/bin/python bench/otlp_receiver.py --seconds 10
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.net import free_port, wait_port  # noqa: E402

SERVER_CPU, CLIENT_CPU = 0, 1
HEADERS = {"Content-Type": "application/x-protobuf"}

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricsData


def serve(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    from exporter.otlp import OtlpState, otlp_app

    state = OtlpState()

    async def stats(_request: Request) -> JSONResponse:
        c = state.counters
        return JSONResponse(
            {
                "points_accepted": c.points_accepted,
                "points_dropped": sum(c.points_dropped.values()),
                "spans_accepted": c.spans_accepted,
                "rejected": sum(c.rejected.values()),
                "series": state.store.series_count,
                "slow_fingerprints": len(state.slow_queries),
            }
        )

    app = Starlette(routes=[Route("/stats", stats), Mount("/", otlp_app(state))])
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def metrics_payload() -> tuple[bytes, int]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource

    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "tradesense-api"})
    )
    meter = provider.get_meter("exporter.instrument", "0.1.0")
    buckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]
    duration = meter.create_histogram(
        "db.client.operation.duration", unit="s", explicit_bucket_boundaries_advisory=buckets
    )
    rng = random.Random(1)
    for op in ("SELECT", "INSERT", "UPDATE", "DELETE"):
        for table in range(12):
            attrs = {
                "db.system.name": "postgresql",
                "db.operation.name": op,
                "db.collection.name": f"table_{table}",
            }
            for _ in range(20):
                duration.record(rng.expovariate(200), attrs)
            if table % 4 == 0:
                duration.record(0.2, {**attrs, "error.type": "OperationalError"})
    pool = {"db.client.connection.pool.name": "main", "db.system.name": "postgresql"}
    count = meter.create_up_down_counter("db.client.connection.count", unit="{connection}")
    count.add(15, {**pool, "db.client.connection.state": "idle"})
    count.add(5, {**pool, "db.client.connection.state": "used"})
    for name, value in (("max", 60), ("idle.max", 20), ("idle.min", 0), ("pending_requests", 1)):
        meter.create_up_down_counter(f"db.client.connection.{name}").add(value, pool)
    meter.create_counter("db.client.connection.timeouts", unit="{timeout}").add(2, pool)
    for name in ("create_time", "wait_time", "use_time"):
        h = meter.create_histogram(f"db.client.connection.{name}", unit="s")
        for _ in range(50):
            h.record(rng.expovariate(100), pool)
    return encoded(reader.get_metrics_data())


def encoded(data: MetricsData | None) -> tuple[bytes, int]:
    """An SDK collection as the OTLP exporter sends it, and its number of data points."""
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    assert data is not None
    request = encode_metrics(data)
    points = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                assert kind is not None
                points += len(getattr(m, kind).data_points)
    return request.SerializeToString(), points


def traces_payload(batch: int = 512) -> tuple[bytes, int]:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.trace import SpanKind

    provider = TracerProvider(resource=Resource.create({"service.name": "tradesense-api"}))
    http_tracer = provider.get_tracer("opentelemetry.instrumentation.asgi")
    db_tracer = provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    spans: list[ReadableSpan] = []
    rng = random.Random(2)
    t = time.time_ns()
    while len(spans) < batch:
        root = http_tracer.start_span("GET /trades", kind=SpanKind.SERVER, start_time=t)
        root.set_attributes(
            {
                "http.request.method": "GET",
                "http.route": "/trades",
                "url.scheme": "http",
                "http.response.status_code": 200,
                "server.address": "api",
                "server.port": 8000,
            }
        )
        for _ in range(3):
            slow = rng.random() < 0.01
            child = db_tracer.start_span("SELECT trades", start_time=t, kind=SpanKind.CLIENT)
            child.set_attributes(
                {
                    "db.system.name": "postgresql",
                    "db.query.text": "SELECT trades.id, trades.symbol, trades.qty FROM trades "
                    "WHERE trades.user_id = %(user_id)s ORDER BY trades.opened_at DESC "
                    "LIMIT %(limit)s",
                    "db.operation.name": "SELECT",
                    "db.collection.name": "trades",
                    "server.address": "db",
                    "server.port": 5432,
                }
            )
            child.end(end_time=t + (700_000_000 if slow else rng.randrange(200_000, 5_000_000)))
            assert isinstance(child, ReadableSpan)  # the SDK's start_span is typed as the API's
            spans.append(child)
        root.end(end_time=t + 8_000_000)
        assert isinstance(root, ReadableSpan)
        spans.append(root)
        t += 10_000_000
    readable = spans[:batch]
    return encode_spans(readable).SerializeToString(), len(readable)


@dataclass
class Run:
    requests: int
    seconds: float
    latencies: list[float]
    errors: int

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@dataclass(frozen=True)
class Target:
    port: int
    path: str
    body: bytes
    headers: dict[str, str]


def _sender(
    target: Target,
    deadline: float,
    out: list[float],
    errors: list[int],
    interval: float | None,
    start: float,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", target.port)
    scheduled = start
    while True:
        if interval is not None:
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        began = scheduled if interval is not None else time.perf_counter()
        if began >= deadline:
            break
        conn.request("POST", target.path, target.body, target.headers)
        response = conn.getresponse()
        response.read()
        out.append(time.perf_counter() - began)
        if response.status != 200:
            errors.append(response.status)
        if interval is not None:
            scheduled += interval
    conn.close()


def load(target: Target, seconds: float, connections: int, rate: float | None = None) -> Run:
    """`connections` senders back to back, or together paced at `rate` requests a second."""
    start = time.perf_counter() + 0.05
    deadline = start + seconds
    interval = None if rate is None else connections / rate
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors: list[int] = []
    threads = [
        threading.Thread(
            target=_sender,
            args=(
                target,
                deadline,
                latencies[i],
                errors,
                interval,
                start + (0 if interval is None else i * interval / connections),
            ),
        )
        for i in range(connections)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    merged = [x for part in latencies for x in part]
    return Run(len(merged), time.perf_counter() - start, merged, len(errors))


def stats(port: int) -> dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/stats")
    doc: dict[str, int] = json.loads(conn.getresponse().read())
    conn.close()
    return doc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        os.sched_setaffinity(0, {SERVER_CPU})
        serve(args.serve)
        return
    os.sched_setaffinity(0, {CLIENT_CPU})
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    headers = {**HEADERS, **({"Content-Encoding": "gzip"} if args.gzip else {})}
    results: dict[str, object] = {}
    try:
        wait_port("127.0.0.1", port)
        for signal, (body, items) in (("metrics", metrics_payload()), ("traces", traces_payload())):
            sent = gzip.compress(body) if args.gzip else body
            target = Target(port, f"/v1/{signal}", sent, headers)
            load(target, 1.0, args.connections)  # warm-up
            top = load(target, args.seconds, args.connections)
            alone = load(target, args.seconds, 1)
            half = load(target, args.seconds, args.connections, 0.5 * top.requests / top.seconds)
            results[signal] = {
                "payload_bytes": len(sent),
                "items_per_request": items,
                f"saturation_{args.connections}_connections": summary(top, items),
                "one_connection": summary(alone, items),
                "paced_at_half_saturation": summary(half, items),
            }
        results["server_counters"] = stats(port)
    finally:
        server.terminate()
        server.wait(10)
    results["python"] = sys.version.split()[0]
    results["load_average_after"] = os.getloadavg()
    results["command"] = " ".join([".venv/bin/python bench/otlp_receiver.py", *sys.argv[1:]])
    print(json.dumps(results, indent=2))


def summary(run: Run, items: int) -> dict[str, float]:
    rate = run.requests / run.seconds
    return {
        "requests_per_second": round(rate, 1),
        "items_per_second": round(rate * items),
        "latency_ms_p50": round(run.pct(0.50), 2),
        "latency_ms_p99": round(run.pct(0.99), 2),
        "latency_ms_mean": round(statistics.fmean(run.latencies) * 1000, 2),
        "errors": run.errors,
    }


if __name__ == "__main__":
    main()
