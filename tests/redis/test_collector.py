"""Scrapes under faults, against real redis-server processes: stopped (SIGSTOP), killed
mid-scrape, refused, restarted; several targets at once; the persistent connection."""

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

from exporter.exposition import Family
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
    assert collector.status[target.address].error in {"connection closed by server",
                                                      "connection reset by server"}
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
