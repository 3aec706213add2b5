"""LATENCY LATEST -> per event, the latest spike's time and duration."""

from __future__ import annotations

import redis.exceptions

from exporter.redis.latency import latency_families
from tests.redis.scraping import by_name, scrape
from tests.support.redis_servers import RedisServer


def test_events() -> None:
    fams = by_name(latency_families([["command", 1795730116, 41, 41], ["fork", 1795730117, 2, 5]]))
    assert [(dict(s.labels), s.value) for s in fams["redis_latency_spike_last"].samples] == [
        ({"event_name": "command"}, 1795730116), ({"event_name": "fork"}, 1795730117)]
    duration = fams["redis_latency_spike_duration_seconds"]
    assert [s.value for s in duration.samples] == [0.041, 0.002]


def test_nothing_for_no_events_or_an_error() -> None:
    assert latency_families([]) == []
    assert latency_families(redis.exceptions.ResponseError("ERR unknown command")) == []
    assert latency_families([["command", "not-a-time", 1, 1], "junk"]) == []


def test_live_master_reports_the_busy_loop(redis_master: RedisServer) -> None:
    fams = by_name(scrape(redis_master))
    events = {dict(s.labels)["event_name"]: s.value
              for s in fams["redis_latency_spike_duration_seconds"].samples}
    # The latest "command" spike: the busy loop's, or a later one above the 1 ms threshold.
    assert events["command"] >= 0.001
    with redis_master.admin() as client:
        server_time = int(client.time()[0])
        worst_ms = {e[0]: e[3] for e in client.execute_command("LATENCY", "LATEST")}["command"]
    assert worst_ms >= 25
    spike_at = {dict(s.labels)["event_name"]: s.value
                for s in fams["redis_latency_spike_last"].samples}["command"]
    assert server_time - 600 < spike_at <= server_time
