"""The Server section's identity: redis_instance_info and redis_start_time_seconds."""

from __future__ import annotations

import time

from exporter.exposition import Family
from exporter.redis.info import Info
from exporter.redis.metric_table import FAMILIES

INSTANCE_INFO = FAMILIES["redis_instance_info"]
START_TIME = FAMILIES["redis_start_time_seconds"]

# Each label is the INFO field of the same name, in this section. A sentinel has no role nor
# maxmemory_policy: those labels are then "", as in redis_exporter.
_LABEL_SECTIONS = {"role": "replication", "maxmemory_policy": "memory"}
_LABELS = tuple((label, _LABEL_SECTIONS.get(label, "server")) for label in INSTANCE_INFO.labels)


def instance_families(info: Info) -> list[Family]:
    empty: dict[str, str] = {}
    fam = INSTANCE_INFO.family()
    fam.add(1.0, tuple((label, info.get(section, empty).get(label, ""))
                       for label, section in _LABELS))
    out = [fam]
    start = start_time(info.get("server", empty))
    if start is not None:
        started = START_TIME.family()
        started.add(start)
        out.append(started)
    return out


def start_time(server: dict[str, str]) -> float | None:
    """Redis's own start time: its clock (`server_time_usec`, whole seconds) minus its uptime.
    redis_exporter subtracts the uptime from the exporter's clock, so its value jitters by a
    second between scrapes; this one is constant for the life of the server."""
    try:
        uptime = int(server["uptime_in_seconds"])
    except (KeyError, ValueError):
        return None
    try:
        now = int(server["server_time_usec"]) // 1_000_000
    except (KeyError, ValueError):
        now = int(time.time())
    return float(now - uptime)
