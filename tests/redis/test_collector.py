"""Scrapes under faults, against real redis-server processes: stopped (SIGSTOP), killed
mid-scrape, refused, restarted; several targets at once; the persistent connection; concurrent
scrapes of one target sharing one round trip."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.exposition import Family, render
from exporter.limits import RedisLimits
from exporter.redis.collector import RedisCollector
from exporter.redis.target import parse_address
from tests.support.net import free_port
from tests.support.redis_servers import LUA_BUSY_LOOP, RedisServer, start_redis


def value(families: list[Family], name: str) -> float:
    fam = next(f for f in families if f.name == name)
    return fam.samples[0].value


def scrape(collector: RedisCollector, server: RedisServer | str) -> list[Family]:
    url = server if isinstance(server, str) else server.url
    return asyncio.run(collector.collect([parse_address(url)]))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    srv = start_redis(tmp_path / "redis")
    yield srv
    srv.stop()


def test_up_and_connection_reused(server: RedisServer) -> None:
    collector = RedisCollector(timeout=2)
    target = parse_address(server.url)

    async def twice() -> tuple[list[Family], list[Family], int]:
        first = await collector.collect([target])
        second = await collector.collect([target])
        clients = int(server.info("clients")["connected_clients"])
        return first, second, clients

    first, second, clients = asyncio.run(twice())
    assert value(first, "redis_up") == 1
    assert value(first, "redis_exporter_last_scrape_connect_time_seconds") > 0
    assert value(second, "redis_exporter_last_scrape_connect_time_seconds") == 0
    assert value(second, "redis_exporter_last_scrape_error") == 0
    assert clients == 2  # the admin client and our one persistent connection


def test_hung_redis_gives_up_0_within_the_timeout(server: RedisServer) -> None:
    collector = RedisCollector(timeout=0.5)
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        families = scrape(collector, server)
        elapsed = time.monotonic() - started
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert value(families, "redis_up") == 0
    assert value(families, "redis_exporter_last_scrape_error") == 1
    assert elapsed < 1.0
    assert collector.status[parse_address(server.url).address].error.startswith("timeout")
    assert value(scrape(collector, server), "redis_up") == 1


def test_killed_mid_scrape_then_back(server: RedisServer) -> None:
    collector = RedisCollector(timeout=3)
    target = parse_address(server.url)
    port = server.port

    async def run() -> list[Family]:
        await collector.collect([target])
        busy = server.admin()
        # Redis answers nothing while a script runs: the scrape below is in flight when killed.
        loop = asyncio.get_running_loop()
        script = loop.run_in_executor(None, lambda: busy.eval(LUA_BUSY_LOOP, 0, 2_000_000))
        await asyncio.sleep(0.2)
        scrape_task = asyncio.create_task(collector.collect([target]))
        await asyncio.sleep(0.2)
        assert server.proc is not None
        server.proc.kill()
        families = await scrape_task
        with contextlib.suppress(Exception):
            await script
        return families

    families = asyncio.run(run())
    assert value(families, "redis_up") == 0
    # No byte of reply came before the connection closed: retried once, on a fresh connection
    # that the dying server refused (or, its listener not yet closed, accepted and dropped).
    assert collector.status[target.address].error in {"connection refused",
                                                      "connection closed by server",
                                                      "connection reset by server"}
    assert collector.stats[target.address].reconnects == 1
    assert value(scrape(collector, server), "redis_up") == 0
    assert collector.status[target.address].error == "connection refused"
    server.start(port)
    assert value(scrape(collector, server), "redis_up") == 1


def test_one_hung_target_does_not_delay_the_others(server: RedisServer, tmp_path: Path) -> None:
    other = start_redis(tmp_path / "other")
    try:
        assert other.proc is not None
        os.kill(other.proc.pid, signal.SIGSTOP)
        collector = RedisCollector(timeout=0.6)
        targets = [parse_address(server.url), parse_address(other.url),
                   parse_address(f"redis://127.0.0.1:{free_port()}")]
        started = time.monotonic()
        families = asyncio.run(collector.collect(targets, label_targets=True))
        elapsed = time.monotonic() - started
        up = {s.labels[0][1]: s.value for f in families if f.name == "redis_up"
              for s in f.samples}
        assert up == {server.url: 1, other.url: 0, targets[2].address: 0}
        assert elapsed < 1.0
        os.kill(other.proc.pid, signal.SIGCONT)
    finally:
        other.stop()


def test_wrong_password_is_named_and_not_leaked(tmp_path: Path) -> None:
    srv = start_redis(tmp_path / "auth", password="right-pw")
    try:
        collector = RedisCollector(timeout=2)
        families = scrape(collector, f"redis://:Wr0ng-pw@127.0.0.1:{srv.port}")
        assert value(families, "redis_up") == 0
        status = collector.status[f"redis://127.0.0.1:{srv.port}"]
        assert status.error == "authentication failed"
        ok = scrape(collector, f"redis://:right-pw@127.0.0.1:{srv.port}")
        assert value(ok, "redis_up") == 1
    finally:
        srv.stop()


def test_concurrent_scrapes_of_a_hung_target_each_keep_their_deadline() -> None:
    # Accepts and never answers: both scrapes queue on the one connection.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    target = parse_address(f"redis://127.0.0.1:{hung.getsockname()[1]}")
    collector = RedisCollector(timeout=3)

    async def both() -> tuple[float, list[Family]]:
        slow = asyncio.create_task(collector.collect([target]))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        quick = await collector.collect([target], timeout=0.5)
        elapsed = time.monotonic() - started
        await slow
        return elapsed, quick

    try:
        elapsed, quick = asyncio.run(both())
    finally:
        hung.close()
    assert value(quick, "redis_up") == 0
    assert elapsed < 1.0


# --- single flight: concurrent scrapes of one target share one round trip -------------------

def info_calls(server: RedisServer) -> int:
    stats = server.info("commandstats").get("cmdstat_info", {})
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


def test_concurrent_scrapes_share_one_round_trip(server: RedisServer) -> None:
    collector = RedisCollector(timeout=3)
    target = parse_address(server.url)
    before = info_calls(server)

    async def many() -> list[list[Family]]:
        try:
            return await asyncio.gather(*(collector.collect([target]) for _ in range(50)))
        finally:
            await collector.close()

    results = asyncio.run(many())
    assert [value(r, "redis_up") for r in results] == [1] * 50
    assert info_calls(server) - before == 2  # ours, and the INFO that read `before`
    assert (collector.round_trips[target.address], collector.joined[target.address]) == (1, 49)


def test_nothing_is_served_once_its_round_trip_has_ended(server: RedisServer) -> None:
    collector = RedisCollector(timeout=3, limits=RedisLimits(min_round_trip_interval_seconds=0.2))
    target = parse_address(server.url)
    before = info_calls(server)

    async def one_after_another() -> float:
        started = time.monotonic()
        try:
            for _ in range(5):
                assert value(await collector.collect([target]), "redis_up") == 1
            return time.monotonic() - started
        finally:
            await collector.close()

    elapsed = asyncio.run(one_after_another())
    assert info_calls(server) - before == 6  # ours, and the INFO that read `before`
    assert collector.round_trips[target.address] == 5
    # Each round trip after the first waited to start 0.2 s after the one before.
    assert collector.delayed[target.address] == 4 and elapsed >= 0.8


def test_bursts_within_the_interval_share_the_next_round_trip(server: RedisServer) -> None:
    collector = RedisCollector(timeout=3, limits=RedisLimits(min_round_trip_interval_seconds=0.5))
    target = parse_address(server.url)
    before = info_calls(server)

    last_burst = 0.0

    async def bursts() -> list[list[Family]]:
        nonlocal last_burst
        results: list[list[Family]] = []
        started = time.monotonic()
        try:
            tasks = []
            for _ in range(20):  # a burst of 5 every 50 ms for 1 s (longer on a busy machine)
                tasks += [asyncio.create_task(collector.collect([target])) for _ in range(5)]
                last_burst = time.monotonic() - started
                await asyncio.sleep(0.05)
            results = await asyncio.gather(*tasks)
        finally:
            await collector.close()
        return results

    results = asyncio.run(bursts())
    assert [value(r, "redis_up") for r in results] == [1] * 100
    calls = info_calls(server) - before - 1
    # Round trips start at least 0.5 s apart: at 0, 0.5, 1.0 ... and one more for the last
    # burst (at 0.95 s on an idle machine: 3 at most).
    assert 2 <= calls <= int(last_burst / 0.5) + 2, (calls, last_burst)
    assert collector.round_trips[target.address] == calls
    assert collector.joined[target.address] == 100 - calls


def test_a_joining_scrape_keeps_its_own_deadline(server: RedisServer) -> None:
    collector = RedisCollector(timeout=3)
    target = parse_address(server.url)
    busy = server.admin()

    async def run() -> tuple[float, list[Family], list[Family]]:
        loop = asyncio.get_running_loop()
        # Redis answers nothing while the script runs: the first scrape stays in flight.
        script = loop.run_in_executor(None, lambda: busy.eval(LUA_BUSY_LOOP, 0, 1_200_000))
        await asyncio.sleep(0.2)
        leader = asyncio.create_task(collector.collect([target]))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        joined = await collector.collect([target], timeout=0.3)
        elapsed = time.monotonic() - started
        first = await leader
        await script
        await collector.close()
        return elapsed, joined, first

    try:
        elapsed, joined, first = asyncio.run(run())
    finally:
        busy.close()
    assert value(joined, "redis_up") == 0 and elapsed < 0.8
    assert value(first, "redis_up") == 1  # the round trip went on for the scrape that began it
    assert collector.status[target.address].up


def test_counters_name_targets_by_their_redacted_address(tmp_path: Path) -> None:
    srv = start_redis(tmp_path / "auth", password="s3cret-pw")
    try:
        collector = RedisCollector(timeout=2)
        scrape(collector, f"redis://:s3cret-pw@127.0.0.1:{srv.port}")
        text = render(collector.counters()).decode()
    finally:
        srv.stop()
    assert "s3cret" not in text
    address = f"redis://127.0.0.1:{srv.port}"
    for line in (f'tradesense_exporter_redis_reconnects_total{{target="{address}"}} 0',
                 f'tradesense_exporter_redis_replies_too_large_total{{target="{address}"}} 0',
                 f'tradesense_exporter_redis_round_trips_total{{target="{address}"}} 1',
                 f'tradesense_exporter_redis_scrapes_joined_total{{target="{address}"}} 0'):
        assert line in text
