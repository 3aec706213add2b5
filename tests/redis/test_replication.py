"""Replication, both sides: a master's replica lines and a replica's link to its master."""

from __future__ import annotations

from exporter.exposition import Family
from exporter.redis.parse import parse_info
from exporter.redis.replication import master_field, replication_families
from tests.redis.scraping import by_name, reference_info, scrape
from tests.support.redis_servers import RedisServer

REPLICA_INFO = (
    "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.5\r\nmaster_port:6390\r\n"
    "master_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\nmaster_sync_in_progress:0\r\n"
    "slave_read_repl_offset:14\r\nslave_repl_offset:14\r\nmaster_link_down_since_seconds:3\r\n"
    "slave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\nconnected_slaves:0\r\n"
)


def samples(fam: Family) -> list[tuple[dict[str, str], float]]:
    return [(dict(s.labels), s.value) for s in fam.samples]


def test_master_side_replica_lines() -> None:
    fams = by_name(replication_families(reference_info()))
    replica = {"slave_ip": "127.0.0.1", "slave_port": "6391", "slave_state": "online"}
    assert samples(fams["redis_connected_slave_offset_bytes"]) == [(replica, 13500149)]
    assert samples(fams["redis_connected_slave_lag_seconds"]) == [(replica, 0)]
    assert "redis_slave_info" not in fams and "redis_master_link_up" not in fams


def test_replica_side() -> None:
    fams = by_name(replication_families(parse_info(REPLICA_INFO)))
    master = {"master_host": "10.0.0.5", "master_port": "6390"}
    assert samples(fams["redis_master_link_up"]) == [(master, 0)]
    assert samples(fams["redis_master_last_io_seconds_ago"]) == [(master, -1)]
    assert samples(fams["redis_master_sync_in_progress"]) == [(master, 0)]
    assert samples(fams["redis_slave_repl_offset"]) == [(master, 14)]
    assert samples(fams["redis_slave_info"]) == [({**master, "read_only": "1"}, 1)]
    assert "redis_connected_slave_offset_bytes" not in fams


def test_replica_line_without_lag_or_offset() -> None:
    fams = by_name(replication_families(parse_info(
        "# Replication\r\nrole:master\r\nslave0:ip=10.0.0.6,port=6379,state=online,offset=5\r\n"
        "slave1:ip=10.0.0.7,port=6379,state=wait_bgsave\r\n")))
    assert len(fams["redis_connected_slave_offset_bytes"].samples) == 1
    assert "redis_connected_slave_lag_seconds" not in fams


def test_master_fields() -> None:
    assert master_field("master_host") == "host"
    assert master_field("master_1_host") == "host"  # KeyDB multi-master
    assert master_field("master_repl_offset") == "repl_offset"
    assert master_field("master_x_host") == "x_host"
    assert master_field("slave_repl_offset") is None


def test_live_pair(redis_master: RedisServer, redis_replica: RedisServer) -> None:
    on_master = by_name(scrape(redis_master))
    lag = samples(on_master["redis_connected_slave_lag_seconds"])
    assert lag[0][0] == {"slave_ip": "127.0.0.1", "slave_port": str(redis_replica.port),
                         "slave_state": "online"}
    on_replica = by_name(scrape(redis_replica))
    master = {"master_host": "127.0.0.1", "master_port": str(redis_master.port)}
    assert samples(on_replica["redis_master_link_up"]) == [(master, 1)]
    assert samples(on_replica["redis_slave_info"]) == [({**master, "read_only": "1"}, 1)]
    assert dict(on_replica["redis_slave_repl_offset"].samples[0].labels) == master
    assert dict(on_replica["redis_instance_info"].samples[0].labels)["role"] == "slave"
