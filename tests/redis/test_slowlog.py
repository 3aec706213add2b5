"""SLOWLOG LEN and SLOWLOG GET 1 -> length, latest id, latest entry's duration."""

from __future__ import annotations

import redis.exceptions

from exporter.redis.slowlog import slowlog_families
from tests.redis.scraping import by_name, scrape
from tests.support.redis_servers import RedisServer


def values(length: object, latest: object) -> dict[str, float]:
    return {f.name: f.samples[0].value for f in slowlog_families(length, latest)}


def test_latest_entry() -> None:
    entry = [7, 1795730116, 41674, ["EVAL", "..."], "127.0.0.1:50000", ""]
    assert values(3, [entry]) == {"redis_slowlog_length": 3, "redis_slowlog_last_id": 7,
                                  "redis_last_slow_execution_duration_seconds": 0.041674}


def test_empty_slowlog_reports_zeros() -> None:
    assert values(0, []) == {"redis_slowlog_length": 0, "redis_slowlog_last_id": 0,
                             "redis_last_slow_execution_duration_seconds": 0}


def test_error_replies_yield_nothing() -> None:
    refused = redis.exceptions.ResponseError("ERR unknown command 'slowlog'")
    assert slowlog_families(refused, refused) == []
    assert values(refused, []) == {"redis_slowlog_last_id": 0,
                                   "redis_last_slow_execution_duration_seconds": 0}
    assert values(2, [["not", "an", "entry"]]) == {"redis_slowlog_length": 2}


def test_live_master_slowlog_holds_the_busy_loop(redis_master: RedisServer) -> None:
    fams = by_name(scrape(redis_master))
    assert fams["redis_slowlog_length"].samples[0].value >= 1
    # The newest entry: the busy loop's, or a later command slower than the 10 ms threshold.
    assert fams["redis_last_slow_execution_duration_seconds"].samples[0].value >= 0.01
    with redis_master.admin() as client:
        latest_id = client.execute_command("SLOWLOG", "GET", "1")[0][0]
    assert fams["redis_slowlog_last_id"].samples[0].value <= latest_id
