"""Plain INFO fields -> one family each, named and typed as in metric_table."""

from __future__ import annotations

from exporter.exposition import Family
from exporter.redis.fields import info_families
from exporter.redis.parse import parse_info
from tests.redis.scraping import reference_info


def values(families: list[Family]) -> dict[str, tuple[str, float]]:
    out = {}
    for fam in families:
        assert len(fam.samples) == 1 and fam.samples[0].labels == ()
        out[fam.name] = (fam.type, fam.samples[0].value)
    return out


def test_reference_master_fields() -> None:
    got = values(info_families(reference_info()))
    assert got["redis_memory_used_bytes"] == ("gauge", 29951720)
    assert got["redis_memory_max_bytes"] == ("gauge", 0)
    assert got["redis_connections_received_total"] == ("counter", 206)
    assert got["redis_keyspace_hits_total"] == ("counter", 407)
    assert got["redis_cpu_user_seconds_total"] == ("counter", 2.384216)
    assert got["redis_total_error_replies"] == ("counter", 57)
    assert got["redis_mem_fragmentation_ratio"] == ("gauge", 1.24)
    assert got["redis_replica_resyncs_full"] == ("gauge", 1)
    assert got["redis_cluster_enabled"] == ("gauge", 0)
    assert got["redis_aof_current_rewrite_duration_sec"] == ("gauge", -1)


def test_statuses_become_1_or_0() -> None:
    got = values(info_families(reference_info()))
    assert got["redis_rdb_last_bgsave_status"] == ("gauge", 1)
    assert got["redis_aof_last_write_status"] == ("gauge", 1)
    failed = parse_info("# Persistence\r\nrdb_last_bgsave_status:err\r\n"
                        "aof_last_bgrewrite_status:err\r\n")
    assert values(info_families(failed)) == {"redis_rdb_last_bgsave_status": ("gauge", 0),
                                              "redis_aof_last_bgrewrite_status": ("gauge", 0)}


def test_units_converted() -> None:
    got = values(info_families(reference_info()))
    assert got["redis_latest_fork_seconds"] == ("gauge", 0.000566)
    assert "redis_latest_fork_usec" not in got


def test_total_suffixed_counters_are_counters() -> None:
    got = values(info_families(reference_info()))
    assert got["redis_expired_time_cap_reached_total"][0] == "counter"
    # A gauge in Redis (sockets open now): the name is redis_exporter's, the type stays gauge.
    assert got["redis_migrate_cached_sockets_total"][0] == "gauge"


def test_structured_and_unknown_fields_are_not_plain_families() -> None:
    got = values(info_families(reference_info()))
    for name in got:
        assert not name.startswith(("redis_cmdstat", "redis_errorstat", "redis_latency_perc",
                                    "redis_db", "redis_slave0", "redis_master_host"))
    assert "redis_instantaneous_ops_per_sec" not in got  # not exported by redis_exporter 1.45
    assert "redis_maxmemory_policy" not in got  # text: a label of redis_instance_info


def test_unparseable_values_are_skipped() -> None:
    info = parse_info("# Memory\r\nused_memory:lots\r\nused_memory_rss:10\r\n")
    assert values(info_families(info)) == {"redis_memory_used_rss_bytes": ("gauge", 10)}
