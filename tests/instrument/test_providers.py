"""Our own providers, end to end over real OTLP/HTTP: the app runs in a child process with the
real SDK exporters and posts to a receiver in this process, which decodes the protobuf."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from exporter.instrument import providers

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Content-Type"], body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def metrics(self) -> list[ExportMetricsServiceRequest]:
        return [ExportMetricsServiceRequest.FromString(b) for p, _, b in self.requests
                if p == "/v1/metrics"]

    def traces(self) -> list[ExportTraceServiceRequest]:
        return [ExportTraceServiceRequest.FromString(b) for p, _, b in self.requests
                if p == "/v1/traces"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()


def run_app(mode: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.instrument.otlp_app", mode, *args],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60, check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def attributes(items: Any) -> dict[str, Any]:
    return {kv.key: kv.value.WhichOneof("value") and getattr(kv.value, kv.value.WhichOneof(
        "value")) for kv in items}


def test_own_providers_export_otlp_protobuf_as_the_environment_says(receiver: Receiver) -> None:
    result = run_app("own", {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "trades-api",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
    }, "0.9")
    assert result["flushed"] is True
    assert {ct for _, ct, _ in receiver.requests} == {"application/x-protobuf"}
    exports = receiver.metrics()
    assert len(exports) >= 3  # 200 ms interval during 0.9 s, then the flush
    [resource_metrics] = exports[-1].resource_metrics
    resource = attributes(resource_metrics.resource.attributes)
    assert resource["service.name"] == "trades-api"  # the environment wins over code
    assert resource["deployment.environment"] == "test"
    assert len(resource["service.instance.id"]) == 36
    metrics = {m.name: m for s in resource_metrics.scope_metrics for m in s.metrics}
    duration = metrics["db.client.operation.duration"]
    assert duration.unit == "s"
    [point] = [p for p in duration.histogram.data_points
               if attributes(p.attributes).get("db.operation.name") == "SELECT"]
    assert point.count == 3
    assert list(point.explicit_bounds) == [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]
    # SQLite in memory uses a SingletonThreadPool: only the used count is known
    counts = metrics["db.client.connection.count"].sum.data_points
    assert [attributes(p.attributes)["db.client.connection.state"] for p in counts] == ["used"]
    assert metrics["db.client.connection.wait_time"].histogram.data_points[0].count == 1
    spans = [s for t in receiver.traces() for r in t.resource_spans for ss in r.scope_spans
             for s in ss.spans]
    assert {attributes(s.attributes)["db.query.fingerprint"] for s in spans} == {
        "SELECT ? AS password"
    }
    assert all(b"hunter2" not in body for _, _, body in receiver.requests)


def test_service_name_from_code_and_instance_id_from_the_environment(
    receiver: Receiver,
) -> None:
    run_app("own", {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=worker-7",
    })
    resource = attributes(receiver.metrics()[-1].resource_metrics[0].resource.attributes)
    assert resource["service.name"] == "from-code"
    assert resource["service.instance.id"] == "worker-7"


def test_global_sdk_providers_are_used_when_none_are_given(receiver: Receiver) -> None:
    result = run_app("global", {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
    assert "db.client.operation.duration" in result["in_memory_metrics"]
    assert receiver.metrics() == []


def test_default_endpoint_is_ipv4_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert providers._signal_endpoint(None, "metrics") == "http://127.0.0.1:4318/v1/metrics"
    assert providers._signal_endpoint("http://sidecar:4318/", "traces") == (
        "http://sidecar:4318/v1/traces"
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://elsewhere:4318")
    assert providers._signal_endpoint(None, "metrics") is None  # the SDK reads it itself


def test_every_process_gets_its_own_instance_id(receiver: Receiver) -> None:
    ids = set()
    for _ in range(2):
        run_app("own", {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
        resource = receiver.metrics()[-1].resource_metrics[0].resource
        ids.add(attributes(resource.attributes)["service.instance.id"])
    assert len(ids) == 2


def test_instrument_before_a_fork_says_what_to_do(tmp_path: Path) -> None:
    """gunicorn --preload with instrument() at import: the forked worker says, once, to call it
    after the fork."""
    script = tmp_path / "preload.py"
    script.write_text(
        "import logging, os, sys\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stderr)\n"
        "from sqlalchemy import create_engine\n"
        "from exporter.instrument import instrument\n"
        "instrument(create_engine('sqlite://'), otlp_endpoint='http://127.0.0.1:9')\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("instrument() ran before this process forked") == 1, done.stderr
    assert "post_fork" in done.stderr
