"""CLUSTER INFO on a cluster node: cluster_state, slot counts, epochs and bus message counts.

Its fields translate like INFO's plain fields (`cluster_state:ok` -> 1); any other `cluster_*`
field is exported under its own name as a gauge, as redis_exporter does.
"""

from __future__ import annotations

from typing import Any

from exporter.exposition import Family
from exporter.redis.fields import field_families
from exporter.redis.parse import parse_info


def cluster_families(reply: Any) -> list[Family]:
    if not isinstance(reply, str):
        return []
    out: list[Family] = []
    for fields in parse_info(reply).values():
        field_families(fields, out)
    return out
