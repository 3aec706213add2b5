"""The Keyspace section: `db0:keys=253,expires=50,avg_ttl=3586097` -> per-db key gauges.

Only databases the section lists get series (redis_exporter 1.45 zero-fills all 16).
"""

from __future__ import annotations

from exporter.exposition import Family, Sample
from exporter.redis.metric_table import FAMILIES
from exporter.redis.parse import Info, parse_pairs

DB_KEYS = FAMILIES["redis_db_keys"]
DB_KEYS_EXPIRING = FAMILIES["redis_db_keys_expiring"]
DB_AVG_TTL = FAMILIES["redis_db_avg_ttl_seconds"]
DB_KEYS_CACHED = FAMILIES["redis_db_keys_cached"]


def keyspace_families(info: Info) -> list[Family]:
    section = info.get("keyspace")
    if not section:
        return []
    keys, expiring, ttl, cached = (DB_KEYS.family(), DB_KEYS_EXPIRING.family(),
                                   DB_AVG_TTL.family(), DB_KEYS_CACHED.family())
    for db, raw in section.items():
        if not db.startswith("db"):
            continue
        stats = parse_pairs(raw)
        try:
            n_keys = float(stats["keys"])
            n_expiring = float(stats["expires"])
            avg_ttl_ms = float(stats["avg_ttl"]) if "avg_ttl" in stats else None
            n_cached = float(stats["cached_keys"]) if "cached_keys" in stats else None
        except (KeyError, ValueError):
            continue
        labels = DB_KEYS.labels_of(db)
        keys.samples.append(Sample("", labels, n_keys))
        expiring.samples.append(Sample("", labels, n_expiring))
        if avg_ttl_ms is not None:
            ttl.samples.append(Sample("", labels, avg_ttl_ms / 1000.0))
        if n_cached is not None:
            cached.samples.append(Sample("", labels, n_cached))
    return [fam for fam in (keys, expiring, ttl, cached) if fam.samples]
