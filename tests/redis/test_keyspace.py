"""Keyspace lines -> redis_db_* per database, only for the databases Redis lists."""

from __future__ import annotations

from exporter.exposition import Family
from exporter.redis.keyspace import keyspace_families
from exporter.redis.parse import parse_info
from tests.redis.scraping import by_name, reference_info, scrape
from tests.support.redis_servers import RedisServer


def series(fam: Family) -> dict[str, float]:
    return {dict(s.labels)["db"]: s.value for s in fam.samples}


def test_reference_keyspace() -> None:
    fams = by_name(keyspace_families(reference_info()))
    assert series(fams["redis_db_keys"]) == {"db0": 259242, "db1": 200, "db2": 200}
    assert series(fams["redis_db_keys_expiring"]) == {"db0": 50, "db1": 0, "db2": 0}
    assert series(fams["redis_db_avg_ttl_seconds"]) == {"db0": 3508.889, "db1": 0, "db2": 0}
    assert "redis_db_keys_cached" not in fams


def test_no_zero_fill_and_nothing_for_an_empty_keyspace() -> None:
    assert keyspace_families(parse_info("# Keyspace\r\n")) == []
    assert keyspace_families(parse_info("# Server\r\nredis_version:7.0.15\r\n")) == []
    one_db = parse_info("# Keyspace\r\ndb7:keys=3,expires=1,avg_ttl=5\r\n")
    fams = by_name(keyspace_families(one_db))
    assert series(fams["redis_db_keys"]) == {"db7": 3}


def test_fields_are_read_by_name() -> None:
    # Redis 7.4 adds subexpiry; KeyDB adds cached_keys; an old Redis has no avg_ttl.
    fams = by_name(keyspace_families(parse_info(
        "# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=1500,subexpiry=0\r\n"
        "db1:keys=4,expires=0,avg_ttl=0,cached_keys=3\r\ndb2:keys=1,expires=1\r\n"
        "db3:garbage\r\n")))
    assert series(fams["redis_db_keys"]) == {"db0": 10, "db1": 4, "db2": 1}
    assert series(fams["redis_db_avg_ttl_seconds"]) == {"db0": 1.5, "db1": 0}
    assert series(fams["redis_db_keys_cached"]) == {"db1": 3}


def test_live_master_lists_its_three_databases(redis_master: RedisServer) -> None:
    fams = by_name(scrape(redis_master))
    keys = series(fams["redis_db_keys"])
    assert set(keys) == {"db0", "db1", "db2"}
    assert keys["db1"] == keys["db2"] == 200
    assert keys["db0"] >= 203  # 200 keys, a list, a hash, a stream
    assert series(fams["redis_db_keys_expiring"])["db0"] == 50
    assert 3500 < series(fams["redis_db_avg_ttl_seconds"])["db0"] <= 3600
