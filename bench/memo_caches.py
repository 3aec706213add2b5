"""What each module-level memo is worth: the same work timed with the memo and with it disabled
(a Memo that keeps nothing), in one run, so the ratio holds on a noisy machine.

- otlp/naming.py (metric and label names), on the receiver's path: applying the 70-point push
  of bench/otlp_receiver.py to a store.

The memos of otlp/resource.py (producers) and exposition.py (family headers) were measured here
too and removed: they saved nothing (docs/benchmarks.md, "What each memo is worth").

    .venv/bin/python bench/memo_caches.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from bench.otlp_receiver import metrics_payload
from exporter.memo import Memo
from exporter.otlp import naming
from exporter.otlp.state import OtlpState

ROUNDS, REPEAT = 200, 15
SITES = {
    "naming": (naming, ("_metric_names", "_label_names")),
}


def batch(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(ROUNDS):
        work()
    return (time.perf_counter() - started) / ROUNDS


def compare(site: str, work: Callable[[], object]) -> tuple[float, float]:
    """Median seconds per call with the memo and without, batches alternating so that both
    see the same machine."""
    module, names = SITES[site]
    kept = {name: getattr(module, name) for name in names}
    off: dict[str, Memo[object, object]] = {name: Memo(0, 0) for name in names}
    batch(work)  # warm-up
    with_memo, without = [], []
    try:
        for _ in range(REPEAT):
            with_memo.append(batch(work))
            for name, memo in off.items():
                setattr(module, name, memo)
            without.append(batch(work))
            for name, memo in kept.items():
                setattr(module, name, memo)
    finally:
        for name, memo in kept.items():
            setattr(module, name, memo)
    return statistics.median(with_memo), statistics.median(without)


def main() -> None:
    body, points = metrics_payload()
    request = ExportMetricsServiceRequest.FromString(body)
    state = OtlpState()
    state.apply_metrics(request)
    work = {"naming": lambda: state.apply_metrics(request)}
    print(f"{points} points per push")
    print("| memo | work | with it | without | saved per call | ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for site, call in work.items():
        with_memo, without = compare(site, call)
        print(f"| {site} | apply one push | {with_memo * 1e6:,.0f} µs | {without * 1e6:,.0f} µs "
              f"| {(without - with_memo) * 1e6:,.0f} µs | {without / with_memo:.2f}x |")


if __name__ == "__main__":
    main()
