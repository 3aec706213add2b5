"""Plain INFO fields (and CLUSTER INFO fields): one unlabelled sample each, per `metric_table`."""

from __future__ import annotations

from exporter.exposition import Family, Sample
from exporter.redis.metric_table import BY_FIELD, GENERIC_CLUSTER_PREFIX, generic_cluster_field
from exporter.redis.parse import Fields, Info, to_number

# Sections whose fields are structured; their own modules translate them.
STRUCTURED_SECTIONS = frozenset(
    {"commandstats", "errorstats", "latencystats", "keyspace", "sentinel", "modules"}
)

_NO_LABELS = ()


def field_families(fields: Fields, out: list[Family]) -> None:
    """Append a family for every field of `fields` that the table (or the cluster_ rule) knows."""
    table_get = BY_FIELD.get
    for key, raw in fields.items():
        metric = table_get(key)
        if metric is None:
            if not key.startswith(GENERIC_CLUSTER_PREFIX):
                continue
            metric = generic_cluster_field(key)
            if metric is None:
                continue
        value = to_number(raw)
        if value is None:
            continue
        out.append(Family(metric.name, metric.type, metric.help,
                          [Sample("", _NO_LABELS, value / metric.divisor)]))


def info_families(info: Info) -> list[Family]:
    out: list[Family] = []
    for section, fields in info.items():
        if section not in STRUCTURED_SECTIONS:
            field_families(fields, out)
    return out
