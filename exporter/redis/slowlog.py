"""SLOWLOG LEN and SLOWLOG GET 1: the slow log's length, its latest id and that entry's time."""

from __future__ import annotations

from typing import Any

from exporter.exposition import Family
from exporter.redis.metric_table import FAMILIES

LENGTH = FAMILIES["redis_slowlog_length"]
LAST_ID = FAMILIES["redis_slowlog_last_id"]
LAST_DURATION = FAMILIES["redis_last_slow_execution_duration_seconds"]


def slowlog_families(length_reply: Any, latest_reply: Any) -> list[Family]:
    """Replies that are errors (or of an unexpected shape) yield no family. An empty slow log
    reports id 0 and duration 0, as redis_exporter does."""
    out: list[Family] = []
    if isinstance(length_reply, int):
        fam = LENGTH.family()
        fam.add(float(length_reply))
        out.append(fam)
    if isinstance(latest_reply, list):
        last_id, duration_usec = 0, 0
        entry = latest_reply[0] if latest_reply else None
        if (isinstance(entry, list) and len(entry) > 2 and isinstance(entry[0], int)
                and isinstance(entry[2], int)):
            last_id, duration_usec = entry[0], entry[2]
        last, duration = LAST_ID.family(), LAST_DURATION.family()
        last.add(float(last_id))
        duration.add(duration_usec / 1e6)
        out += (last, duration)
    return out
