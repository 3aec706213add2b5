"""LATENCY LATEST: per event, when its latest spike happened and how long it lasted.

Each entry is `[event, unix_time, latest_ms, max_ms]`.
"""

from __future__ import annotations

from typing import Any

from exporter.exposition import Family
from exporter.redis.metric_table import FAMILIES

SPIKE_LAST = FAMILIES["redis_latency_spike_last"]
SPIKE_DURATION = FAMILIES["redis_latency_spike_duration_seconds"]


def latency_families(reply: Any) -> list[Family]:
    if not isinstance(reply, list) or not reply:
        return []
    last, duration = SPIKE_LAST.family(), SPIKE_DURATION.family()
    for entry in reply:
        if not (isinstance(entry, list) and len(entry) >= 3 and isinstance(entry[0], str)):
            continue
        when, latest_ms = entry[1], entry[2]
        if isinstance(when, int) and isinstance(latest_ms, int):
            labels = SPIKE_LAST.labels_of(entry[0])
            last.add(float(when), labels)
            duration.add(latest_ms / 1e3, labels)
    return [fam for fam in (last, duration) if fam.samples]
