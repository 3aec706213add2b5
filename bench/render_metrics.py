"""What one /metrics costs the sidecar at fleet scale: the OTLP store's collection, the text
rendering and gzip, with the garbage collector running and paused (as web.py pauses it), for N
producers each pushing bench/fleet_producers.py's 70-point set (71 series; the default 200
producers make 14,200 series and a 42 MB body). In process, no HTTP.

    .venv/bin/python bench/render_metrics.py --producers 200
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from bench.fleet_producers import Producer
from exporter import exposition
from exporter.gc_pause import GC_PAUSE
from exporter.limits import OtlpLimits
from exporter.otlp.state import OtlpState


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--producers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    state = OtlpState(OtlpLimits(max_series_per_metric=16_000, max_series_total=100_000,
                                 max_exposition_bytes=64 * 1024 * 1024))
    for index in range(args.producers):
        producer = Producer(index, index)
        producer.work()
        body, _ = producer.payload()
        state.apply_metrics(ExportMetricsServiceRequest.FromString(body))
    for paused in (False, True, False, True):
        collect, render, compress = [], [], []
        text = b""
        for _ in range(args.rounds):
            started = time.perf_counter()
            with GC_PAUSE.held() if paused else contextlib.nullcontext():
                families = state.collect()
                collected = time.perf_counter()
                text = exposition.render(families)
            rendered = time.perf_counter()
            gzip.compress(text, compresslevel=1, mtime=0)  # as web.py sends it
            collect.append(collected - started)
            render.append(rendered - collected)
            compress.append(time.perf_counter() - rendered)
        lines = text.count(b"\n")
        print(f"{args.producers} producers, {lines:,} lines, {len(text) / 1e6:.1f} MB, "
              f"garbage collector {'paused' if paused else 'running'}; medians of "
              f"{args.rounds}: collect {statistics.median(collect):.3f} s, render "
              f"{statistics.median(render):.3f} s, gzip {statistics.median(compress):.3f} s")
    families = state.collect()
    with GC_PAUSE.held():
        streamed = [timed(lambda: exposition.render_gzip(families)) for _ in range(args.rounds)]
    print(f"render_gzip (what web.py sends, collector paused): median "
          f"{statistics.median(streamed):.3f} s")
    for name, build in (("render + gzip.compress",
                         lambda: gzip.compress(exposition.render(families), 1, mtime=0)),
                        ("render_gzip", lambda: exposition.render_gzip(families))):
        tracemalloc.start()
        build()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"peak memory allocated while building the gzipped body, {name}: "
              f"{peak / 1e6:.1f} MB")
    families.clear()  # its rows: the last measure makes its own
    with GC_PAUSE.held():
        whole = [timed(lambda: exposition.render_gzip(state.collect()))
                 for _ in range(args.rounds)]
    tracemalloc.start()
    with GC_PAUSE.held():
        exposition.render_gzip(state.collect())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"one /metrics body, collect and render_gzip (collector paused): median "
          f"{statistics.median(whole):.3f} s, peak memory allocated {peak / 1e6:.1f} MB")


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
