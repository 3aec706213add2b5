"""CLUSTER INFO -> redis_cluster_* families."""

from __future__ import annotations

from exporter.redis.cluster import cluster_families
from tests.redis.scraping import by_name, scrape
from tests.support.redis_servers import RedisServer

CLUSTER_INFO = (
    "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n"
    "cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:3\r\ncluster_size:3\r\n"
    "cluster_current_epoch:3\r\ncluster_my_epoch:1\r\ncluster_stats_messages_ping_sent:9\r\n"
    "cluster_stats_messages_pong_sent:10\r\ncluster_stats_messages_sent:19\r\n"
    "cluster_stats_messages_meet_received:2\r\ncluster_stats_messages_received:19\r\n"
    "total_cluster_links_buffer_limit_exceeded:0\r\n"
)


def test_cluster_info() -> None:
    fams = by_name(cluster_families(CLUSTER_INFO))
    got = {name: (fam.type, fam.samples[0].value) for name, fam in fams.items()}
    assert got["redis_cluster_state"] == ("gauge", 1)
    assert got["redis_cluster_slots_ok"] == ("gauge", 16384)
    assert got["redis_cluster_my_epoch"] == ("gauge", 1)
    assert got["redis_cluster_messages_sent_total"] == ("counter", 19)
    assert got["redis_cluster_messages_received_total"] == ("counter", 19)
    assert got["redis_cluster_stats_messages_ping_sent"] == ("gauge", 9)
    assert got["redis_cluster_stats_messages_meet_received"] == ("gauge", 2)
    assert "redis_total_cluster_links_buffer_limit_exceeded" not in got
    assert len(got) == 14


def test_failed_cluster_and_error_replies() -> None:
    fams = by_name(cluster_families("cluster_state:fail\r\ncluster_weird-field:1\r\n"
                                    "cluster_bad field:1\r\ncluster_é:1\r\n"))
    assert list(fams) == ["redis_cluster_state", "redis_cluster_weird_field"]
    assert fams["redis_cluster_state"].samples[0].value == 0
    assert cluster_families(Exception("ERR This instance has cluster support disabled")) == []


def test_live_cluster_node(redis_cluster: list[RedisServer]) -> None:
    fams = by_name(scrape(redis_cluster[0]))
    assert fams["redis_cluster_enabled"].samples[0].value == 1
    assert fams["redis_cluster_state"].samples[0].value == 1
    assert fams["redis_cluster_known_nodes"].samples[0].value == 3
    assert fams["redis_cluster_slots_assigned"].samples[0].value == 16384
    errors = {dict(s.labels)["err"] for s in fams["redis_errors_total"].samples}
    assert "MOVED" in errors
    assert [dict(s.labels)["db"] for s in fams["redis_db_keys"].samples] == ["db0"]
    assert dict(fams["redis_instance_info"].samples[0].labels)["redis_mode"] == "cluster"
