"""Time per query added by exporter.instrument, against the same workload without it and with
opentelemetry-instrumentation-sqlalchemy tracing alone, in one run.

    .venv/bin/python bench/instrument_overhead.py [--batches 200] [--batch-size 500]

SQLite in memory, `SELECT 1` on one open connection. Batches of the four variants are
interleaved so that machine noise hits them alike. The figure per variant is the median over
batches of the process CPU time per query (all threads, so the SDK's background export threads
count; time spent descheduled by other processes on the machine does not); "added" is the median
over rounds of a variant's batch minus the same round's uninstrumented batch (the order of the
variants is shuffled in each round). The median wall time is printed beside it. Exporters discard
what they receive.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time

import sqlalchemy
from discard import DiscardMetrics, DiscardSpans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy import create_engine, text

from exporter.instrument import instrument


def variants() -> dict[str, sqlalchemy.engine.Connection]:
    engines = {name: create_engine("sqlite://") for name in (
        "uninstrumented", "exporter.instrument (default mode)",
        "exporter.instrument (app's MeterProvider)", "otel-instrumentation-sqlalchemy tracing",
    )}
    names = list(engines)
    instrument(engines[names[1]], metric_exporter=DiscardMetrics(), span_exporter=DiscardSpans())
    app_meters = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(DiscardMetrics(), 10_000)]
    )
    app_tracer = TracerProvider()
    app_tracer.add_span_processor(BatchSpanProcessor(DiscardSpans()))
    instrument(engines[names[2]], meter_provider=app_meters, tracer_provider=app_tracer)

    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    tracer = TracerProvider()
    tracer.add_span_processor(BatchSpanProcessor(DiscardSpans()))
    SQLAlchemyInstrumentor().instrument(
        engine=engines[names[3]], tracer_provider=tracer, skip_dep_check=True
    )
    return {name: engine.connect() for name, engine in engines.items()}


def batch(connection: sqlalchemy.engine.Connection, size: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per query."""
    query = text("SELECT 1")
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(size):
        connection.execute(query).scalar()
    return (time.process_time() - cpu) / size, (time.perf_counter() - wall) / size


def run(batches: int, size: int) -> dict[str, tuple[float, float, float]]:
    """Per variant: median CPU and wall seconds per query, and the median over rounds of the
    CPU time added to the same round's uninstrumented batch (the order is shuffled per round)."""
    connections = variants()
    for connection in connections.values():
        batch(connection, size)  # warm caches
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in connections}
    order = list(connections)
    shuffle = random.Random(3).shuffle
    gc.disable()
    try:
        for _ in range(batches):
            shuffle(order)
            for name in order:
                samples[name].append(batch(connections[name], size))
    finally:
        gc.enable()
    base = samples["uninstrumented"]
    return {
        name: (
            statistics.median(c for c, _ in values),
            statistics.median(w for _, w in values),
            statistics.median(c - b for (c, _), (b, _) in zip(values, base, strict=True)),
        )
        for name, values in samples.items()
    }


FINGERPRINT_SAMPLES = {
    "short": "SELECT * FROM trades WHERE id = 42",
    "orm": (
        "SELECT trades.id, trades.user_id, trades.symbol, trades.side, trades.quantity, "
        "trades.price, trades.pnl, trades.opened_at FROM trades WHERE trades.user_id = "
        "%(user_id_1)s ORDER BY trades.opened_at DESC LIMIT %(param_1)s"
    ),
    "in-list of 200": "SELECT * FROM trades WHERE id IN (" + ", ".join(
        str(n) for n in range(200)) + ") AND note = 'it''s'",
}


def fingerprint_timings(calls: int = 5_000) -> dict[str, float]:
    """Seconds per fingerprint (median of 5 rounds) of typical statements, computed afresh
    (`fingerprint()` itself returns a repeated statement's from its cache)."""
    from exporter.fingerprint import _fingerprint as fingerprint

    timings = {}
    for name, sql in FINGERPRINT_SAMPLES.items():
        rounds = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(calls):
                fingerprint(sql)
            rounds.append((time.perf_counter() - started) / calls)
        timings[name] = statistics.median(rounds)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    medians = run(args.batches, args.batch_size)
    base_cpu, base_wall, _ = medians["uninstrumented"]
    print(f"SQLAlchemy {sqlalchemy.__version__}, {args.batches} x {args.batch_size} queries each")
    print(f"{'variant':42} {'cpu us':>7} {'added':>7} {'ratio':>6} {'wall us':>8} {'added':>7}")
    for name, (cpu, wall, added) in medians.items():
        print(f"{name:42} {cpu * 1e6:7.2f} {added * 1e6:7.2f} {cpu / base_cpu:6.2f}"
              f" {wall * 1e6:8.2f} {(wall - base_wall) * 1e6:7.2f}")
    ours = medians["exporter.instrument (default mode)"][2]
    tracing = medians["otel-instrumentation-sqlalchemy tracing"][2]
    if ours > 0:
        print(f"tracing alone adds {tracing / ours:.1f}x what exporter.instrument adds")
    for name, seconds in fingerprint_timings().items():
        print(f"fingerprint, {name} statement: {seconds * 1e6:.1f} us")


if __name__ == "__main__":
    main()
