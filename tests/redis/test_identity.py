"""redis_instance_info labels and a start time that does not jitter."""

from __future__ import annotations

import time

from exporter.redis.identity import instance_families, start_time
from exporter.redis.parse import parse_info
from tests.redis.scraping import by_name, reference_info, scrape
from tests.support.redis_servers import RedisServer


def test_reference_master() -> None:
    fams = by_name(instance_families(reference_info()))
    info = fams["redis_instance_info"].samples[0]
    assert info.value == 1
    assert dict(info.labels) == {
        "role": "master", "redis_version": "7.0.15", "redis_build_id": "ae4d7c971a948f0",
        "redis_mode": "standalone", "os": "Linux 6.18.44-fc-v595 x86_64",
        "maxmemory_policy": "noeviction", "tcp_port": "6390",
        "run_id": "555539e2279a2e24920020dfe33eeeeb0056cd49", "process_id": "3761",
        "server_name": "redis", "server_version": "7.0.15"}
    # server_time_usec 1795730206.258545 minus uptime_in_seconds 105, as redis_exporter's 1.45
    # reference (taken at another moment) also shows.
    assert fams["redis_start_time_seconds"].samples[0].value == 1795730101


def test_labels_present_but_empty_when_info_lacks_them() -> None:
    fams = by_name(instance_families(parse_info("# Server\r\nredis_mode:sentinel\r\n")))
    labels = dict(fams["redis_instance_info"].samples[0].labels)
    assert labels["redis_mode"] == "sentinel" and labels["role"] == labels["os"] == ""
    assert "redis_start_time_seconds" not in fams


def test_start_time_falls_back_to_the_local_clock() -> None:
    assert start_time({"server_time_usec": "2000000000", "uptime_in_seconds": "5"}) == 1995
    assert start_time({"uptime_in_seconds": "5"}) is not None
    assert start_time({"uptime_in_seconds": "x"}) is None


def test_live_start_time_is_stable_across_uptime_ticks(redis_master: RedisServer) -> None:
    starts: set[float] = set()
    uptimes: set[float] = set()
    deadline = time.monotonic() + 3
    while len(uptimes) < 2 and time.monotonic() < deadline:
        fams = by_name(scrape(redis_master))
        starts.add(fams["redis_start_time_seconds"].samples[0].value)
        uptimes.add(fams["redis_uptime_in_seconds"].samples[0].value)
        time.sleep(0.05)
    assert len(uptimes) == 2
    assert len(starts) == 1
