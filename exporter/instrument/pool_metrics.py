"""The `db.client.connection.*` instruments, shared by SQLAlchemy and redis-py pools.

Counts are observed at collection time from each registered pool probe, so they cannot drift.
Timeouts and pending requests are plain integers the probes keep; the three time histograms are
sinks (see histograms.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from exporter import semconv
from exporter.instrument.histograms import Cell, HistogramSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolCounts:
    used: int
    idle: int | None = None
    max: int | None = None
    idle_max: int | None = None
    idle_min: int | None = None


class PoolState:
    """What one instrumented pool measures itself: pending checkouts, timeouts, three timings."""

    def __init__(
        self, attributes: Mapping[str, str], wait: Cell, create: Cell, use: Cell
    ) -> None:
        self.attributes = dict(attributes)
        self.wait, self.create, self.use = wait, create, use
        self.active = True
        self._lock = threading.Lock()
        self._pending = 0
        self._timeouts = 0

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def timeouts(self) -> int:
        return self._timeouts

    def enter(self) -> None:
        with self._lock:
            self._pending += 1

    def leave(self) -> None:
        with self._lock:
            self._pending -= 1

    def timed_out(self) -> None:
        with self._lock:
            self._timeouts += 1


class PoolProbe(Protocol):
    """One instrumented pool: its own measurements and a reading of its counts."""

    state: PoolState

    def counts(self) -> PoolCounts | None: ...


class PoolInstruments:
    """Observable pool instruments on one meter, reading every probe registered with them."""

    def __init__(self, meter: Meter, wait: HistogramSink, create: HistogramSink,
                 use: HistogramSink) -> None:
        self.wait, self.create, self.use = wait, create, use
        self._probes: dict[int, PoolProbe] = {}
        self._lock = threading.Lock()
        connections = "{connection}"
        meter.create_observable_up_down_counter(
            semconv.CONNECTION_COUNT, [self._count], connections,
            "The number of connections that are currently in the state of the state attribute",
        )
        meter.create_observable_up_down_counter(
            semconv.CONNECTION_MAX, [self._gauge("max")], connections,
            "The maximum number of open connections allowed",
        )
        meter.create_observable_up_down_counter(
            semconv.CONNECTION_IDLE_MAX, [self._gauge("idle_max")], connections,
            "The maximum number of idle open connections allowed",
        )
        meter.create_observable_up_down_counter(
            semconv.CONNECTION_IDLE_MIN, [self._gauge("idle_min")], connections,
            "The minimum number of idle open connections allowed",
        )
        meter.create_observable_up_down_counter(
            semconv.CONNECTION_PENDING_REQUESTS, [self._pending], "{request}",
            "The number of current pending requests for an open connection",
        )
        meter.create_observable_counter(
            semconv.CONNECTION_TIMEOUTS, [self._timeouts], "{timeout}",
            "The number of connection timeouts that have occurred trying to obtain a connection "
            "from the pool",
        )

    def state(self, attributes: Mapping[str, str]) -> PoolState:
        return PoolState(
            attributes,
            wait=self.wait.cell(attributes),
            create=self.create.cell(attributes),
            use=self.use.cell(attributes),
        )

    def unique_name(self, name: str) -> str:
        """`name`, or `name#2`, `name#3`... if a registered pool already uses it."""
        with self._lock:
            taken = {p.state.attributes[semconv.POOL_NAME] for p in self._probes.values()}
        candidate, number = name, 1
        while candidate in taken:
            number += 1
            candidate = f"{name}#{number}"
        return candidate

    def register(self, probe: PoolProbe) -> None:
        with self._lock:
            self._probes[id(probe)] = probe

    def unregister(self, probe: PoolProbe) -> None:
        with self._lock:
            self._probes.pop(id(probe), None)

    def _snapshot(self) -> list[PoolProbe]:
        with self._lock:
            return list(self._probes.values())

    def _counts(self) -> Iterator[tuple[PoolProbe, PoolCounts]]:
        for probe in self._snapshot():
            try:
                counts = probe.counts()
            except Exception:  # one broken pool must not hide the others
                log.debug("reading pool %s failed", probe.state.attributes, exc_info=True)
                continue
            if counts is not None:
                yield probe, counts

    def _count(self, options: CallbackOptions) -> Iterable[Observation]:
        key = semconv.CONNECTION_STATE
        for probe, counts in self._counts():
            attributes = probe.state.attributes
            yield Observation(counts.used, {**attributes, key: semconv.STATE_USED})
            if counts.idle is not None:
                yield Observation(counts.idle, {**attributes, key: semconv.STATE_IDLE})

    def _gauge(self, field_name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for probe, counts in self._counts():
                value = getattr(counts, field_name)
                if value is not None:
                    yield Observation(value, dict(probe.state.attributes))

        return observe

    def _pending(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(p.state.pending, dict(p.state.attributes)) for p in self._snapshot()]

    def _timeouts(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(p.state.timeouts, dict(p.state.attributes)) for p in self._snapshot()]
