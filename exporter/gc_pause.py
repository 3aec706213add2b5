"""The cyclic garbage collector paused while a large /metrics body is built.

Building the body of 14,200 OTLP series allocates some 300,000 short-lived tuples and samples;
each burst of allocations sets off the collector, whose full collections walk every object the
sidecar holds (the OTLP store), so it took 0.33 s of a 0.42 s collection
(bench/render_metrics.py). The body's objects form no cycles and are freed by reference
counting when the response is sent; the collector runs on as usual afterwards. The collector is
process-wide, so the pause is too: one instance, counting the bodies being built at once.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class GcPause:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._resume = False

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            self._holders += 1
            if self._holders == 1:
                self._resume = gc.isenabled()  # an app that disabled it keeps it disabled
                gc.disable()
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0 and self._resume:
                    gc.enable()


GC_PAUSE = GcPause()
