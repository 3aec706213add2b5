"""scrape_redis against the real fleet: redis_exporter 1.45's families (save the documented
corrections) for a master, a replica, a cluster node and a sentinel; the round trips it takes;
ACL, TLS and unix-socket targets; refused commands."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from exporter.exposition import render
from exporter.redis.errors import ScrapeError
from exporter.redis.scrape import Commander, scrape_redis
from exporter.redis.target import parse_address
from tests.redis.scraping import (
    SCRAPE_TIMEOUT,
    by_name,
    connection_for,
    reference,
    reference_info_text,
    scrape_text,
)
from tests.support.prom_compare import (
    COMPATIBILITY_NAMES,
    SCRAPE_REDIS_SKIPS,
    compare_to_reference,
    promtool_complaints,
    quantile_problems,
)
from tests.support.redis_servers import ACL_USER, RedisServer


class Recording:
    """Passes commands to the real connection and notes each round trip (an observer, not a
    stand-in: every reply comes from Redis)."""

    def __init__(self, conn: Commander) -> None:
        self.conn = conn
        self.round_trips: list[list[tuple[str, ...]]] = []

    async def execute(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        self.round_trips.append(list(commands))
        return await self.conn.execute(commands)


def recorded_scrapes(server: RedisServer, times: int) -> list[list[list[tuple[str, ...]]]]:
    """The round trips of each of `times` scrapes over one connection."""

    async def run() -> list[list[list[tuple[str, ...]]]]:
        conn = connection_for(server)
        recording = Recording(conn)
        per_scrape = []
        try:
            for _ in range(times):
                recording.round_trips = []
                await scrape_redis(recording)
                per_scrape.append(recording.round_trips)
        finally:
            await conn.close()
        return per_scrape

    return asyncio.run(run())


def assert_compatible(reference_file: str, ours: str) -> None:
    problems = compare_to_reference(reference(reference_file), ours, skip=SCRAPE_REDIS_SKIPS)
    assert problems == [], "\n".join(problems)
    assert quantile_problems(ours) == []


def test_master_matches_redis_exporter(redis_master: RedisServer) -> None:
    assert_compatible("standalone-master-with-workload.prom", scrape_text(redis_master))


def test_replica_matches_redis_exporter(redis_replica: RedisServer) -> None:
    assert_compatible("replica.prom", scrape_text(redis_replica))


def test_cluster_node_matches_redis_exporter(redis_cluster: list[RedisServer]) -> None:
    assert_compatible("cluster-node.prom", scrape_text(redis_cluster[0]))


def test_sentinel_matches_redis_exporter(redis_sentinel: RedisServer) -> None:
    assert_compatible("sentinel.prom", scrape_text(redis_sentinel))


def test_the_comparison_notices_differences() -> None:
    ref = reference("standalone-master-with-workload.prom")
    baseline = set(compare_to_reference(ref, ref))  # the corrections, reported against itself
    renamed = ref.replace("redis_memory_used_bytes", "redis_memory_used")
    relabelled = ref.replace('cmd="get"', 'command="get"')
    retyped = ref.replace("# TYPE redis_keyspace_hits_total counter",
                          "# TYPE redis_keyspace_hits_total gauge")
    assert set(compare_to_reference(ref, renamed)) - baseline == {
        "redis_memory_used_bytes: missing (gauge, labels [])"}
    assert set(compare_to_reference(ref, relabelled)) - baseline == {
        "redis_commands_total: labels ['cmd', 'command'], expected ['cmd']",
        "redis_commands_duration_seconds_total: labels ['cmd', 'command'], expected ['cmd']",
        "redis_commands_failed_calls_total: labels ['cmd', 'command'], expected ['cmd']",
        "redis_commands_rejected_calls_total: labels ['cmd', 'command'], expected ['cmd']",
        "redis_latency_percentiles_usec: labels ['cmd', 'command', 'quantile'], "
        "expected ['cmd', 'quantile']"}
    assert set(compare_to_reference(ref, retyped)) - baseline == {
        "redis_keyspace_hits_total: type gauge, expected counter"}


def test_promtool_complains_only_about_compatibility_names(
        redis_master: RedisServer, redis_cluster: list[RedisServer]) -> None:
    for text in (scrape_text(redis_master), scrape_text(redis_cluster[0])):
        complaints = promtool_complaints(text)
        assert set(complaints) <= COMPATIBILITY_NAMES, complaints
    assert "redis_total_error_replies" in promtool_complaints(scrape_text(redis_master))


def test_one_round_trip_for_a_standalone_server_once_its_mode_is_known(
        redis_master: RedisServer) -> None:
    first, second = recorded_scrapes(redis_master, 2)
    rest = [("CONFIG", "GET", "maxmemory", "maxclients", "io-threads"),
            ("SLOWLOG", "LEN"), ("SLOWLOG", "GET", "1"), ("LATENCY", "LATEST")]
    assert first == [[("INFO", "ALL")], rest]  # a new connection: INFO tells the mode first
    assert second == [[("INFO", "ALL"), *rest]]


def test_cluster_node_needs_a_second_round_trip_only_once(
        redis_cluster: list[RedisServer]) -> None:
    first, second = recorded_scrapes(redis_cluster[1], 2)
    assert [len(rt) for rt in first] == [1, 5] and ("CLUSTER", "INFO") in first[1]
    assert [len(rt) for rt in second] == [6] and ("CLUSTER", "INFO") in second[0]


def test_sentinel_round_trips(redis_sentinel: RedisServer) -> None:
    first, second = recorded_scrapes(redis_sentinel, 2)
    per_master = [("SENTINEL", "CKQUORUM", "mymaster"), ("SENTINEL", "SENTINELS", "mymaster"),
                  ("SENTINEL", "SLAVES", "mymaster")]
    assert first == second == [[("INFO", "ALL")], per_master]  # never CONFIG, SLOWLOG, LATENCY


@pytest.fixture
def acl_user(redis_acl: RedisServer) -> Iterator[Callable[..., str]]:
    """Creates a throwaway ACL user with the given rules; deleted after the test."""
    created: list[str] = []

    def make(*rules: str) -> str:
        name = f"tmp{len(created)}"
        with redis_acl.admin() as client:
            client.execute_command("ACL", "SETUSER", name, "on", ">tmp-pass", *rules)
        created.append(name)
        return name

    yield make
    with redis_acl.admin() as client:
        for name in created:
            client.execute_command("ACL", "DELUSER", name)


def test_acl_user_scrapes_what_the_admin_does(redis_acl: RedisServer) -> None:
    as_admin = by_name(scrape_families(redis_acl))
    as_user = by_name(scrape_families(redis_acl, username=ACL_USER, password="exporter-secret"))
    assert set(as_user) == set(as_admin)
    assert "redis_config_maxmemory" in as_user


def test_refused_optional_commands_never_fail_the_scrape(
        redis_acl: RedisServer, acl_user: Callable[..., str]) -> None:
    name = acl_user("-@all", "+info", "+client|setname")
    fams = by_name(scrape_families(redis_acl, username=name, password="tmp-pass"))
    assert "redis_memory_used_bytes" in fams and "redis_instance_info" in fams
    for refused in ("redis_config_maxmemory", "redis_slowlog_length", "redis_latency_spike_last"):
        assert refused not in fams


def test_refused_info_fails_the_scrape_with_a_named_reason(
        redis_acl: RedisServer, acl_user: Callable[..., str]) -> None:
    name = acl_user("-@all", "+ping", "+client|setname")
    with pytest.raises(ScrapeError, match=r"^INFO refused by the server \(NOPERM\)$"):
        scrape_families(redis_acl, username=name, password="tmp-pass")


def test_tls_target(redis_tls: RedisServer) -> None:
    fams = by_name(scrape_families(redis_tls))
    assert dict(fams["redis_instance_info"].samples[0].labels)["tcp_port"] == str(redis_tls.port)
    assert "redis_commands_total" in fams


def test_unix_socket_target(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory(unix_socket=True)

    async def run() -> list[Any]:
        from exporter.redis.connection import RedisConnection

        conn = RedisConnection(parse_address(f"unix://{server.unix_socket}"), SCRAPE_TIMEOUT)
        try:
            return await scrape_redis(conn)
        finally:
            await conn.close()

    fams = by_name(asyncio.run(run()))
    assert dict(fams["redis_instance_info"].samples[0].labels)["tcp_port"] == str(server.port)


def scrape_families(server: RedisServer, **credentials: str) -> list[Any]:
    async def run() -> list[Any]:
        conn = connection_for(server, **credentials)
        try:
            return await scrape_redis(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_rendered_output_has_each_family_once(redis_master: RedisServer) -> None:
    families = scrape_families(redis_master)
    names = [fam.name for fam in families]
    assert len(names) == len(set(names))
    assert all(fam.samples for fam in families)
    assert render(families).count(b"# TYPE ") == len(names)


class OddReplies:
    """A stand-in for a server answering the optional commands with replies of the wrong shape,
    which no real Redis here can be made to send (INFO is the reference master's real text)."""

    def __init__(self, info: str) -> None:
        self.info = info

    async def execute(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        odd: list[Any] = [None, 42, "text", [["x"]], {"maxmemory": None}, b"bytes"]
        return [self.info if c[0] == "INFO" else odd[i % len(odd)] for i, c in enumerate(commands)]


def test_odd_replies_to_optional_commands_are_skipped() -> None:
    fams = by_name(asyncio.run(scrape_redis(OddReplies(reference_info_text()))))
    assert "redis_memory_used_bytes" in fams and "redis_commands_total" in fams
    for absent in ("redis_config_maxmemory", "redis_latency_spike_last", "redis_slowlog_last_id"):
        assert absent not in fams


def test_scrapes_resume_after_the_server_restarts(
        redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory()

    async def run() -> tuple[str, str]:
        conn = connection_for(server)
        try:
            before = by_name(await scrape_redis(conn))
            server.restart()
            for _ in range(2):  # the first may find the old connection closed
                try:
                    after = by_name(await scrape_redis(conn))
                    break
                except ScrapeError:
                    continue
            return (dict(before["redis_instance_info"].samples[0].labels)["run_id"],
                    dict(after["redis_instance_info"].samples[0].labels)["run_id"])
        finally:
            await conn.close()

    before, after = asyncio.run(run())
    assert before != after
