"""Issue 8, items 4 to 7 against the real sidecar process: slow OTLP bodies, OTLP memory
(attribute keys, metric names, resource attributes, the /metrics size budget and /healthz while
it renders), points from the future, and pushed metrics named like the sidecar's own.

Attackers connect from 127.0.0.2 (all of 127/8 is loopback); the normal client from 127.0.0.1.
Limits are configured small so that every loop stays small."""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from tests.support.abuse import log_lines, metrics_text, rss_bytes, sample, timed_get
from tests.support.sidecar import SidecarProcess, run_sidecar

MB = 1024 * 1024
NO_REDIS = "--redis.addr="
CUMULATIVE = pb.AGGREGATION_TEMPORALITY_CUMULATIVE


def write_config(tmp_path: Path, server: dict[str, object] | None = None, **otlp: object) -> str:
    path = tmp_path / "config.yml"
    text = "otlp:\n" + "".join(f"  {k}: {v}\n" for k, v in otlp.items())
    if server:
        text += "server:\n" + "".join(f"  {k}: {v}\n" for k, v in server.items())
    path.write_text(text)
    return f"--config.file={path}"


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def request(
    metrics: Sequence[pb.Metric], resource: Sequence[KeyValue] = (), instance: str = "i1"
) -> bytes:
    attributes = [kv("service.name", "abuse"), kv("service.instance.id", instance), *resource]
    return ExportMetricsServiceRequest(
        resource_metrics=[
            pb.ResourceMetrics(
                resource=Resource(attributes=attributes),
                scope_metrics=[
                    pb.ScopeMetrics(scope=InstrumentationScope(name="s"), metrics=list(metrics))
                ],
            )
        ]
    ).SerializeToString()


def gauge(name: str, points: Sequence[pb.NumberDataPoint], unit: str = "") -> pb.Metric:
    return pb.Metric(name=name, unit=unit, gauge=pb.Gauge(data_points=list(points)))


def counter(name: str, value: float, t: int) -> pb.Metric:
    point = pb.NumberDataPoint(as_double=value, time_unix_nano=t)
    return pb.Metric(
        name=name,
        sum=pb.Sum(data_points=[point], aggregation_temporality=CUMULATIVE, is_monotonic=True),
    )


def push(proc: SidecarProcess, body: bytes) -> int:
    req = urllib.request.Request(
        f"{proc.otlp_url}/v1/metrics",
        data=body,
        headers={"Content-Type": "application/x-protobuf"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def usual_latency(url: str) -> float:
    return max(timed_get(url)[1] for _ in range(3))


def trickler(port: int) -> socket.socket:
    """A push that sends its headers and one byte of a 1,000-byte body, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.2", 0))
    sock.sendall(
        b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Content-Length: 1000\r\n\r\n\x0a"
    )
    return sock


def status_line(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    try:
        return sock.recv(4096).split(b"\r\n", 1)[0]
    except OSError:
        return b""


def test_trickling_bodies_do_not_block_real_pushes_and_time_out(tmp_path: Path) -> None:
    config = write_config(tmp_path, max_inflight_requests=4, body_timeout="3s")
    with run_sidecar([NO_REDIS, config]) as proc:
        usual = usual_latency(f"{proc.web_url}/metrics")
        rss_before = rss_bytes(proc.proc.pid)
        attack = [trickler(proc.otlp_port) for _ in range(20)]
        time.sleep(0.3)
        started = time.monotonic()
        statuses = [push(proc, request([counter("orders", i, 0)])) for i in range(10)]
        during = max(timed_get(f"{proc.web_url}/metrics")[1] for _ in range(3))
        text = metrics_text(proc)
        assert statuses == [200] * 10, "real pushes go through while 20 bodies trickle"
        assert time.monotonic() - started < 3, "...and did so before the trickles timed out"
        assert sample(text, "tradesense_exporter_otlp_inflight_requests") == 20
        answers = [status_line(sock, 5) for sock in attack]
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers
        for sock in attack:
            sock.close()
        time.sleep(0.2)
        text = metrics_text(proc)
        rss_after = rss_bytes(proc.proc.pid)
        logs = proc.logs()
    assert sample(text, "tradesense_exporter_otlp_requests_rejected_total", reason="timeout") == 20
    assert sample(text, "tradesense_exporter_otlp_inflight_requests") == 0
    assert during < max(1.0, 5 * usual)
    assert rss_after < rss_before + 20 * MB
    # no line per timed-out body (a 408 as a word: the listener's port may hold the digits)
    assert not re.search(r"(?<![\d.:])408(?![\d.])", logs), logs
    assert log_lines(logs, "Traceback") == 0
    print(f"\nslow bodies: usual /metrics {usual * 1000:.1f} ms, during {during * 1000:.1f} ms, "
          f"RSS {rss_before / MB:.0f} -> {rss_after / MB:.0f} MiB")


def test_hostile_keys_names_and_resources_stay_small(tmp_path: Path) -> None:
    # Bodies of several MB, under the default server limits (64 KiB of headers).
    config = write_config(tmp_path, staleness="5m")
    with run_sidecar([NO_REDIS, config]) as proc:
        rss_before = rss_bytes(proc.proc.pid)
        usual = usual_latency(f"{proc.web_url}/metrics")
        peak = rss_before
        for i in range(20):  # 100 series with 1 MB attribute keys, 5 per push
            points = [pb.NumberDataPoint(as_double=1, attributes=[kv(f"{i}-{j}" + "k" * MB, "v")])
                      for j in range(5)]
            assert push(proc, request([gauge("keys", points)])) == 200
        for i in range(60):  # distinct 1 MB metric names, every one dropped
            point = pb.NumberDataPoint(as_double=1)
            assert push(proc, request([gauge(f"{i}-" + "n" * MB, [point])])) == 200
            peak = max(peak, rss_bytes(proc.proc.pid))
        for i in range(60):  # 60 producers with 2,000 resource attributes each
            resource = [kv(f"attr.{j}", "v" * 2000) for j in range(2000)]
            body = request([gauge("up.ish", [pb.NumberDataPoint(as_double=1)])], resource,
                           instance=f"p{i}")
            assert push(proc, body) == 200
            peak = max(peak, rss_bytes(proc.proc.pid))
        # The first producer pushes again: silent for 3 of its (fast) intervals it is dead.
        assert push(proc, request([gauge("keys", [pb.NumberDataPoint(as_double=1)])])) == 200
        status, during = timed_get(f"{proc.web_url}/metrics")
        text = metrics_text(proc)
        rss_after = rss_bytes(proc.proc.pid)
    assert status == 200 and during < max(1.0, 5 * usual)
    assert len(text) < 8 * MB
    assert max(len(line) for line in text.splitlines()) < 100_000
    assert sample(text, "tradesense_exporter_otlp_attributes_dropped_total") >= 100 + 60 * 1938
    assert sample(text, "tradesense_exporter_otlp_data_points_dropped_total",
                  reason="unsupported") == 60
    assert sample(text, "target_info") == 61  # 60 producers and the first one
    assert rss_after < rss_before + 100 * MB and peak < rss_before + 150 * MB
    print(f"\nhostile names: /metrics {len(text) / MB:.1f} MiB, RSS {rss_before / MB:.0f} -> "
          f"peak {peak / MB:.0f} -> {rss_after / MB:.0f} MiB")


def histogram_push(start: int, count: int) -> bytes:
    bounds = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]
    points = [
        pb.HistogramDataPoint(
            count=10, sum=1.5, bucket_counts=[1] * 10, explicit_bounds=bounds,
            attributes=[kv("http.route", f"/route/{i}/" + "x" * 40), kv("http.method", "GET")],
        )
        for i in range(start, start + count)
    ]
    metric = pb.Metric(name="http.server.request.duration", unit="s",
                       histogram=pb.Histogram(data_points=points,
                                              aggregation_temporality=CUMULATIVE))
    return request([metric])


def test_the_size_budget_holds_and_healthz_does_not_wait_for_a_render(tmp_path: Path) -> None:
    config = write_config(tmp_path, max_exposition_bytes=8 * MB, max_series_per_metric=100_000)
    with run_sidecar([NO_REDIS, config]) as proc:
        rss_before = rss_bytes(proc.proc.pid)
        healthz_usual = usual_latency(f"{proc.web_url}/healthz")
        for start in range(0, 12_000, 200):  # bodies under 64 KiB
            assert push(proc, histogram_push(start, 200)) == 200
        text = metrics_text(proc)
        refused = sample(text, "tradesense_exporter_otlp_data_points_dropped_total",
                         reason="size_limit")
        assert refused > 0
        assert len(text) < 8 * MB
        renders: list[float] = []
        stop = threading.Event()

        def scrape() -> None:
            while not stop.is_set() and len(renders) < 50:
                renders.append(timed_get(f"{proc.web_url}/metrics", timeout=30)[1])

        scraper = threading.Thread(target=scrape)
        scraper.start()
        time.sleep(0.2)
        healthz = []
        for _ in range(20):
            healthz.append(timed_get(f"{proc.web_url}/healthz")[1])
            time.sleep(0.05)
        stop.set()
        scraper.join(60)
        rss_after = rss_bytes(proc.proc.pid)
    render = sorted(renders)[len(renders) // 2]
    assert max(healthz) < max(0.25, render / 2), (healthz, render)
    assert rss_after < rss_before + 250 * MB
    print(f"\nsize budget: body {len(text) / MB:.1f} MiB, {refused:.0f} points refused, "
          f"median render {render * 1000:.0f} ms, /healthz usual {healthz_usual * 1000:.1f} ms, "
          f"max during renders {max(healthz) * 1000:.1f} ms, RSS {rss_before / MB:.0f} -> "
          f"{rss_after / MB:.0f} MiB")


def test_a_point_from_the_future_does_not_freeze_its_series(tmp_path: Path) -> None:
    config = write_config(tmp_path, staleness="2s", max_future_skew="5m")
    with run_sidecar([NO_REDIS, config]) as proc:
        now = time.time_ns()
        ten_years = 10 * 365 * 86400 * 10**9
        assert push(proc, request([counter("orders", 1e9, now + ten_years)])) == 200
        assert push(proc, request([counter("orders", 5, now)])) == 200
        assert push(proc, request([counter("orders", 6, now + 10**9)])) == 200
        text = metrics_text(proc)
        assert sample(text, "orders_total") == 6
        assert sample(text, "tradesense_exporter_otlp_data_points_dropped_total",
                      reason="future_timestamp") == 1
        time.sleep(2.5)
        text = metrics_text(proc)
    assert "orders_total" not in text, "the series goes stale once its producer stops"


def test_pushed_metrics_cannot_replace_the_sidecars_own(tmp_path: Path) -> None:
    with run_sidecar([NO_REDIS]) as proc:
        point = [pb.NumberDataPoint(as_double=42)]
        body = request([
            gauge("process.resident_memory", point, unit="By"),
            gauge("redis.up", point),
            gauge("redis_exporter.build.info", point),
            gauge("python.info", point),
            gauge("tradesense.exporter.otlp.series", point),
            gauge("target.info", point),
            gauge("app.ok", point),
        ])
        assert push(proc, body) == 200
        text = metrics_text(proc)
        logs = proc.logs()
    assert sample(text, "tradesense_exporter_otlp_data_points_dropped_total",
                  reason="reserved_name") == 6
    assert text.count("# TYPE process_resident_memory_bytes ") == 1
    assert sample(text, "process_resident_memory_bytes") > 1 * MB
    assert "redis_up" not in text and sample(text, "app_ok") == 42
    assert sample(text, "tradesense_exporter_render_duplicate_families_total") == 0
    assert log_lines(logs, "left out") == 0
