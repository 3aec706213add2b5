"""Cost of one app-cache record: `recorder.hit("memory")`, and `recorder.read_through(...)` over
dict-backed get/set against the same read-through without instrumentation, beside the
OpenTelemetry SDK's `Counter.add()` with the same attributes, in one run.

    .venv/bin/python bench/cache_record.py [--rounds 100] [--calls 20000]

The recorder comes from `instrument(metric_exporter=...)` (our MeterProvider; the exporter
discards). The SDK counter belongs to an SDK MeterProvider with a periodic reader (10 s, an
exporter that discards) and is given the attributes ours records, as one prebuilt dict.

Loops, each `--calls` long: an empty loop (the baseline of `hit` and `Counter.add`), `hit`, the
SDK's `Counter.add`; `read_through` on a hit (the key is in the dict) and on a miss (the get reads
a dict that never holds the key, the set writes into another dict, `load` returns a constant),
each beside a plain read-through function with the same logic and no recording (its baseline). In
each round every loop runs once, in an order shuffled per round; the garbage collector runs once
per round, outside the timed loops, and is off during them. "added" is the median over rounds of
(loop - the same round's baseline loop), per call, in process CPU time. Then what `hit()` does is
timed piece by piece, in isolation.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import random
import statistics
import threading
import time
import timeit
from collections.abc import Callable
from typing import Any

from discard import DiscardMetrics, DiscardSpans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    PeriodicExportingMetricReader,
)

from exporter.instrument import instrument
from exporter.instrument.cache import CacheMetrics


def plain_read_through(
    key: Any, load: Callable[[], Any], *, get: Callable[[Any], Any],
    set: Callable[[Any, Any, float | None], Any], ttl: float | None = None,
) -> Any:
    """`CacheMetrics.read_through` without the recording: the code an uninstrumented cache runs."""
    try:
        cached = get(key)
    except Exception:
        cached = None
    if cached is not None:
        return cached
    value = load()
    try:  # noqa: SIM105 (as read_through does; contextlib.suppress would cost more)
        set(key, value, ttl)
    except Exception:
        pass
    return value


HITS = {"trade:42": "cached"}
NEVER: dict[str, str] = {}
WRITTEN: dict[str, Any] = {}


def load() -> str:
    return "loaded"


def set_hits(key: str, value: Any, ttl: float | None) -> None:
    HITS[key] = value


def set_written(key: str, value: Any, ttl: float | None) -> None:
    WRITTEN[key] = value


def loops(recorder: CacheMetrics, counter: Any) -> dict[str, tuple[str, Callable[[int], None]]]:
    """name: (baseline name, loop of n calls)."""
    attributes = {"cache.name": "trades", "cache.layer": "memory", "cache.result": "hit"}
    hits_get, never_get = HITS.get, NEVER.get

    def empty(n: int) -> None:
        for _ in range(n):
            pass

    def hit(n: int) -> None:
        for _ in range(n):
            recorder.hit("memory")

    def sdk_add(n: int) -> None:
        for _ in range(n):
            counter.add(1, attributes)

    def plain_hit(n: int) -> None:
        for _ in range(n):
            plain_read_through("trade:42", load, get=hits_get, set=set_hits, ttl=300)

    def ours_hit(n: int) -> None:
        for _ in range(n):
            recorder.read_through("trade:42", load, get=hits_get, set=set_hits, ttl=300,
                                  layer="memory")

    def plain_miss(n: int) -> None:
        for _ in range(n):
            plain_read_through("trade:42", load, get=never_get, set=set_written, ttl=300)

    def ours_miss(n: int) -> None:
        for _ in range(n):
            recorder.read_through("trade:42", load, get=never_get, set=set_written, ttl=300,
                                  layer="memory")

    return {
        "empty loop": ("empty loop", empty),
        'recorder.hit("memory")': ("empty loop", hit),
        "OTel SDK Counter.add(1, attributes)": ("empty loop", sdk_add),
        "read_through hit, no instrumentation": ("read_through hit, no instrumentation",
                                                 plain_hit),
        "recorder.read_through hit": ("read_through hit, no instrumentation", ours_hit),
        "read_through miss, no instrumentation": ("read_through miss, no instrumentation",
                                                  plain_miss),
        "recorder.read_through miss (miss + put)": ("read_through miss, no instrumentation",
                                                    ours_miss),
    }


def run(rounds: int, calls: int) -> dict[str, tuple[float, float, float, float]]:
    """Per loop: median CPU seconds per call, and the 25th, 50th and 75th percentiles over rounds
    of the time added per call to the same round's baseline loop."""
    handle = instrument(metric_exporter=DiscardMetrics(), span_exporter=DiscardSpans())
    recorder = handle.cache("trades")
    provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(DiscardMetrics(), 10_000)]
    )
    counter = provider.get_meter("bench").create_counter("cache.gets")
    found = loops(recorder, counter)
    for _, loop in found.values():
        loop(calls)  # warm up: cells found, code paths taken
    samples: dict[str, list[float]] = {name: [] for name in found}
    order = list(found)
    shuffle = random.Random(11).shuffle
    try:
        for _ in range(rounds):
            shuffle(order)
            gc.collect()
            gc.disable()
            for name in order:
                started = time.process_time()
                found[name][1](calls)
                samples[name].append((time.process_time() - started) / calls)
            gc.enable()
    finally:
        gc.enable()
    check(handle, recorder, rounds, calls)
    results = {}
    for name, (base, _) in found.items():
        diffs = [v - b for v, b in zip(samples[name], samples[base], strict=True)]
        low, _, high = statistics.quantiles(diffs, n=4)
        results[name] = (statistics.median(samples[name]), low, statistics.median(diffs), high)
    return results


def check(handle: Any, recorder: CacheMetrics, rounds: int, calls: int) -> None:
    """Every call was counted: hits from `hit` and read_through hits, misses and puts."""
    gets = handle.telemetry.meters.cache.gets
    values = {tuple(sorted(c.attributes.items())): c.value for c in gets._cells.values()}
    each = (rounds + 1) * calls
    hits = values[(("cache.layer", "memory"), ("cache.name", "trades"), ("cache.result", "hit"))]
    misses = values[(("cache.layer", "memory"), ("cache.name", "trades"),
                     ("cache.result", "miss"))]
    if (hits, misses) != (2 * each, each):
        raise SystemExit(f"counted {hits} hits and {misses} misses, expected {2 * each}, {each}")


def pieces(calls: int = 500_000) -> dict[str, float]:
    """CPU seconds per call of what `recorder.hit()` does, in isolation (`timeit`, garbage
    collector off, median of 5 repeats, minus the same loop running `pass`); and
    `next(itertools.count())`, a counter increment that needs no lock under the GIL."""
    handle = instrument(metric_exporter=DiscardMetrics(), span_exporter=DiscardSpans())
    recorder = handle.cache("trades")
    recorder.hit("memory")
    names = {
        "recorder": recorder, "cell": recorder._cell("gets", "memory", "hit"),
        "lock": threading.Lock(), "count": itertools.count(),
    }
    statements = {
        "pass": "pass",
        'recorder.hit("memory")': "recorder.hit('memory')",
        "  recorder._cell(...): the cell lookup": "recorder._cell('gets', 'memory', 'hit')",
        "  cell.add(): a step of one, next() on an itertools.count": "cell.add()",
        "    of which `with lock: pass`": "with lock: pass",
        "next(itertools.count()), for scale": "next(count)",
    }
    timings = {
        name: statistics.median(timeit.repeat(statement, timer=time.process_time, number=calls,
                                              repeat=5, globals=names)) / calls
        for name, statement in statements.items()
    }
    empty = timings.pop("pass")
    return {name: seconds - empty for name, seconds in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    results = run(args.rounds, args.calls)
    print(f"{args.rounds} rounds x {args.calls} calls per loop; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    print(f"{'loop':42} {'cpu us/call':>11} {'added us':>9} {'p25..p75 added':>15}")
    for name, (cpu, low, mid, high) in results.items():
        print(f"{name:42} {cpu * 1e6:11.3f} {mid * 1e6:9.3f} "
              f"{f'{low * 1e6:.3f}..{high * 1e6:.3f}':>15}")
    ours, sdk = results['recorder.hit("memory")'][2], results[
        "OTel SDK Counter.add(1, attributes)"][2]
    if ours > 0:
        print(f"OTel SDK Counter.add costs {sdk / ours:.1f}x what recorder.hit costs")
    print("What recorder.hit() does, per call in isolation (CPU us, minus an empty timeit loop):")
    for name, seconds in pieces().items():
        print(f"  {name:42} {seconds * 1e6:6.3f}")


if __name__ == "__main__":
    main()
