"""An app process pushing OTLP/HTTP with the real OpenTelemetry SDK, configured the standard way
(OTEL_* environment variables). Run by the tests as a separate process:

    python producer.py WORKER SECONDS

It records the pool and query instruments exporter.instrument records, with values derived from
WORKER so that producers can be told apart, sends one slow database span whose statement holds
literals that must never reach the sidecar's output, and one span marked slow by the
instrumentation; it keeps adding for SECONDS, then shuts down (which flushes) and exits.
"""

from __future__ import annotations

import sys
import time

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

SECRET_STATEMENT = (
    "SELECT * FROM accounts WHERE email = 'alice@example.com' "
    "AND password = 'hunter2-Secret!' AND card_number IN (4111111111111111, 5500000000000004)"
)
BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]
DURATIONS = [0.0004, 0.003, 0.02, 0.02, 0.7, 3.0]


def main() -> None:
    worker, seconds = int(sys.argv[1]), float(sys.argv[2])
    resource = Resource.create()
    meters = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())], resource=resource
    )
    tracers = TracerProvider(resource=resource)
    tracers.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    meter = meters.get_meter("exporter.instrument", "0.1.0")
    pool = {"db.client.connection.pool.name": "main", "db.system.name": "postgresql"}

    def pool_max(_options: CallbackOptions) -> list[Observation]:
        return [Observation(60 + worker, pool)]

    meter.create_observable_up_down_counter(
        "db.client.connection.max", [pool_max], unit="{connection}"
    )
    count = meter.create_up_down_counter("db.client.connection.count", unit="{connection}")
    count.add(worker, {**pool, "db.client.connection.state": "used"})
    timeouts = meter.create_counter("db.client.connection.timeouts", unit="{timeout}")
    duration = meter.create_histogram(
        "db.client.operation.duration", unit="s", explicit_bucket_boundaries_advisory=BUCKETS
    )
    wait_time = meter.create_histogram("db.client.connection.wait_time", unit="s")

    tracer = tracers.get_tracer("opentelemetry.instrumentation.asyncpg")
    now = time.time_ns()
    span = tracer.start_span("SELECT accounts", start_time=now - 900_000_000)
    span.set_attributes(
        {
            "db.system.name": "postgresql",
            "db.query.text": SECRET_STATEMENT,
            "db.operation.name": "SELECT",
            "db.collection.name": "accounts",
        }
    )
    span.end(end_time=now)
    marked = tracers.get_tracer("exporter.instrument").start_span("UPDATE trades")
    marked.set_attributes(
        {
            "tradesense.slow_query": True,
            "db.query.fingerprint": "UPDATE trades SET note = ? WHERE id = ?",
            "db.operation.name": "UPDATE",
            "db.collection.name": "trades",
            "db.system.name": "sqlite",
        }
    )
    marked.end()

    query = {
        "db.system.name": "postgresql",
        "db.operation.name": "SELECT",
        "db.collection.name": "trades",
    }
    deadline = time.monotonic() + seconds
    rounds = 0
    while rounds == 0 or time.monotonic() < deadline:
        rounds += 1
        timeouts.add(1, pool)
        for d in DURATIONS:
            duration.record(d, query)
        wait_time.record(0.25, pool)
        time.sleep(0.05)
    meters.shutdown()
    tracers.shutdown()
    print(rounds, flush=True)


if __name__ == "__main__":
    main()
