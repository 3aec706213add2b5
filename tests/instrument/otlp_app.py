"""A tiny instrumented app for the provider tests, run in its own process:

    python -m tests.instrument.otlp_app own      # our providers, configured by OTEL_* variables
    python -m tests.instrument.otlp_app global   # global SDK providers set by the "app" first

Prints one JSON line describing what it did.
"""

from __future__ import annotations

import json
import sys
import time

from sqlalchemy import create_engine, text

from exporter.instrument import instrument


def main(mode: str) -> None:
    engine = create_engine("sqlite://")
    reader = None
    if mode == "global":
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    handle = instrument(engine, slow_query_threshold=0.0, service_name="from-code")
    with engine.connect() as connection:
        for _ in range(3):
            connection.execute(text("SELECT 'hunter2-Secret!' AS password")).all()
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)
    flushed = handle.force_flush()
    names: list[str] = []
    if reader is not None:
        data = reader.get_metrics_data()
        assert data is not None
        names = [m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics]
    print(json.dumps({"flushed": flushed, "in_memory_metrics": names}))


if __name__ == "__main__":
    main(sys.argv[1])
