"""A Sentinel target: its INFO Sentinel section and the per-master SENTINEL commands."""

from __future__ import annotations

import asyncio

import redis.exceptions

from exporter.exposition import Family
from exporter.redis.parse import parse_info
from exporter.redis.scrape import scrape_redis
from exporter.redis.sentinel import (
    ckquorum_code,
    count_ok,
    sentinel_commands,
    sentinel_detail_families,
    sentinel_info_families,
    watched_masters,
)
from tests.redis.scraping import by_name, connection_for, scrape
from tests.support.redis_servers import RedisServer

SENTINEL_INFO = parse_info(
    "# Server\r\nredis_mode:sentinel\r\n# Sentinel\r\nsentinel_masters:2\r\nsentinel_tilt:0\r\n"
    "sentinel_tilt_since_seconds:-1\r\nsentinel_running_scripts:0\r\n"
    "sentinel_scripts_queue_length:0\r\nsentinel_simulate_failure_flags:0\r\n"
    "master0:name=mymaster,status=ok,address=127.0.0.1:6390,slaves=1,sentinels=3\r\n"
    "master1:name=other,status=odown,address=10.0.0.9:6379,slaves=2,sentinels=3\r\n")


def samples(fam: Family) -> list[tuple[dict[str, str], float]]:
    return [(dict(s.labels), s.value) for s in fam.samples]


def test_info_sentinel_section() -> None:
    fams = by_name(sentinel_info_families(SENTINEL_INFO))
    assert fams["redis_sentinel_masters"].samples[0].value == 2
    assert "redis_sentinel_tilt_since_seconds" not in fams
    mine = {"master_name": "mymaster", "master_address": "127.0.0.1:6390"}
    other = {"master_name": "other", "master_address": "10.0.0.9:6379"}
    assert samples(fams["redis_sentinel_master_status"]) == [
        ({**mine, "master_status": "ok"}, 1), ({**other, "master_status": "odown"}, 0)]
    assert samples(fams["redis_sentinel_master_slaves"]) == [(mine, 1), (other, 2)]
    assert samples(fams["redis_sentinel_master_sentinels"]) == [(mine, 3), (other, 3)]


def test_per_master_commands_and_replies() -> None:
    masters = watched_masters(SENTINEL_INFO)
    assert masters == [("mymaster", "127.0.0.1:6390"), ("other", "10.0.0.9:6379")]
    assert sentinel_commands(masters)[:3] == [("SENTINEL", "CKQUORUM", "mymaster"),
                                             ("SENTINEL", "SENTINELS", "mymaster"),
                                             ("SENTINEL", "SLAVES", "mymaster")]
    peer_ok = ["name", "a", "flags", "sentinel"]
    peer_down = ["name", "b", "flags", "s_down,sentinel"]
    replies = [
        "OK 3 usable Sentinels. Quorum and failover authorization can be reached",
        [peer_ok, peer_down], [["flags", "slave"]],
        redis.exceptions.ResponseError("NOQUORUM 1 usable Sentinels. Not enough available "
                                       "Sentinels to reach the specified quorum for this master"),
        [["flags", "o_down,sentinel"]], [["flags", "slave"], ["flags", "s_down,slave"]],
    ]
    fams = by_name(sentinel_detail_families(masters, replies))
    assert samples(fams["redis_sentinel_master_ckquorum_status"]) == [
        ({"master_name": "mymaster", "message": "OK"}, 1),
        ({"master_name": "other", "message": "NOQUORUM"}, 0)]
    assert [v for _, v in samples(fams["redis_sentinel_master_ok_sentinels"])] == [2, 1]
    assert [v for _, v in samples(fams["redis_sentinel_master_ok_slaves"])] == [1, 1]


def test_ckquorum_message_is_a_bounded_code() -> None:
    assert ckquorum_code("OK 1 usable Sentinels. Quorum ... can be reached") == "OK"
    assert ckquorum_code(redis.exceptions.ResponseError("ERR No such master with that name")) \
        == "ERR"
    assert ckquorum_code(redis.exceptions.ResponseError("WEIRD free text")) == "ERR"
    # redis-py strips the codes it knows and keeps them in status_code
    stripped = redis.exceptions.ResponseError("No such master with that name", status_code="ERR")
    assert ckquorum_code(stripped) == "ERR"


def test_error_replies_for_sentinels_or_slaves_omit_their_series() -> None:
    error = redis.exceptions.ResponseError("ERR No such master with that name")
    fams = by_name(sentinel_detail_families([("gone", "1.2.3.4:5")], [error, error, error]))
    assert list(fams) == ["redis_sentinel_master_ckquorum_status"]
    assert count_ok([["flags"], "junk", ["flags", "slave"]]) == 1


def test_live_sentinel(redis_sentinel: RedisServer, redis_master: RedisServer) -> None:
    fams = by_name(scrape(redis_sentinel))
    address = {"master_name": "mymaster", "master_address": f"127.0.0.1:{redis_master.port}"}
    assert samples(fams["redis_sentinel_master_status"]) == [({**address, "master_status": "ok"},
                                                              1)]
    assert samples(fams["redis_sentinel_master_ok_slaves"]) == [(address, 1)]
    assert samples(fams["redis_sentinel_master_ok_sentinels"]) == [(address, 1)]
    assert samples(fams["redis_sentinel_master_ckquorum_status"]) == [
        ({"master_name": "mymaster", "message": "OK"}, 1)]
    assert dict(fams["redis_instance_info"].samples[0].labels)["redis_mode"] == "sentinel"
    for absent in ("redis_config_maxmemory", "redis_slowlog_length", "redis_db_keys"):
        assert absent not in fams


def test_sentinel_is_never_sent_commands_it_refuses(redis_sentinel: RedisServer) -> None:
    def errors() -> int:
        return int(redis_sentinel.info("stats")["total_error_replies"])

    async def scrapes() -> tuple[int, int, int]:
        conn = connection_for(redis_sentinel)
        try:
            before = errors()
            await scrape_redis(conn)
            after_first = errors()
            for _ in range(3):
                await scrape_redis(conn)
            return before, after_first, errors()
        finally:
            await conn.close()

    before, after_first, after_more = asyncio.run(scrapes())
    # Not CONFIG GET, SLOWLOG or LATENCY, not even on the connection's first scrape (a refusal
    # each would count in the sentinel's total_error_replies).
    assert after_first == before
    assert after_more == after_first
