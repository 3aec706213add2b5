"""Valkey, KeyDB, Dragonfly, a Valkey sentinel and old Redis, none of which runs here: replies
recorded from such servers (or written by hand where none was found; tests/redis/data/README.md
says which) replayed by a fake RESP server (tests/redis/replay.py) to the sidecar and to the Go
redis_exporter 1.45 side by side. The sidecar must export the same families, types, labels and
values, save the deviations docs/metrics.md lists."""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from exporter.exposition import Family
from exporter.redis import identity
from exporter.redis.cluster import cluster_families
from exporter.redis.connection import RedisConnection
from exporter.redis.fields import info_families
from exporter.redis.identity import StartClock, instance_families, server_mode
from exporter.redis.parse import parse_info
from exporter.redis.scrape import scrape_redis
from exporter.redis.target import parse_address
from tests.redis.replay import Recording, load_recording, replay_server
from tests.redis.scraping import DATA_DIR, by_name
from tests.support.net import free_port, wait_http
from tests.support.prom_compare import (
    COLLECTOR_FAMILIES,
    NOT_EMITTED,
    ZERO_FILLED,
    compare_to_reference,
    parse_exposition,
)
from tests.support.sidecar import run_sidecar
from tests.support.tools import require_tool

pytestmark = pytest.mark.e2e


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


@pytest.mark.parametrize("name, fields", [
    ("redis-7.0.15-cluster-failover-cluster-info.txt",
     {"auth_req_sent": 3, "auth_ack_received": 3, "mfstart_sent": 1}),
    ("redis-7.0.15-cluster-voter-cluster-info.txt",
     {"auth_ack_sent": 1, "auth_req_received": 1}),
])
def test_recorded_cluster_info_dashed_fields(name: str, fields: dict[str, int]) -> None:
    """CLUSTER INFO recorded from a real Redis 7.0 cluster after a CLUSTER FAILOVER: the
    promoted replica asked for votes (auth-req), a master voted (auth-ack)."""
    got = plain(cluster_families(fixture(name)))
    for field, value in fields.items():
        assert got[f"redis_cluster_stats_messages_{field}"] == ("gauge", value)
    assert not [name for name in got if "-" in name]


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
def go_exporter(port: int, cluster: bool = False) -> Iterator[str]:
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


def recording(name: str, cluster_file: str | None = None) -> Recording:
    """A JSON replay fixture, or an INFO text (with a CLUSTER INFO text) alone."""
    if name.endswith(".json"):
        return load_recording(DATA_DIR / name)
    return Recording(fixture(name), fixture(cluster_file) if cluster_file else None)


def side_by_side(rec: Recording) -> tuple[str, str]:
    """The Go exporter's and the sidecar's /metrics for the same replayed server."""
    with replay_server(rec) as port:
        with go_exporter(port, rec.cluster_info is not None) as go_url:
            go_text = httpx.get(go_url, timeout=10).text
        # A generous deadline: this compares translations, and the machine may be loaded.
        with run_sidecar([f"--redis.addr=redis://127.0.0.1:{port}",
                          "--scrape.timeout=30s"]) as sidecar:
            ours = httpx.get(f"{sidecar.web_url}/metrics", timeout=40).text
    return go_text, ours


# Families whose values differ from redis_exporter's by a documented deviation (docs/metrics.md)
# or are the exporters' own: their values are not compared.
VALUE_SKIPS = frozenset({
    "redis_start_time_seconds",  # deviation 7: redis_exporter's own clock minus the uptime
    "redis_latency_percentiles_usec",  # deviation 2: quantile labels
    "redis_sentinel_master_ckquorum_status",  # deviation 4: the message label holds a code
    "redis_instance_info",  # deviation 11: compared by instance_label_problems
})


def value_problems(go_text: str, ours: str) -> list[str]:
    """Every redis_* sample of redis_exporter's (but the skipped families, and the zero series
    of deviation 3) must be in ours with the same labels and value."""
    expected, actual = parse_exposition(go_text), parse_exposition(ours)
    problems = []
    for name, ref in sorted(expected.items()):
        if (not name.startswith("redis_") or name.startswith("redis_exporter_")
                or name in VALUE_SKIPS or name in NOT_EMITTED or name in COLLECTOR_FAMILIES):
            continue
        got = {tuple(sorted(labels.items())): value
               for labels, value in actual[name].samples} if name in actual else {}
        for labels, value in ref.samples:
            if name in ZERO_FILLED and value == 0:
                continue
            key = tuple(sorted(labels.items()))
            if key not in got:
                problems.append(f"{name}{dict(key)}: missing (redis_exporter: {value})")
            elif not math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-9):
                problems.append(f"{name}{dict(key)}: {got[key]}, redis_exporter {value}")
    return problems


def instance_label_problems(go_text: str, ours: str) -> list[str]:
    """redis_instance_info: redis_exporter's labels with its values, but redis_mode, which it
    leaves empty where Valkey 8 prints server_mode (deviation 11)."""
    (go_labels, _), = parse_exposition(go_text)["redis_instance_info"].samples
    (our_labels, _), = parse_exposition(ours)["redis_instance_info"].samples
    return [f"redis_instance_info {label}: {our_labels.get(label)!r}, redis_exporter {value!r}"
            for label, value in go_labels.items()
            if our_labels.get(label) != value and not (label == "redis_mode" and value == "")]


def assert_same_as_redis_exporter(go_text: str, ours: str) -> None:
    assert "redis_up 1" in go_text, go_text
    assert "redis_up 1" in ours, ours
    problems = (compare_to_reference(go_text, ours) + value_problems(go_text, ours)
                + instance_label_problems(go_text, ours))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name, cluster_file", [
    # Recorded replies (tests/redis/data/README.md says where each comes from).
    ("redis-2.8.12.json", None),
    ("redis-4.0.9.json", None),
    ("redis-7.0.15-master.json", None),
    ("redis-7.0.15-cluster-failover.json", None),
    ("valkey-8.0-dev-info.txt", None),
    ("keydb-6.3.4-cluster-info.txt", None),
    ("dragonfly-dev-info.txt", None),
    ("valkey-8.0-sentinel.json", None),
    # Written by hand where nothing recorded was found.
    ("valkey-8.0-info.txt", "valkey-8.0-cluster-info.txt"),
    ("keydb-6.3-info.txt", None),
    ("dragonfly-1.25-info.txt", None),
    ("redis-4.0-info.txt", None),
])
def test_same_families_and_values_as_redis_exporter(name: str, cluster_file: str | None) -> None:
    """Families, types, label names, and every sample's labels and value, save the documented
    deviations. What a fixture has no reply for (CONFIG GET on most, SLOWLOG on the INFO-only
    ones) neither exporter exports."""
    assert_same_as_redis_exporter(*side_by_side(recording(name, cluster_file)))


def test_redis_28_config_one_parameter_at_a_time_and_its_slow_log() -> None:
    """Redis 2.8 refuses CONFIG GET with three parameters: the sidecar asks one at a time and
    exports what redis_exporter gets from CONFIG GET *; the slow log's 2.8 entries (no client
    fields) give the same families."""
    go_text, ours = side_by_side(recording("redis-2.8.12.json"))
    for family, value in (("redis_config_maxmemory", 0), ("redis_config_maxclients", 10000),
                          ("redis_slowlog_length", 5), ("redis_slowlog_last_id", 14),
                          ("redis_last_slow_execution_duration_seconds", 15e-6)):
        for text in (go_text, ours):
            (_, got), = parse_exposition(text)[family].samples
            assert math.isclose(got, value), (family, got)
    assert "redis_config_io_threads" not in ours  # 2.8 has no io-threads: CONFIG GET gives []


def test_slowlog_and_latency_of_a_recorded_redis_70() -> None:
    go_text, ours = side_by_side(recording("redis-7.0.15-master.json"))
    fams = parse_exposition(ours)
    assert fams["redis_slowlog_length"].samples == [({}, 1.0)]
    assert fams["redis_slowlog_last_id"].samples == [({}, 0.0)]  # the first entry has id 0
    assert fams["redis_last_slow_execution_duration_seconds"].samples[0][1] > 0.025
    spikes = fams["redis_latency_spike_duration_seconds"].samples
    assert ({"event_name": "command"}, 0.025) in spikes
    assert_same_as_redis_exporter(go_text, ours)


def test_valkey_sentinel_never_sent_config_slowlog_latency() -> None:
    """The sidecar's scrapes of a replayed Valkey 8 sentinel (server_mode, no redis_mode): the
    sentinel families, and not one CONFIG, SLOWLOG or LATENCY, not even on the first scrape of
    the connection. redis_exporter 1.45 sends them on every scrape."""
    rec = recording("valkey-8.0-sentinel.json")
    sent_to_ours: list[tuple[str, ...]] = []
    with replay_server(rec, received=sent_to_ours) as port, \
            run_sidecar([f"--redis.addr=redis://127.0.0.1:{port}"]) as sidecar:
        for _ in range(3):
            ours = httpx.get(f"{sidecar.web_url}/metrics", timeout=10).text
    sent_to_go: list[tuple[str, ...]] = []
    with replay_server(rec, received=sent_to_go) as port, go_exporter(port) as go_url:
        httpx.get(go_url, timeout=10)

    def refused(sent: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
        return [c for c in sent if c[0].upper() in ("CONFIG", "SLOWLOG", "LATENCY")]

    assert [c[0].upper() for c in sent_to_ours].count("INFO") >= 3
    assert refused(sent_to_ours) == []
    assert refused(sent_to_go)  # the contrast: redis_exporter is refused on every scrape
    fams = parse_exposition(ours)
    assert fams["redis_sentinel_masters"].samples == [({}, 1.0)]
    assert fams["redis_sentinel_master_ok_slaves"].samples[0][1] == 1
    (labels, _), = fams["redis_instance_info"].samples
    assert (labels["server_name"], labels["server_version"], labels["redis_mode"]) == \
        ("valkey", "8.0.1", "sentinel")
    assert "redis_slowlog_length" not in fams and "redis_config_maxmemory" not in fams


def test_servers_without_run_id_keep_their_own_start_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two Dragonfly servers (no run_id, no server_time_usec, same port, pid and version in
    INFO), their uptimes a second apart: each keeps its own start time, because the scrape
    passes its address to the start clock; sharing one would report the first's for both."""
    monkeypatch.setattr(identity, "START_CLOCK", StartClock(clock=lambda: 1_000_000.0))
    text = fixture("dragonfly-1.25-info.txt")
    assert "uptime_in_seconds:100" in text

    async def start_time(port: int) -> float:
        conn = RedisConnection(parse_address(f"redis://127.0.0.1:{port}"), 5)
        try:
            fams = by_name(await scrape_redis(conn))
        finally:
            await conn.close()
        return fams["redis_start_time_seconds"].samples[0].value

    with replay_server(text) as first, \
            replay_server(text.replace("uptime_in_seconds:100", "uptime_in_seconds:101")) as second:
        starts = [asyncio.run(start_time(first)), asyncio.run(start_time(second))]
    assert starts == [999_900.0, 999_899.0]


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
