"""CONFIG GET maxmemory maxclients io-threads -> redis_config_* gauges.

An error reply (CONFIG renamed away, or forbidden by a managed Redis or an ACL) yields nothing.
"""

from __future__ import annotations

from typing import Any

from exporter.exposition import Family
from exporter.redis.metric_table import FAMILIES

SPECS = {
    "maxmemory": FAMILIES["redis_config_maxmemory"],
    "maxclients": FAMILIES["redis_config_maxclients"],
    "io-threads": FAMILIES["redis_config_io_threads"],
}
PARAMETERS = tuple(SPECS)


def config_families(reply: Any) -> list[Family]:
    if not isinstance(reply, list):  # name, value, name, value... (the connection is RESP2)
        return []
    pairs = zip(reply[::2], reply[1::2], strict=False)
    out: list[Family] = []
    for name, raw in pairs:
        spec = SPECS.get(name)
        if spec is None:
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            continue
        fam = spec.family()
        fam.add(value)
        out.append(fam)
    return out
