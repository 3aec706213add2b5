"""Counters kept in process and reported by observable instruments at collection time.

`Counter.add()` through the OpenTelemetry SDK costs several microseconds (attribute checks,
hashing, a lock); an HTTP request or a cache lookup has a budget of a few (docs/benchmarks.md).
A `CounterCell` is an integer under its own lock, found once per attribute set; the SDK reads
every cell through an observable counter's callback when it collects, so the values reach any
meter provider, the application's or ours, as cumulative sums.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, Meter, Observation


class CounterCell:
    __slots__ = ("_lock", "attributes", "value")

    def __init__(self, attributes: Mapping[str, str]) -> None:
        self.attributes = dict(attributes)
        self._lock = threading.Lock()
        self.value = 0

    def add(self, amount: int = 1) -> None:
        with self._lock:
            self.value += amount


class LocalCounter:
    """One instrument's cells, keyed by the caller's own hashable key."""

    def __init__(
        self, meter: Meter, name: str, unit: str, description: str, monotonic: bool = True
    ) -> None:
        self._cells: dict[object, CounterCell] = {}
        self._lock = threading.Lock()
        create = meter.create_observable_counter if monotonic else (
            meter.create_observable_up_down_counter
        )
        create(name, [self._observe], unit, description)

    def cell(self, key: object, attributes: Mapping[str, str]) -> CounterCell:
        found = self._cells.get(key)
        if found is None:
            with self._lock:
                found = self._cells.setdefault(key, CounterCell(attributes))
        return found

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            cells = list(self._cells.values())
        return [Observation(cell.value, cell.attributes) for cell in cells]
