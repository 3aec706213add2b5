"""App cache metrics: the recorder's counters and the read-through helpers."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.instrument.helpers import Telemetry

GETS = "cache.gets"


def counts(telemetry: Telemetry, name: str) -> dict[tuple[str, ...], int]:
    return {tuple(v for k, v in sorted(p.attributes.items()) if k != "cache.name"): p.value
            for p in telemetry.points(name)}


def test_hits_misses_and_the_rest_by_layer(telemetry: Telemetry) -> None:
    cache = telemetry.instrument().cache("trades")
    for _ in range(3):
        cache.hit("memory")
    cache.hit("redis")
    cache.miss("redis")
    cache.lookup(False, "redis")
    cache.put("memory", count=2)
    cache.eviction("memory")
    cache.invalidation("redis", count=5)
    cache.error("redis", ConnectionError("refused"))
    cache.error("redis", "TimeoutError")
    assert counts(telemetry, GETS) == {("memory", "hit"): 3, ("memory", "miss"): 0,
                                       ("redis", "hit"): 1, ("redis", "miss"): 2}
    assert counts(telemetry, "cache.puts") == {("memory",): 2}
    assert counts(telemetry, "cache.evictions") == {("memory",): 1}
    assert counts(telemetry, "cache.invalidations") == {("redis",): 5}
    assert counts(telemetry, "cache.errors") == {("redis", "ConnectionError"): 1,
                                                 ("redis", "TimeoutError"): 1}
    assert {p.attributes["cache.name"] for p in telemetry.points(GETS)} == {"trades"}


def test_counts_are_exact_across_threads(telemetry: Telemetry) -> None:
    cache = telemetry.instrument().cache("trades")

    def work() -> None:
        for _ in range(20_000):
            cache.hit("memory")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts(telemetry, GETS) == {("memory", "hit"): 80_000, ("memory", "miss"): 0}


def test_a_new_layer_shows_both_results_from_its_first_lookup(telemetry: Telemetry) -> None:
    """So that rate() over cache_gets_total counts the first miss too."""
    telemetry.instrument().cache("trades").hit("memory")
    assert counts(telemetry, GETS) == {("memory", "hit"): 1, ("memory", "miss"): 0}


def test_names_and_layers_are_bounded(telemetry: Telemetry) -> None:
    handle = telemetry.instrument()
    for n in range(150):
        handle.cache(f"user:{n}").hit(f"layer-{n}")
    names = {p.attributes["cache.name"] for p in telemetry.points(GETS)}
    layers = {p.attributes["cache.layer"] for p in telemetry.points(GETS)}
    assert len(names) == 101 and "_other" in names
    assert len(layers) == 9 and "_other" in layers


def test_uninstrument_stops_recording(telemetry: Telemetry) -> None:
    handle = telemetry.instrument()
    cache = handle.cache("trades")
    cache.hit()
    handle.uninstrument()
    cache.hit()
    assert counts(telemetry, GETS) == {("default", "hit"): 1, ("default", "miss"): 0}


def test_read_through_against_real_redis(telemetry: Telemetry,
                                         redis_address: tuple[str, int]) -> None:
    client = redis.Redis(*redis_address)
    key = "tradesense-test:read-through"
    client.delete(key)
    cache = telemetry.instrument().cache("analytics")
    loads: list[int] = []

    def load() -> bytes:
        loads.append(1)
        return b"42"

    def put(k: str, value: Any, ttl: float | None) -> None:
        client.set(k, value, ex=int(ttl) if ttl else None)

    for _ in range(4):
        assert cache.read_through(key, load, get=client.get, set=put, ttl=60,
                                  layer="redis") == b"42"
    assert len(loads) == 1
    assert 55 <= client.ttl(key) <= 60
    assert counts(telemetry, GETS) == {("redis", "hit"): 3, ("redis", "miss"): 1}
    assert counts(telemetry, "cache.puts") == {("redis",): 1}
    client.delete(key)


def test_async_read_through_falls_back_when_redis_is_down(telemetry: Telemetry) -> None:
    from tests.support.net import free_port

    # no retries: redis-py's default backoff would make each refused connection take seconds
    client = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5,
                            retry=Retry(NoBackoff(), 0))
    cache = telemetry.instrument().cache("trades")

    async def load() -> str:
        return "fresh"

    async def put(key: str, value: Any, ttl: float | None) -> None:
        await client.set(key, value, ex=int(ttl) if ttl else None)

    async def run() -> list[Any]:
        try:
            return [await cache.aread_through("k", load, get=client.get, set=put, ttl=5,
                                              layer="redis") for _ in range(2)]
        finally:
            await client.aclose()

    assert asyncio.run(run()) == ["fresh", "fresh"]
    assert counts(telemetry, GETS) == {("redis", "hit"): 0, ("redis", "miss"): 2}
    assert counts(telemetry, "cache.errors") == {("redis", "ConnectionError"): 4}


def test_loader_failure_propagates(telemetry: Telemetry) -> None:
    cache = telemetry.instrument().cache("trades")

    def load() -> Any:
        raise LookupError("db down")

    with pytest.raises(LookupError):
        cache.read_through("k", load, get=lambda k: None, set=lambda k, v, t: None)
    assert counts(telemetry, GETS) == {("default", "hit"): 0, ("default", "miss"): 1}
