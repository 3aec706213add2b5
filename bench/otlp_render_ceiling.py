"""/metrics at the OTLP size budget: fill a store until `max_exposition_bytes` refuses, then time
collection, rendering and gzip. Two shapes: many short-labelled histograms (most lines per byte,
the slowest to render) and series with 64 labels of 1,000 characters (fewest lines).

    .venv/bin/python bench/otlp_render_ceiling.py [MiB]    # default: the configured default
"""

from __future__ import annotations

import gzip
import sys
import time

from exporter.exposition import render
from exporter.limits import OtlpLimits
from exporter.otlp.store import SeriesStore

BOUNDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10)


def _store(budget: int) -> SeriesStore:
    store = SeriesStore(10**9, 10**9, 10**6, 300.0, max_bytes=budget)
    store.tick()
    return store


def histograms(budget: int) -> tuple[SeriesStore, int]:
    store = _store(budget)
    les = store.bucket_labels(BOUNDS)
    assert les is not None
    n = 0
    while True:
        fam = store.family(f"m{n // 2000}_seconds", "histogram", "h")
        assert fam is not None
        labels = (("http_method", "GET"), ("http_route", f"/r/{n}"),
                  ("service_instance_id", "abc"), ("service_name", "svc"), ("status", "200"))
        if not store.put_histogram(fam, labels, les, [1] * 10, 10, 1.5, 0, False):
            return store, n
        n += 1


def wide(budget: int) -> tuple[SeriesStore, int]:
    store = _store(budget)
    n = 0
    while True:
        fam = store.family(f"g{n // 100}", "gauge", "g")
        assert fam is not None
        labels = tuple((f"k{j:02}", f"{n}-" + "v" * 1000) for j in range(64))
        if not store.put_number(fam, labels, n, 0, False):
            return store, n
        n += 1


def main() -> None:
    mib = float(sys.argv[1]) if len(sys.argv) > 1 else OtlpLimits().max_exposition_bytes / 2**20
    budget = int(mib * 2**20)
    print(f"budget {mib:g} MiB")
    for shape, fill in (("short-labelled histograms", histograms), ("64 x 1 KB labels", wide)):
        store, n = fill(budget)
        t0 = time.perf_counter()
        families = store.collect()
        t1 = time.perf_counter()
        body = render(families)
        t2 = time.perf_counter()
        gzip.compress(body, compresslevel=1, mtime=0)
        t3 = time.perf_counter()
        print(f"{shape}: {n} series, body {len(body) / 2**20:.1f} MiB, collect {t1 - t0:.3f} s, "
              f"render {t2 - t1:.3f} s, gzip {t3 - t2:.3f} s, total {t3 - t0:.3f} s")


if __name__ == "__main__":
    main()
