"""What the status page knows of each Redis target: read from the families the collector
yields as they pass through `/metrics` and `/scrape`, never by a scrape of its own (see
state.py for the one exception), and never added to `/metrics`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from exporter.exposition import Family
from exporter.status.ring import Ring, fell

HISTORY_POINTS = 120
SPACING_SECONDS = 5.0  # 120 points 5 s apart: the last 10 minutes
MAX_TARGETS = 1000
INFO_LABELS = ("role", "redis_version", "server_name", "server_version", "redis_mode")

# A point: (time, keyspace hits, keyspace misses, commands processed, evicted keys, memory used)
T, HITS, MISSES, COMMANDS, EVICTED, MEMORY = range(6)
Point = tuple[float, float, float, float, float, float]
COUNTERS = (HITS, MISSES, COMMANDS, EVICTED)

_GAUGES = {
    "redis_up": "up",
    "redis_uptime_in_seconds": "uptime",
    "redis_memory_used_bytes": "memory",
    "redis_memory_max_bytes": "maxmemory",
    "redis_connected_clients": "clients",
    "redis_keyspace_hits_total": "hits",
    "redis_keyspace_misses_total": "misses",
    "redis_commands_processed_total": "commands",
    "redis_evicted_keys_total": "evicted",
    "redis_exporter_last_scrape_duration_seconds": "duration",
}


@dataclass(slots=True)
class TargetReading:
    address: str
    seen: float = 0.0  # when a scrape of it last passed through
    up: bool = False
    changed: float = 0.0  # when it last went up or down (0: as first seen)
    values: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    latest: Point | None = None
    history: Ring[Point] = field(default_factory=lambda: Ring(HISTORY_POINTS, SPACING_SECONDS))


class RedisBoard:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.targets: dict[str, TargetReading] = {}
        self._lock = threading.Lock()

    def observe(self, families: Sequence[Family], addresses: Sequence[str],
                labelled: bool) -> None:
        """`families` of one collection of `addresses`; `labelled`: each sample carries the
        `target` label (several targets in one collection)."""
        now = self.clock()
        found: dict[str, dict[str, float]] = {}
        info: dict[str, dict[str, str]] = {}
        only = addresses[0] if addresses and not labelled else ""
        for fam in families:
            key = _GAUGES.get(fam.name)
            if key is None and fam.name != "redis_instance_info":
                continue
            for sample in fam.samples:
                labels = dict(sample.labels)
                address = labels.get("target", only) if labelled else only
                if not address:
                    continue
                if key is None:
                    info[address] = {k: labels[k] for k in INFO_LABELS if k in labels}
                else:
                    found.setdefault(address, {})[key] = sample.value
        with self._lock:
            for address, values in found.items():
                self._record(address, values, info.get(address), now)

    def _record(self, address: str, values: dict[str, float], info: dict[str, str] | None,
                now: float) -> None:
        reading = self.targets.get(address)
        if reading is None:
            if len(self.targets) >= MAX_TARGETS:
                return
            reading = self.targets[address] = TargetReading(address)
        up = values.get("up") == 1
        if (reading.seen and up != reading.up) or (not reading.seen and not up):
            reading.changed = now  # a target down when first seen is down since then
        reading.up, reading.seen = up, now
        if not up:
            reading.values = {"duration": values.get("duration", 0.0)}
            return
        reading.values = values
        if info is not None:
            reading.info = info
        point: Point = (now, values.get("hits", 0.0), values.get("misses", 0.0),
                        values.get("commands", 0.0), values.get("evicted", 0.0),
                        values.get("memory", 0.0))
        if reading.latest is not None and fell(reading.latest, point, COUNTERS):
            reading.history.points.clear()  # Redis restarted: its history starts again
        reading.latest = point
        reading.history.add(point)

    def readings(self) -> list[TargetReading]:
        with self._lock:
            return list(self.targets.values())
