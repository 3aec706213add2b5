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
    latest = _latest(latest_reply)
    if latest is not None:
        last, duration = LAST_ID.family(), LAST_DURATION.family()
        last.add(float(latest[0]))
        duration.add(latest[1] / 1e6)
        out += (last, duration)
    return out


def _latest(reply: Any) -> tuple[int, int] | None:
    """(id, microseconds) of the newest entry; (0, 0) for an empty slow log."""
    if not isinstance(reply, list):
        return None
    if not reply:
        return 0, 0
    entry = reply[0]
    if (isinstance(entry, list) and len(entry) > 2 and isinstance(entry[0], int)
            and isinstance(entry[2], int)):
        return entry[0], entry[2]
    return None
