"""CONFIG GET maxmemory maxclients io-threads -> redis_config_* gauges.

An error reply (CONFIG renamed away, or forbidden by a managed Redis or an ACL) yields nothing.
"""

from __future__ import annotations

from typing import Any

from exporter.exposition import Family
from exporter.redis.metric_table import FAMILIES

PARAMETERS = ("maxmemory", "maxclients", "io-threads")
SPECS = {p: FAMILIES["redis_config_" + p.replace("-", "_")] for p in PARAMETERS}


def config_families(reply: Any) -> list[Family]:
    if isinstance(reply, dict):  # RESP3
        pairs = list(reply.items())
    elif isinstance(reply, list):  # RESP2: name, value, name, value...
        pairs = list(zip(reply[::2], reply[1::2], strict=False))
    else:
        return []
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
