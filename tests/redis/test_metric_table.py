"""The metric table: well-formed names and types, and docs/metrics.md in step with it."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.redis.metric_table import FAMILIES, INFO_FIELDS, generic_cluster_field
from tests.support.prom_compare import COMPATIBILITY_NAMES, NOT_EMITTED, TYPE_CORRECTIONS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
NAME = re.compile(r"^redis_[a-z0-9_]+$")
ALL = [(m.name, m.type) for m in INFO_FIELDS] + [(s.name, s.type) for s in FAMILIES.values()]


def test_names_are_unique_and_well_formed() -> None:
    names = [name for name, _ in ALL]
    assert len(names) == len(set(names))
    assert len({m.field for m in INFO_FIELDS}) == len(INFO_FIELDS)
    assert all(NAME.match(name) for name in names)


def test_only_compatibility_names_break_the_total_suffix_rule() -> None:
    for name, kind in ALL:
        if (kind == "counter") != name.endswith("_total"):
            assert name in COMPATIBILITY_NAMES, name


def test_corrected_types() -> None:
    types = dict(ALL)
    for name, (_, ours) in TYPE_CORRECTIONS.items():
        assert types[name] == ours


def test_generic_cluster_fields() -> None:
    metric = generic_cluster_field("cluster_stats_messages_ping_sent")
    assert metric is not None
    assert (metric.name, metric.type) == ("redis_cluster_stats_messages_ping_sent", "gauge")
    dashed = generic_cluster_field("cluster_stats_messages_auth-req_sent")
    assert dashed is not None and dashed.name == "redis_cluster_stats_messages_auth_req_sent"
    assert generic_cluster_field("cluster_bad name") is None
    assert generic_cluster_field("cluster_label{x=\"y\"}") is None


def test_docs_list_every_family_with_its_type() -> None:
    docs = DOCS.read_text()
    for name, kind in ALL:
        assert re.search(rf"^\| `{name}` \| {kind} \|", docs, re.M), name


def test_docs_list_deviations_and_compatibility_names() -> None:
    docs = DOCS.read_text()
    deviations = docs.split("## Deviations from redis_exporter 1.45", 1)[1]
    deviations, compatibility = deviations.split("## Compatibility names", 1)
    for name in [*TYPE_CORRECTIONS, *NOT_EMITTED, "redis_latency_percentiles_usec",
                 "redis_db_keys", "redis_sentinel_master_ckquorum_status"]:
        assert f"`{name}`" in deviations, name
    for name in COMPATIBILITY_NAMES:
        assert re.search(rf"^\| `{name}` \|", compatibility, re.M), name


REFERENCE_FIELDS = Path(__file__).parent / "data" / "redis_exporter-1.45" / "info-fields.txt"
# Tile38's fields come from its SERVER command with redis_exporter's --is-tile38, not built here
# (docs/metrics.md, Not exported).
NOT_BUILT_PREFIX = "tile38_"


def test_every_info_field_redis_exporter_exports_is_exported_alike() -> None:
    """The INFO fields redis_exporter 1.45 exports as plain gauges and counters (Redis 2.8 to
    7.x, Valkey, KeyDB; its own tables, tests/redis/data/README.md): each is in ours with its
    name and type, save the type corrections of deviation 1."""
    ours = {m.field: (m.name, m.type) for m in INFO_FIELDS}
    rows = [line.split("\t") for line in REFERENCE_FIELDS.read_text().splitlines()
            if line and not line.startswith("#")]
    assert len(rows) > 100
    for field, name, kind in rows:
        if field.startswith(NOT_BUILT_PREFIX):
            continue
        want = TYPE_CORRECTIONS.get("redis_" + name, (kind, kind))[1]
        assert ours.get(field) == ("redis_" + name, want), field
