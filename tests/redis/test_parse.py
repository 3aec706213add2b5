"""INFO text parsing, on the reference master's INFO ALL."""

from __future__ import annotations

import redis.exceptions

from exporter.redis.parse import error_code, parse_info, parse_pairs, to_number
from tests.redis.scraping import reference_info, reference_info_text

SECTIONS = ["server", "clients", "memory", "persistence", "stats", "replication", "cpu",
            "modules", "commandstats", "errorstats", "latencystats", "cluster", "keyspace"]


def test_every_section_of_info_all() -> None:
    info = reference_info()
    assert [name for name in info if name] == SECTIONS
    assert info["modules"] == {}
    assert info[""] == {}


def test_fields_keep_their_text() -> None:
    info = reference_info()
    assert info["server"]["redis_version"] == "7.0.15"
    assert info["server"]["os"] == "Linux 6.18.44-fc-v595 x86_64"
    assert info["server"]["config_file"] == ""
    assert info["memory"]["used_memory"] == "29951720"
    assert info["persistence"]["rdb_last_bgsave_status"] == "ok"
    assert info["replication"]["slave0"] == (
        "ip=127.0.0.1,port=6391,state=online,offset=13500149,lag=0")
    assert info["commandstats"]["cmdstat_config|get"].startswith("calls=120,usec=21191,")
    assert info["errorstats"] == {"errorstat_ERR": "count=5", "errorstat_NOSCRIPT": "count=1",
                                  "errorstat_WRONGTYPE": "count=51"}
    assert info["keyspace"]["db2"] == "keys=200,expires=0,avg_ttl=0"


def test_field_count_matches_the_text() -> None:
    text = reference_info_text()
    field_lines = [line for line in text.split("\r\n") if line and not line.startswith("#")]
    assert sum(len(fields) for fields in parse_info(text).values()) == len(field_lines)


def test_plain_newlines_and_values_with_colons() -> None:
    info = parse_info("# Server\nexecutable:/opt/redis:7/bin/redis-server\n\n# Keyspace\n")
    assert info["server"]["executable"] == "/opt/redis:7/bin/redis-server"
    assert info["keyspace"] == {}


def test_cluster_info_has_no_section_titles() -> None:
    info = parse_info("cluster_state:ok\r\ncluster_slots_assigned:16384\r\n")
    assert info[""] == {"cluster_state": "ok", "cluster_slots_assigned": "16384"}


def test_parse_pairs() -> None:
    assert parse_pairs("keys=1,expires=0,avg_ttl=0") == {"keys": "1", "expires": "0",
                                                         "avg_ttl": "0"}
    assert parse_pairs("name=my=master,junk") == {"name": "my=master"}


def test_to_number() -> None:
    assert to_number("13500149") == 13500149.0
    assert to_number("1.24") == 1.24
    assert to_number("-1") == -1.0
    assert (to_number("ok"), to_number("err"), to_number("fail")) == (1.0, 0.0, 0.0)
    assert to_number("noeviction") is None
    assert to_number("") is None


def test_error_code() -> None:
    assert error_code(redis.exceptions.NoPermissionError(
        "this user has no permissions to run the 'info' command", status_code="NOPERM")) == "NOPERM"
    assert error_code(redis.exceptions.ResponseError("NOQUORUM 1 usable Sentinels")) == "NOQUORUM"
