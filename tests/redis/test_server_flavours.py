"""Valkey, KeyDB, Dragonfly and old Redis, from INFO/CLUSTER INFO fixtures written from what
those servers print (tests/redis/data/*-info.txt; none of them runs here): the families and
values the sidecar exports, and, replayed by a fake server, the same families as the Go
redis_exporter 1.45 exports from the same replies."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from exporter.exposition import Family
from exporter.redis.cluster import cluster_families
from exporter.redis.info import parse_info
from exporter.redis.info_metrics import info_families
from exporter.redis.instance_info import StartClock, instance_families, server_mode
from tests.redis.replay import replay_server
from tests.redis.scraping import DATA_DIR, by_name
from tests.support.net import free_port, wait_http
from tests.support.prom_compare import compare_to_reference
from tests.support.sidecar import run_sidecar
from tests.support.tools import require_tool


def fixture(name: str) -> str:
    return (DATA_DIR / name).read_bytes().decode()


def plain(families: list[Family]) -> dict[str, tuple[str, float]]:
    return {fam.name: (fam.type, fam.samples[0].value) for fam in families}


def instance_labels(info_text: str) -> dict[str, str]:
    fams = by_name(instance_families(parse_info(info_text)))
    return dict(fams["redis_instance_info"].samples[0].labels)


def test_valkey_8_is_told_from_redis() -> None:
    info = parse_info(fixture("valkey-8.0-info.txt"))
    labels = instance_labels(fixture("valkey-8.0-info.txt"))
    assert labels["server_name"] == "valkey"
    assert labels["server_version"] == "8.0.1"
    assert labels["redis_version"] == "7.2.4"  # the INFO field, as redis_exporter
    assert labels["redis_mode"] == "cluster"  # from server_mode: Valkey 8 has no redis_mode
    assert server_mode(info) == "cluster"
    assert labels["role"] == "master" and labels["process_id"] == "7"
    assert plain(info_families(info))["redis_cluster_enabled"] == ("gauge", 1)


def test_valkey_cluster_info_dashed_fields() -> None:
    got = plain(cluster_families(fixture("valkey-8.0-cluster-info.txt")))
    assert got["redis_cluster_stats_messages_auth_req_sent"] == ("gauge", 5)
    assert got["redis_cluster_stats_messages_auth_ack_received"] == ("gauge", 2)
    assert got["redis_cluster_stats_messages_ping_sent"] == ("gauge", 120)
    assert got["redis_cluster_messages_sent_total"] == ("counter", 243)
    assert not [name for name in got if "-" in name]
    assert len(got) == 17


def test_keydb_fields() -> None:
    info = parse_info(fixture("keydb-6.3-info.txt"))
    got = plain(info_families(info))
    assert got["redis_server_threads_total"] == ("gauge", 2)
    assert got["redis_long_lock_waits_total"] == ("gauge", 5)
    assert got["redis_current_client_thread"] == ("gauge", 1)
    assert got["redis_storage_provider_read_hits"] == ("counter", 12)
    assert got["redis_storage_provider_read_misses"] == ("counter", 3)
    assert got["redis_memory_max_reservation_bytes"] == ("gauge", 16777216)
    assert got["redis_memory_max_bytes"] == ("gauge", 1073741824)
    labels = instance_labels(fixture("keydb-6.3-info.txt"))
    assert (labels["server_name"], labels["server_version"]) == ("keydb", "255.255.255")
    assert labels["redis_mode"] == "standalone"


def test_dragonfly_identity_and_steady_start_time() -> None:
    text = fixture("dragonfly-1.25-info.txt")
    labels = instance_labels(text)
    assert (labels["server_name"], labels["server_version"]) == ("dragonfly", "df-v1.25.2")
    assert labels["redis_version"] == "7.4.0" and labels["run_id"] == labels["process_id"] == ""
    server = parse_info(text)["server"]  # no server_time_usec, uptime 100
    now = [1_000_000.9]
    clock = StartClock(clock=lambda: now[0])
    starts = []
    for now[0], uptime in ((1_000_000.9, 100), (1_000_001.1, 100), (1_000_001.9, 101),
                           (1_000_003.0, 102), (1_000_003.99, 103)):
        starts.append(clock.start_time({**server, "uptime_in_seconds": str(uptime)}, "df:6379"))
    assert starts == [999_900.0] * 5  # the local clock alone gives 999_900, 999_901, 999_901...
    # A restart (uptime backwards) is seen at once.
    now[0] = 1_000_010.5
    assert clock.start_time({**server, "uptime_in_seconds": "3"}, "df:6379") == 1_000_007.0
    # Another target behind the same identity keeps its own start time.
    assert clock.start_time({**server, "uptime_in_seconds": "500"}, "df2:6379") == 999_510.0


def test_old_redis_start_time_follows_run_id() -> None:
    server = parse_info(fixture("redis-4.0-info.txt"))["server"]
    assert "server_time_usec" not in server
    now = [2_000_000.95]
    clock = StartClock(clock=lambda: now[0])
    assert clock.start_time(server) == 1_999_900.0
    now[0] = 2_000_001.05  # uptime still 100: the local clock alone would say 1_999_901
    assert clock.start_time(server) == 1_999_900.0
    restarted = {**server, "run_id": "0" * 40, "uptime_in_seconds": "100"}
    assert clock.start_time(restarted) == 1_999_901.0  # a new run_id is a new server
    labels = instance_labels(fixture("redis-4.0-info.txt"))
    assert (labels["server_name"], labels["server_version"]) == ("redis", "4.0.14")
    got = plain(info_families(parse_info(fixture("redis-4.0-info.txt"))))
    assert got["redis_client_longest_output_list"] == ("gauge", 0)


def test_server_clock_wins_when_reported() -> None:
    clock = StartClock(clock=lambda: 5.0)
    assert clock.start_time({"server_time_usec": "2000000999999", "uptime_in_seconds": "5"}) \
        == 1_999_995.0


@contextmanager
def go_exporter(port: int, cluster: bool) -> Iterator[str]:
    binary = require_tool("prometheus-redis-exporter")
    web = free_port()
    args = [binary, f"--redis.addr=redis://127.0.0.1:{port}",
            f"--web.listen-address=127.0.0.1:{web}"]
    proc = subprocess.Popen(args + (["--is-cluster"] if cluster else []),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{web}/metrics")
        yield f"http://127.0.0.1:{web}/metrics"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("info_file, cluster_file", [
    ("valkey-8.0-info.txt", "valkey-8.0-cluster-info.txt"),
    ("keydb-6.3-info.txt", None),
    ("dragonfly-1.25-info.txt", None),
    ("redis-4.0-info.txt", None),
])
def test_same_families_as_redis_exporter(info_file: str, cluster_file: str | None) -> None:
    cluster_info = fixture(cluster_file) if cluster_file else None
    with replay_server(fixture(info_file), cluster_info) as port:
        with go_exporter(port, cluster_info is not None) as go_url:
            go_text = httpx.get(go_url, timeout=10).text
        with run_sidecar([f"--redis.addr=redis://127.0.0.1:{port}"]) as sidecar:
            ours = httpx.get(f"{sidecar.web_url}/metrics", timeout=10).text
    assert "redis_up 1" in go_text and "redis_up 1" in ours
    # The replay server knows no CONFIG GET, SLOWLOG or LATENCY: neither exporter has them.
    problems = compare_to_reference(go_text, ours)
    assert not problems, "\n".join(problems)


def start_time_sample(text: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith("redis_start_time_seconds ")]
    assert len(lines) == 1, text
    return float(lines[0].split()[1])


def test_live_sidecar_start_time_steady_without_server_clock() -> None:
    """The sidecar process scraping a replayed Dragonfly (uptime fixed at 100, no
    server_time_usec) across a change of the wall-clock second: its own clock minus the uptime
    would move by a second; the reported start time does not."""
    with replay_server(fixture("dragonfly-1.25-info.txt")) as port, \
            run_sidecar([f"--redis.addr=redis://127.0.0.1:{port}"]) as sidecar:
        url = f"{sidecar.web_url}/metrics"
        first_second = int(time.time())
        first = start_time_sample(httpx.get(url, timeout=10).text)
        deadline = time.monotonic() + 5
        while int(time.time()) == first_second and time.monotonic() < deadline:
            time.sleep(0.05)
        assert int(time.time()) > first_second
        second = start_time_sample(httpx.get(url, timeout=10).text)
    assert second == first
