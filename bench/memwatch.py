"""Run the sidecar with a thread that records where its memory is, for long benches.

    python bench/memwatch.py OUT.jsonl [--every S] [--tracemalloc DIR] -- <exporter flags>

Every `--every` seconds one JSON line goes to OUT.jsonl: resident memory (VmRSS), glibc's heap
(mallinfo2: bytes in use, free in the heap, in mmapped chunks, arena bytes), CPython's
allocated blocks, the garbage collector's counts and collections per generation, threads and
open file descriptors. With `--tracemalloc DIR` Python allocations are traced (one frame) and
a snapshot is dumped to DIR at each sample, to compare two moments offline:

    python -c "import tracemalloc as t; a=t.Snapshot.load('A'); b=t.Snapshot.load('B');
               print(*b.compare_to(a, 'lineno')[:20], sep='\\n')"

A bench tool: the sidecar as deployed does not load it.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def mallinfo() -> dict[str, int]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {"heap_arena_kib": info.arena // 1024, "heap_in_use_kib": info.uordblks // 1024,
            "heap_free_kib": info.fordblks // 1024, "heap_mmap_kib": info.hblkhd // 1024,
            "heap_top_free_kib": info.keepcost // 1024}


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sample(started: float) -> dict[str, object]:
    stats = gc.get_stats()
    return {"t": round(time.monotonic() - started, 1), "rss_kib": rss_kib(), **mallinfo(),
            "py_blocks": sys.getallocatedblocks(),
            "traced_kib": tracemalloc.get_traced_memory()[0] // 1024
            if tracemalloc.is_tracing() else None,
            "gc_count": gc.get_count(), "gc_collections": [s["collections"] for s in stats],
            "threads": threading.active_count(), "fds": len(os.listdir("/proc/self/fd"))}


def watch(out: Path, every: float, snapshots: Path | None) -> None:
    started = time.monotonic()
    with out.open("a") as f:
        while True:
            time.sleep(every)
            record = sample(started)
            at = int(time.monotonic() - started)
            f.write(json.dumps(record) + "\n")
            f.flush()
            if snapshots is not None:
                tracemalloc.take_snapshot().dump(str(snapshots / f"t{at:05d}.snap"))


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--every", type=float, default=30.0)
    parser.add_argument("--tracemalloc", type=Path)
    args = parser.parse_args(argv[:split])
    if args.tracemalloc is not None:
        args.tracemalloc.mkdir(parents=True, exist_ok=True)
        tracemalloc.start(1)
    threading.Thread(target=watch, args=(args.out, args.every, args.tracemalloc),
                     daemon=True, name="memwatch").start()
    sys.argv = ["exporter", *argv[split + 1:]]
    runpy.run_module("exporter", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
