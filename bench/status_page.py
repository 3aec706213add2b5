"""The status page's cost: rendering it with 50 Redis targets and 200 producers (the bound is
50 ms); what it costs the sidecar when nobody opens it (a glance at the Redis families on each
/metrics, beside what /metrics itself costs for the same state); and the sample of the OTLP
store a view takes at most every 5 s.

    .venv/bin/python bench/status_page.py [ROUNDS]

The Redis families are one real scrape of the shared Redis (127.0.0.1:6379, read only),
labelled for 50 targets; the 200 producers' pushes are encoded by the real OpenTelemetry SDK
and applied to a real OTLP store; 120 samples fill every ring buffer to its size.
"""

from __future__ import annotations

import asyncio
import gzip
import statistics
import sys
import time
from collections.abc import Callable

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from exporter.config import Config
from exporter.connections import ConnectionStats
from exporter.exposition import Family, Sample, render
from exporter.limits import ServerLimits
from exporter.otlp.state import OtlpState
from exporter.redis.collector import RedisCollector, TargetStatus
from exporter.redis.target import parse_address
from exporter.status.page import render as render_page
from exporter.status.state import StatusState
from exporter.status.views import as_json

TARGETS, PRODUCERS, SAMPLES = 50, 200, 120
BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]


class Clock:
    def __init__(self) -> None:
        self.t = time.time() - SAMPLES * 5

    def __call__(self) -> float:
        return self.t


def redis_families(targets: list[str]) -> list[Family]:
    async def scrape() -> list[Family]:
        collector = RedisCollector(5.0)
        try:
            return await collector.collect([parse_address("redis://127.0.0.1:6379")])
        finally:
            await collector.close()
    one = asyncio.run(scrape())
    return [Family(f.name, f.type, f.help, [Sample(s.suffix, (("target", t), *s.labels), s.value)
                                            for t in targets for s in f.samples]) for f in one]


def producer(i: int) -> tuple[InMemoryMetricReader, Callable[[int], None]]:
    reader = InMemoryMetricReader()
    resource = Resource.create({"service.name": f"svc-{i % 20}", "service.instance.id": f"i-{i}"})
    meter = MeterProvider(metric_readers=[reader], resource=resource).get_meter(
        "exporter.instrument", "0.1.0")
    count = meter.create_up_down_counter("db.client.connection.count")
    pending = meter.create_up_down_counter("db.client.connection.pending_requests")
    timeouts = meter.create_counter("db.client.connection.timeouts")
    queries = meter.create_histogram("db.client.operation.duration", unit="s",
                                     explicit_bucket_boundaries_advisory=BUCKETS)
    requests = meter.create_histogram("http.server.request.duration", unit="s")
    gets = meter.create_counter("cache.gets")
    for pool in ("main", "redis"):
        attrs = {"db.client.connection.pool.name": pool, "db.system.name": "postgresql"}
        count.add(3, {**attrs, "db.client.connection.state": "used"})
        count.add(7, {**attrs, "db.client.connection.state": "idle"})
        pending.add(0, attrs)

    def traffic(step: int) -> None:
        for op in ("SELECT", "INSERT", "UPDATE"):
            for k in range(5):
                queries.record(0.002 * (k + 1) * (1 + step % 3), {"db.operation.name": op})
        for status in (200, 200, 200, 404, 500):
            requests.record(0.01, {"http.route": "/trades", "http.response.status_code": status})
        for cache in ("trades", "analytics"):
            gets.add(9, {"cache.name": cache, "cache.result": "hit"})
            gets.add(1, {"cache.name": cache, "cache.result": "miss"})
        timeouts.add(step % 2, {"db.client.connection.pool.name": "main"})
    return reader, traffic


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def show(what: str, seconds: list[float]) -> None:
    q = statistics.quantiles(seconds, n=20)
    print(f"{what:58s} median {statistics.median(seconds) * 1e3:8.3f} ms   "
          f"p95 {q[18] * 1e3:8.3f} ms")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    clock = Clock()
    addresses = [f"redis://cache-{i}.internal:6379" for i in range(TARGETS)]
    config = Config(targets=tuple(parse_address(a) for a in addresses))
    redis = RedisCollector(5.0)
    otlp = OtlpState(clock=clock, wall_clock=clock)
    connections = ConnectionStats()
    connections.listener("otlp", ServerLimits())
    state = StatusState(config, redis, otlp, connections, clock=clock)
    families = redis_families(addresses)
    producers = [producer(i) for i in range(PRODUCERS)]
    for i in range(200):
        otlp.slow_queries.record(f"SELECT * FROM t{i} WHERE id = ?", 0.6 + i / 1000,
                                 service=f"svc-{i % 20}")
    for step in range(SAMPLES):
        clock.t += 5
        for reader, traffic in producers:
            traffic(step)
            data = reader.get_metrics_data()
            assert data is not None
            otlp.apply_metrics(encode_metrics(data))
        state.observe_redis(families, config.targets, True)
        state.sample_apps()
    for address in addresses:
        redis.status[address] = TargetStatus(True, "", clock.t, 0.002)
    print(f"{TARGETS} targets ({sum(len(f.samples) for f in families)} Redis samples), "
          f"{PRODUCERS} producers ({otlp.store.series_count} OTLP series), {SAMPLES} samples "
          f"in every ring; {rounds} rounds")

    status = state.build()
    html = render_page(status).encode()
    print(f"page: {len(html):,} bytes of HTML ({len(gzip.compress(html, 5)):,} gzipped, as "
          f"sent to a browser), {len(status.apps)} app rows")
    show("the page: build the views + render the HTML",
         timed(lambda: render_page(state.build()), rounds))
    show("the page as sent: build + render + gzip (level 5)",
         timed(lambda: gzip.compress(render_page(state.build()).encode(), 5), rounds))
    show("/api/status: build the views + JSON-ready dict", timed(lambda: as_json(state.build()),
                                                                 rounds))

    show("a view's sample of the OTLP store (at most every 5 s)",
         timed(state.sample_apps, rounds))
    print("-- when nobody opens the page, per /metrics:")
    show("the page's glance at the Redis families",
         timed(lambda: state.observe_redis(families, config.targets, True), rounds))
    show("for scale: /metrics render of the same Redis families",
         timed(lambda: render(families, False), rounds))
    show("for scale: /metrics render of the OTLP families",
         timed(lambda: render(otlp.collect(), False), rounds))


if __name__ == "__main__":
    main()
