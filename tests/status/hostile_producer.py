"""An app process pushing hostile strings over OTLP/HTTP with the real OpenTelemetry SDK:
service name, instance id, pool name, cache name and a slow statement holding markup and
newlines. It pushes once, flushes and exits.

    python hostile_producer.py   # OTEL_EXPORTER_OTLP_ENDPOINT names the sidecar
"""

from __future__ import annotations

import time

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

SERVICE = '<script>window.__pwned = 1</script>\n"><img src=x onerror="window.__pwned = 2">'
INSTANCE = "'><img src=x onerror=window.__pwned=3>\ni-1"
POOL = '<img src=x onerror="window.__pwned = 4">\nmain'
CACHE = "</td></tr><script>window.__pwned = 5</script>"
STATEMENT = "SELECT a FROM t WHERE a<script>window.__pwned = 6</script>"


def main() -> None:
    resource = Resource.create({"service.name": SERVICE, "service.instance.id": INSTANCE})
    meters = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())], resource=resource)
    meter = meters.get_meter("exporter.instrument", "0.1.0")
    pool = {"db.client.connection.pool.name": POOL, "db.system.name": "postgresql"}
    meter.create_up_down_counter("db.client.connection.count").add(
        2, {**pool, "db.client.connection.state": "used"})
    meter.create_counter("cache.gets").add(3, {"cache.name": CACHE, "cache.result": "hit"})
    tracers = TracerProvider(resource=resource)
    tracers.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    now = time.time_ns()
    span = tracers.get_tracer("opentelemetry.instrumentation.asyncpg").start_span(
        "SELECT t", start_time=now - 900_000_000)
    span.set_attributes({"db.system.name": "postgresql", "db.query.text": STATEMENT})
    span.end(end_time=now)
    tracers.shutdown()
    meters.shutdown()


if __name__ == "__main__":
    main()
