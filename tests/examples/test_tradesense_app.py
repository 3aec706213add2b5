"""The example app served by uvicorn in a thread, with its instrumentation exporting to memory.

Reads and writes go to the shared Redis on 127.0.0.1:6379 under a key prefix of each test's own
(deleted afterwards); the tests that stop or freeze Redis start a redis-server of their own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import create_engine, text
from starlette.applications import Starlette

from examples.tradesense_app import traffic
from examples.tradesense_app.app import create_app
from examples.tradesense_app.cache import MemoryLRU, RedisGate
from examples.tradesense_app.faults import FaultInjection
from examples.tradesense_app.settings import Settings, async_url
from examples.tradesense_app.traffic import drive
from exporter import semconv
from tests.instrument.helpers import MemoryMetricExporter, attributes_of, points_of
from tests.support.net import free_port
from tests.support.redis_servers import RedisServer, start_redis

SHARED_REDIS = "redis://127.0.0.1:6379/0"
TEMPLATES = {"/trades", "/trades/{trade_id}", "/analytics/summary", "/healthz"}


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted afterwards."""
    chosen = f"tradesense-test-{uuid.uuid4().hex[:12]}:"
    yield chosen
    with redis.Redis.from_url(SHARED_REDIS) as client:
        keys = list(client.scan_iter(match=f"{chosen}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def settings(tmp_path: Path, prefix: str) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path}/demo.db",
        redis_url=SHARED_REDIS,
        slow_query_threshold=0.05,
        seed_trades=2000,
        slow_seconds=0.1,
        key_prefix=prefix,
    )


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


@contextmanager
def serve(app: Starlette) -> Iterator[httpx.Client]:
    """The app under uvicorn in a thread (lifespan included), and a client for it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_for_port(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=20)


class Exported:
    def __init__(self) -> None:
        self.metrics = MemoryMetricExporter()
        self.spans = InMemorySpanExporter()

    def options(self) -> dict[str, Any]:
        return {"metric_exporter": self.metrics, "span_exporter": self.spans}


def collect(app: Starlette, exported: Exported, requests: int | None = None) -> MetricsData:
    """What the app recorded so far; with `requests`, once it has recorded that many HTTP
    requests (the middleware records just after the response has gone out)."""
    deadline = time.monotonic() + 10
    while True:
        assert app.state.instrumentation.force_flush()
        data = exported.metrics.exports[-1]
        recorded = sum(p.value.count for p in points_of(data, semconv.HTTP_SERVER_DURATION))
        if requests is None or recorded >= requests or time.monotonic() > deadline:
            assert requests is None or recorded == requests
            return data
        time.sleep(0.02)


def counts(data: MetricsData, name: str, **labels: str) -> float:
    """The sum of the points of `name` whose attributes include `labels` (dots for the keys)."""
    wanted = {k.replace("_", "."): v for k, v in labels.items()}
    return sum(p.value for p in points_of(data, name)
               if all(p.attributes.get(k) == v for k, v in wanted.items()))


def gets(data: MetricsData, cache: str, layer: str, result: str) -> float:
    return counts(data, semconv.CACHE_GETS, cache_name=cache, cache_layer=layer,
                  cache_result=result)


def source(response: httpx.Response) -> tuple[str, str]:
    return response.headers["X-Cache"], response.headers["X-Cache-Layer"]


# --------------------------------------------------------------------------- the hybrid cache
def test_cache_hits_misses_and_ttls(settings: Settings, prefix: str) -> None:
    exported = Exported()
    app = create_app(settings, **exported.options())
    with serve(app) as client:
        first = client.get("/trades", params={"user_id": 3, "limit": 5})
        second = client.get("/trades", params={"user_id": 3, "limit": 5})
        summary = client.get("/analytics/summary", params={"user_id": 3})
        again = client.get("/analytics/summary", params={"user_id": 3})
        assert client.get("/trades", params={"user_id": "x"}).status_code == 400
        assert client.get("/trades", params={"limit": 0}).status_code == 400
        data = collect(app, exported)
    assert (source(first), source(second)) == (("miss", "db"), ("hit", "memory"))
    assert first.json() == second.json()
    assert len(first.json()["trades"]) == 5
    assert (source(summary), source(again)) == (("miss", "db"), ("hit", "memory"))
    assert summary.json()["symbols"]
    keys = redis.Redis.from_url(SHARED_REDIS)
    assert keys.hkeys(f"{prefix}trades:u3:lists") == [b"5"]
    assert 290 < keys.ttl(f"{prefix}trades:u3:lists") <= 300
    assert 3590 < keys.ttl(f"{prefix}analytics:u3") <= 3600
    for cache in ("trades", "analytics"):
        assert gets(data, cache, "redis", "miss") == 1
        assert gets(data, cache, "memory", "hit") == 1
        assert counts(data, semconv.CACHE_GETS, cache_name=cache) == 2  # one get per lookup
        assert counts(data, semconv.CACHE_PUTS, cache_name=cache, cache_layer="redis") == 1
        assert counts(data, semconv.CACHE_PUTS, cache_name=cache, cache_layer="memory") == 1
        assert counts(data, semconv.CACHE_ERRORS, cache_name=cache) == 0


def test_from_redis_after_the_memory_layer_evicted(settings: Settings) -> None:
    exported = Exported()
    app = create_app(replace(settings, memory_entries=2), **exported.options())
    with serve(app) as client:
        for limit in (1, 2, 3):  # the third evicts the first from memory
            assert source(client.get("/trades", params={"user_id": 4, "limit": limit})) == (
                "miss", "db")
        from_redis = client.get("/trades", params={"user_id": 4, "limit": 1})
        from_memory = client.get("/trades", params={"user_id": 4, "limit": 1})
        data = collect(app, exported)
    assert source(from_redis) == ("hit", "redis")
    assert source(from_memory) == ("hit", "memory")
    assert from_redis.json() == from_memory.json()
    assert len(from_redis.json()["trades"]) == 1
    assert gets(data, "trades", "redis", "hit") == 1
    assert gets(data, "trades", "memory", "hit") == 1
    assert gets(data, "trades", "redis", "miss") == 3
    # 1 then 3 evicted: limit=1 to make room for 3, limit=2 when limit=1 came back from Redis
    assert counts(data, semconv.CACHE_EVICTIONS, cache_name="trades", cache_layer="memory") == 2
    assert counts(data, semconv.CACHE_PUTS, cache_name="trades", cache_layer="memory") == 4


def test_memory_layer_is_lru_and_ttl_aware() -> None:
    now = [100.0]
    lru = MemoryLRU(3, clock=lambda: now[0])
    assert lru.put("u1:lists", "20", ["a"], ttl=10) == 0
    assert lru.put("u1:lists", "5", ["b"], ttl=1) == 0
    assert lru.put("u2:lists", "20", ["c"], ttl=10) == 0
    assert lru.get("u1:lists", "20") == (["a"], 0)  # now the most recently used
    assert lru.put("u3:lists", "20", ["d"], ttl=10) == 1  # the least recently used goes
    assert ("u1:lists", "5") not in lru and ("u1:lists", "20") in lru
    now[0] += 10
    assert lru.get("u1:lists", "20") == (None, 1)  # expired: dropped, counted
    assert lru.get("u1:lists", "20") == (None, 0)
    assert lru.drop_group("u2:lists") == 1 and lru.drop_group("u2:lists") == 0
    assert len(lru) == 1


def test_a_post_invalidates_the_users_lists_and_analytics_in_both_layers(
    settings: Settings, prefix: str
) -> None:
    exported = Exported()
    app = create_app(settings, **exported.options())
    keys = redis.Redis.from_url(SHARED_REDIS)
    with serve(app) as client:
        listed = client.get("/trades", params={"user_id": 5})
        trade_id = listed.json()["trades"][0]["id"]
        client.get("/analytics/summary", params={"user_id": 5})
        item = client.get(f"/trades/{trade_id}", params={"user_id": 5})
        assert source(item) == ("miss", "db") and item.json()["trade"]["id"] == trade_id
        client.get("/trades", params={"user_id": 6})
        assert keys.exists(f"{prefix}trades:u5:lists", f"{prefix}analytics:u5") == 2
        before = client.get("/analytics/summary", params={"user_id": 5}).json()["symbols"]

        created = client.post("/trades", json={"user_id": 5, "symbol": "zzz", "side": "buy",
                                               "quantity": 7, "price": 12.5, "pnl": 3})
        assert created.status_code == 201, created.text
        new = created.json()
        assert (new["user_id"], new["symbol"], new["side"], new["quantity"]) == (5, "ZZZ",
                                                                                 "BUY", 7)
        assert created.headers["Location"] == f"/trades/{new['id']}?user_id=5"
        assert keys.exists(f"{prefix}trades:u5:lists", f"{prefix}analytics:u5") == 0
        assert keys.exists(f"{prefix}trades:u5:items", f"{prefix}trades:u6:lists") == 2

        relisted = client.get("/trades", params={"user_id": 5})
        assert source(relisted) == ("miss", "db")
        assert relisted.json()["trades"][0]["id"] == new["id"]
        summary = client.get("/analytics/summary", params={"user_id": 5})
        assert source(summary) == ("miss", "db")
        assert {s["symbol"] for s in summary.json()["symbols"]} == {
            s["symbol"] for s in before} | {"ZZZ"}
        assert source(client.get(f"/trades/{trade_id}", params={"user_id": 5})) == (
            "hit", "memory")
        assert source(client.get("/trades", params={"user_id": 6})) == ("hit", "memory")
        assert source(client.get(f"/trades/{new['id']}", params={"user_id": 5})) == (
            "miss", "db")
        assert client.get(f"/trades/{new['id']}", params={"user_id": 6}).status_code == 404
        data = collect(app, exported)
    for cache in ("trades", "analytics"):
        for layer in ("memory", "redis"):
            assert counts(data, semconv.CACHE_INVALIDATIONS, cache_name=cache,
                          cache_layer=layer) == 1, (cache, layer)


@pytest.mark.parametrize(("body", "status"), [
    ("not json", 400),
    ([1, 2], 400),
    ({"user_id": 5, "symbol": "AAPL", "side": "HOLD", "quantity": 1, "price": 1}, 422),
    ({"user_id": 5, "symbol": "AAPL", "side": "BUY", "quantity": 0, "price": 1}, 422),
    ({"user_id": 5, "symbol": "AAPL", "side": "BUY", "quantity": 1, "price": -1}, 422),
    ({"user_id": 5, "symbol": "A" * 13, "side": "BUY", "quantity": 1, "price": 1}, 422),
    ({"user_id": True, "symbol": "AAPL", "side": "BUY", "quantity": 1, "price": 1}, 422),
    ({"user_id": 999, "symbol": "AAPL", "side": "BUY", "quantity": 1, "price": 1}, 422),
])
def test_a_post_is_validated(settings: Settings, body: Any, status: int) -> None:
    with serve(create_app(settings, **Exported().options())) as client:
        listed = client.get("/trades", params={"user_id": 5})
        if isinstance(body, str):
            response = client.post("/trades", content=body)
        else:
            response = client.post("/trades", json=body)
        assert response.status_code == status, response.text
        assert "error" in response.json()
        assert source(client.get("/trades", params={"user_id": 5})) == ("hit", "memory")
        assert client.get("/trades", params={"user_id": 5}).json() == listed.json()


def test_with_redis_stopped_memory_and_the_database_serve(
    settings: Settings, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    exported = Exported()
    app = create_app(replace(settings, redis_url=own_redis.url, redis_timeout=0.2),
                     **exported.options())
    with serve(app) as client:
        warm = client.get("/trades", params={"user_id": 7})
        assert source(warm) == ("miss", "db")
        assert client.get("/analytics/summary", params={"user_id": 7}).status_code == 200
        own_redis.stop()
        answers = [client.get("/trades", params={"user_id": 7}) for _ in range(3)]
        cold = client.get("/trades", params={"user_id": 8})
        cold_again = client.get("/trades", params={"user_id": 8})
        created = client.post("/trades", json={"user_id": 7, "symbol": "DOWN", "side": "SELL",
                                               "quantity": 1, "price": 2})
        after = client.get("/trades", params={"user_id": 7})
        data = collect(app, exported)
    assert [(a.status_code, *source(a)) for a in answers] == [(200, "hit", "memory")] * 3
    assert all(a.json() == warm.json() for a in answers)
    assert (cold.status_code, *source(cold)) == (200, "miss", "db")
    assert (cold_again.status_code, *source(cold_again)) == (200, "hit", "memory")
    assert created.status_code == 201
    assert (after.status_code, *source(after)) == (200, "miss", "db")
    assert after.json()["trades"][0]["symbol"] == "DOWN"
    # the cold lookup's get (its put is not tried), the POST's invalidation, and the read
    # after it, which tries that invalidation again first
    errors = counts(data, semconv.CACHE_ERRORS, cache_name="trades", cache_layer="redis",
                    error_type="ConnectionError")
    assert errors == 3
    assert counts(data, semconv.CACHE_ERRORS, cache_name="analytics", cache_layer="redis") == 1
    assert gets(data, "trades", "redis", "miss") == 3  # warm, cold, after
    assert gets(data, "trades", "memory", "hit") == 4
    assert counts(data, semconv.CACHE_INVALIDATIONS, cache_name="trades",
                  cache_layer="memory") == 1
    # the limiter failed open and said so once; each cache said so once
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failing open" in m for m in messages) == 1, messages
    assert sum("serving from memory and the database" in m for m in messages) == 2, messages


def test_a_hung_redis_costs_one_request_its_timeout_not_every_request(
    settings: Settings, own_redis: RedisServer
) -> None:
    exported = Exported()
    app = create_app(replace(settings, redis_url=own_redis.url, redis_timeout=0.2,
                             redis_cooldown=60), **exported.options())
    assert own_redis.proc is not None
    with serve(app) as client:
        assert source(client.get("/trades", params={"user_id": 9})) == ("miss", "db")
        own_redis.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.perf_counter()
            warm = client.get("/trades", params={"user_id": 9})
            first = time.perf_counter() - started
            cold, took = [], []
            for limit in (1, 2, 3):
                started = time.perf_counter()
                cold.append(client.get("/trades", params={"user_id": 10, "limit": limit}))
                took.append(time.perf_counter() - started)
        finally:
            own_redis.proc.send_signal(signal.SIGCONT)
        data = collect(app, exported)
    assert (warm.status_code, *source(warm)) == (200, "hit", "memory")
    assert [(c.status_code, *source(c)) for c in cold] == [(200, "miss", "db")] * 3
    # the limiter's two tries timed out, once; then nobody waits for Redis (each try alone
    # would take 0.2 s) and every lookup it would have served counts as a fallback
    assert 0.4 <= first < 3
    assert max(took) < 0.2, took
    assert counts(data, semconv.CACHE_ERRORS, cache_name="trades", cache_layer="redis",
                  error_type="TimeoutError") == 3


def test_the_redis_gate_closes_on_silence_only() -> None:
    now = [0.0]
    gate = RedisGate(2.0, clock=lambda: now[0])
    assert not gate.closed()
    gate.failed(redis.exceptions.ResponseError("NOPERM"))  # Redis answered: still asked
    assert not gate.closed()
    gate.failed(redis.exceptions.TimeoutError("Timeout reading"))
    assert gate.closed() and gate.error_type == "TimeoutError"
    now[0] = 1.9
    assert gate.closed()
    now[0] = 2.0
    assert not gate.closed()
    never = RedisGate(0)
    never.failed(redis.exceptions.ConnectionError("refused"))
    assert not never.closed()


def test_an_invalidation_redis_refused_is_done_before_the_next_read(
    settings: Settings, own_redis: RedisServer
) -> None:
    """Redis refuses the DEL of a POST's invalidation (here: an ACL without DEL); the entry it
    still holds is dropped before that cache next reads Redis, so it is never served."""
    exported = Exported()
    app = create_app(replace(settings, redis_url=own_redis.url), **exported.options())
    admin = own_redis.admin()
    with serve(app) as client:
        assert source(client.get("/trades", params={"user_id": 9})) == ("miss", "db")
        admin.execute_command("ACL", "SETUSER", "default", "-del")
        try:
            created = client.post("/trades", json={"user_id": 9, "symbol": "LATE",
                                                   "side": "BUY", "quantity": 1, "price": 1})
            assert created.status_code == 201
            assert admin.exists(f"{settings.key_prefix}trades:u9:lists") == 1
        finally:
            admin.execute_command("ACL", "SETUSER", "default", "+del")
        after = client.get("/trades", params={"user_id": 9})
        data = collect(app, exported)
    assert source(after) == ("miss", "db")
    assert after.json()["trades"][0]["symbol"] == "LATE"
    failed = [p for p in points_of(data, semconv.CACHE_ERRORS)
              if p.attributes[semconv.CACHE_NAME] == "trades"]
    assert [(p.attributes[semconv.CACHE_LAYER], p.value) for p in failed] == [("redis", 1)]
    assert failed[0].attributes[semconv.ERROR_TYPE].endswith("Error")
    assert counts(data, semconv.CACHE_INVALIDATIONS, cache_name="trades",
                  cache_layer="redis") == 1  # the DEL, done late
    assert counts(data, semconv.CACHE_INVALIDATIONS, cache_name="trades",
                  cache_layer="memory") == 1


# --------------------------------------------------------------------------- gzip
def test_gzip_for_responses_over_1_kb_only(settings: Settings) -> None:
    with serve(create_app(settings, **Exported().options())) as client:
        gzip = {"Accept-Encoding": "gzip"}
        big = client.get("/trades", params={"user_id": 1, "limit": 20}, headers=gzip)
        small = client.get("/trades", params={"user_id": 1, "limit": 1}, headers=gzip)
        plain = client.get("/trades", params={"user_id": 1, "limit": 20},
                           headers={"Accept-Encoding": "identity"})
    assert len(plain.content) > 1024 and len(small.content) < 1024
    assert big.headers["Content-Encoding"] == "gzip"
    assert int(big.headers["Content-Length"]) < len(plain.content) / 2
    assert big.json() == plain.json()
    assert (big.headers["X-Cache"], plain.headers["X-Cache"]) == ("miss", "hit")
    assert "Content-Encoding" not in small.headers
    assert "Content-Encoding" not in plain.headers


# --------------------------------------------------------------------------- rate limit
def _away_from_the_window_edge(window: float, margin: float = 5.0) -> None:
    """Wait for a fresh window when the current one ends within `margin` seconds."""
    left = window - time.time() % window
    if left < margin:
        time.sleep(left + 0.05)


def test_rate_limit_answers_429_with_retry_after(settings: Settings) -> None:
    exported = Exported()
    app = create_app(replace(settings, rate_limit=5, rate_window=3600), **exported.options())
    _away_from_the_window_edge(3600)
    with serve(app) as client:
        mine = {"X-Client-Id": "alice"}
        allowed = [client.get("/trades", headers=mine) for _ in range(5)]
        refused = client.get("/trades", headers=mine)
        posted = client.post("/trades", headers=mine, json={})
        other = client.get("/trades", headers={"X-Client-Id": "bob"})
        by_address = [client.get("/analytics/summary").status_code for _ in range(6)]
        health = [client.get("/healthz").status_code for _ in range(7)]
        data = collect(app, exported, requests=5 + 3 + 6 + 7)
    assert [r.status_code for r in allowed] == [200] * 5
    assert [r.headers["X-RateLimit-Remaining"] for r in allowed] == ["4", "3", "2", "1", "0"]
    assert refused.status_code == posted.status_code == 429
    assert refused.json()["limit"] == 5
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert "X-Cache" not in refused.headers
    assert other.status_code == 200
    assert by_address == [200] * 5 + [429]
    assert health == [200] * 7
    limited = [p for p in points_of(data, semconv.HTTP_SERVER_DURATION)
               if p.attributes[semconv.HTTP_RESPONSE_STATUS_CODE] == "429"]
    assert {(p.attributes[semconv.HTTP_REQUEST_METHOD], p.attributes[semconv.HTTP_ROUTE],
             p.value.count) for p in limited} == {
        ("GET", "/trades", 1), ("POST", "/trades", 1), ("GET", "/analytics/summary", 1)}
    # a refused request is not a cache lookup
    assert counts(data, semconv.CACHE_GETS) == 5 + 1 + 5


def test_the_default_rate_limit_is_100_a_minute(settings: Settings) -> None:
    defaults = Settings.from_environment()
    assert (defaults.rate_limit, defaults.rate_window) == (100, 60)
    assert (settings.rate_limit, settings.rate_window) == (100, 60)
    _away_from_the_window_edge(60)
    with serve(create_app(settings, **Exported().options())) as client:
        mine = {"X-Client-Id": "carol"}
        statuses = Counter(client.get("/trades", headers=mine).status_code for _ in range(100))
        refused = client.get("/trades", headers=mine)
    assert statuses == {200: 100}
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


# --------------------------------------------------------------------------- fault injection
def test_fault_injection_is_off_by_default(settings: Settings) -> None:
    assert Settings.from_environment().faults is False
    with serve(create_app(settings, **Exported().options())) as client:
        started = time.perf_counter()
        response = client.get("/trades", headers={"X-Inject-Error": "1",
                                                  "X-Inject-Latency-Ms": "5000"})
        assert time.perf_counter() - started < 2.5
        assert client.get("/trades", headers={"X-Inject-Error": "junk"}).status_code == 200
    assert response.status_code == 200


def test_fault_injection_when_enabled(settings: Settings) -> None:
    exported = Exported()
    app = create_app(replace(settings, faults=True), **exported.options())
    with serve(app) as client:
        failed = client.get("/trades/1", headers={"X-Inject-Error": "1"})
        fine = client.get("/trades", headers={"X-Inject-Error": "0"})
        started = time.perf_counter()
        slow = client.get("/trades", headers={"X-Inject-Latency-Ms": "300"})
        slept = time.perf_counter() - started
        bad = [client.get("/trades", headers={name: value}).status_code
               for name, value in (("X-Inject-Error", "2"), ("X-Inject-Error", "nan"),
                                   ("X-Inject-Latency-Ms", "-1"),
                                   ("X-Inject-Latency-Ms", "99999"))]
        health = client.get("/healthz", headers={"X-Inject-Error": "1"})
        data = collect(app, exported, requests=8)
    assert failed.status_code == 500 and failed.json() == {"error": "injected fault"}
    assert "X-Cache" not in failed.headers
    assert fine.status_code == slow.status_code == health.status_code == 200
    assert slept >= 0.3
    assert bad == [400] * 4
    errors = [p for p in points_of(data, semconv.HTTP_SERVER_DURATION)
              if p.attributes.get(semconv.ERROR_TYPE)]
    assert [(p.attributes[semconv.HTTP_ROUTE], p.attributes[semconv.HTTP_RESPONSE_STATUS_CODE],
             p.attributes[semconv.ERROR_TYPE], p.value.count) for p in errors] == [
        ("/trades/{trade_id}", "500", "500", 1)]
    slowest = max(p.value.max for p in points_of(data, semconv.HTTP_SERVER_DURATION))
    assert slowest >= 0.3


def test_injected_errors_follow_the_probability() -> None:
    class Request:
        headers = {"X-Inject-Error": "0.3"}

    draws = iter([0.29, 0.3, 0.9])
    faults = FaultInjection(True, chance=lambda: next(draws))
    results = [asyncio.run(faults.apply(Request())) for _ in range(3)]  # type: ignore[arg-type]
    assert [r.status_code if r else None for r in results] == [500, None, None]


# --------------------------------------------------------------------------- HTTP metrics
def test_routes_are_recorded_by_template(settings: Settings) -> None:
    exported = Exported()
    app = create_app(settings, **exported.options())
    with serve(app) as client:
        trade_id = client.get("/trades", params={"user_id": 2}).json()["trades"][0]["id"]
        assert client.get(f"/trades/{trade_id}", params={"user_id": 2}).status_code == 200
        assert client.get("/trades/424242", params={"user_id": 2}).status_code == 404
        assert client.get("/trades/abc").status_code == 400
        assert client.get("/no/such/path").status_code == 404
        assert client.delete("/trades").status_code == 405
        data = collect(app, exported, requests=6)
    seen: Counter[tuple[str, str | None, str]] = Counter()
    for point in points_of(data, semconv.HTTP_SERVER_DURATION):
        attributes = point.attributes
        seen[(attributes[semconv.HTTP_REQUEST_METHOD], attributes.get(semconv.HTTP_ROUTE),
              attributes[semconv.HTTP_RESPONSE_STATUS_CODE])] += point.value.count
    assert seen == {
        ("GET", "/trades", "200"): 1,
        ("GET", "/trades/{trade_id}", "200"): 1,
        ("GET", "/trades/{trade_id}", "404"): 1,
        ("GET", "/trades/{trade_id}", "400"): 1,
        ("GET", None, "404"): 1,
        ("DELETE", "/trades", "405"): 1,
    }


# --------------------------------------------------------------------------- traffic
def test_traffic_counts_match_what_the_app_recorded(settings: Settings) -> None:
    exported = Exported()
    app = create_app(settings, **exported.options())
    with serve(app) as client:
        stats = asyncio.run(drive(str(client.base_url), rate=60, duration=2.5, slow_every=20,
                                  report_every=0, write_share=0.05))
        data = collect(app, exported, requests=stats["requests"])
    assert stats["errors"] == 0 and stats["rate_limited"] == 0
    assert stats["cache_hit"] > 0 and stats["cache_miss"] > 0
    assert stats["kinds"]["slow"] >= 3 and stats["kinds"]["write"] >= 1
    assert stats["hit_rate"] == round(
        stats["cache_hit"] / (stats["cache_hit"] + stats["cache_miss"]), 4)
    assert set(stats["by_route"]) <= {"GET /trades", "GET /trades/{trade_id}", "POST /trades",
                                      "GET /analytics/summary"}
    assert stats["requests"] == sum(stats["status"].values()) == sum(
        n for by_status in stats["by_route"].values() for n in by_status.values())
    # what the app recorded is what the generator saw, request for request
    assert counts(data, semconv.CACHE_GETS, cache_result="hit") == stats["cache_hit"]
    assert counts(data, semconv.CACHE_GETS, cache_result="miss") == stats["cache_miss"]
    recorded: Counter[str] = Counter()
    for point in points_of(data, semconv.HTTP_SERVER_DURATION):
        a = point.attributes
        route = f"{a[semconv.HTTP_REQUEST_METHOD]} {a[semconv.HTTP_ROUTE]}"
        recorded[f"{route} {a[semconv.HTTP_RESPONSE_STATUS_CODE]}"] += point.value.count
    assert recorded == {f"{route} {status}": n for route, by_status in stats["by_route"].items()
                        for status, n in by_status.items()}


def test_traffic_injects_errors_and_latency(settings: Settings) -> None:
    with serve(create_app(replace(settings, faults=True), **Exported().options())) as client:
        stats = asyncio.run(drive(str(client.base_url), rate=40, duration=1.5, slow_every=0,
                                  report_every=0, error_rate=1.0, latency_ms=20,
                                  fault_share=0.5))
    assert 0 < stats["faulted"] < stats["requests"]
    assert stats["status"]["500"] == stats["errors"] == stats["faulted"]
    assert stats["status"]["500"] + stats["status"].get("200", 0) + stats["status"].get(
        "201", 0) == stats["requests"]


def test_noisy_client_is_rate_limited(settings: Settings) -> None:
    _away_from_the_window_edge(3600)
    app = create_app(replace(settings, rate_limit=10, rate_window=3600), **Exported().options())
    with serve(app) as client:
        stats = asyncio.run(drive(str(client.base_url), rate=60, duration=1.5, slow_every=0,
                                  report_every=0, clients=100, noisy_share=0.5))
    assert stats["rate_limited"] > 0
    assert stats["rate_limited"] == stats["status"]["429"]


def test_the_mix_gives_a_hit_rate_near_96_percent_once_warm() -> None:
    """The generator's plan against a model of the app's cache (no TTLs, nothing evicted):
    after the warm-up, about 96 lookups in 100 are hits."""
    rng, mix = random.Random(5), traffic.Mix()
    recent: dict[int, list[int]] = {}
    cached: set[tuple[str, int, str]] = set()
    next_id = 100_000
    results: list[bool] = []
    for number in range(30_000):
        planned = traffic.plan(rng, number, 50, mix, recent)
        user = planned.user_id
        if planned.kind == "write":
            cached -= {k for k in cached if k[1] == user and k[0] in ("lists", "summary")}
            recent.setdefault(user, []).insert(0, next_id)
            del recent[user][traffic.RECENT_IDS:]
            next_id += 1
            continue
        if planned.kind == "slow":
            continue
        kind = {"trades": "lists", "cold": "lists", "trade": "items",
                "summary": "summary"}[planned.kind]
        key = (kind, user, planned.path)
        results.append(key in cached)
        cached.add(key)
        if planned.kind == "trades" and user not in recent:
            recent[user] = [user * 1000 + n for n in range(traffic.RECENT_IDS)]
    warm = results[5000:]
    assert 0.95 <= sum(warm) / len(warm) <= 0.97


# --------------------------------------------------------------------------- the rest
def test_instrumented_pool_query_and_slow_query_metrics(settings: Settings) -> None:
    exported = Exported()
    app = create_app(settings, **exported.options())
    with serve(app) as client:
        client.get("/trades", params={"user_id": 1})
        slow = client.get("/analytics/summary", params={"user_id": 1, "slow": "1"})
        assert slow.headers["X-Cache"] == "bypass"
        data = collect(app, exported)
    sqlite_max = [p for p in points_of(data, semconv.CONNECTION_MAX)
                  if p.attributes[semconv.DB_SYSTEM_NAME] == "sqlite"]
    assert [p.value for p in sqlite_max] == [60]  # TradeSense's 20 + 40
    redis_max = [p for p in points_of(data, semconv.CONNECTION_MAX)
                 if p.attributes[semconv.DB_SYSTEM_NAME] == "redis"]
    assert len(redis_max) == 1
    durations = {(p.attributes.get(semconv.DB_OPERATION_NAME),
                  p.attributes.get(semconv.DB_COLLECTION_NAME))
                 for p in points_of(data, semconv.OPERATION_DURATION)}
    assert ("SELECT", "trades") in durations
    slow_spans = [s for s in exported.spans.get_finished_spans()
                  if "tradesense_sleep" in str(attributes_of(s).get(semconv.DB_QUERY_FINGERPRINT))]
    assert len(slow_spans) == 1
    assert slow_spans[0].name == "SELECT trades"


def _wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} never opened")


@pytest.fixture
def postgres_database() -> Iterator[str]:
    admin = create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
                          isolation_level="AUTOCOMMIT")
    name = f"tradesense_example_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
    except Exception as error:
        pytest.skip(f"PostgreSQL unavailable: {type(error).__name__}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def test_on_postgresql_the_slow_summary_sleeps(
    settings: Settings, postgres_database: str
) -> None:
    assert async_url(postgres_database).startswith("postgresql+asyncpg://")
    exported = Exported()
    on_postgres = replace(settings, database_url=postgres_database, seed_trades=500,
                          slow_seconds=0.6)
    with serve(create_app(on_postgres, **exported.options())) as client:
        started = time.perf_counter()
        response = client.get("/analytics/summary", params={"user_id": 2, "slow": "1"})
        assert time.perf_counter() - started >= 0.6
        started = time.perf_counter()
        nobody = client.get("/analytics/summary", params={"user_id": 987654, "slow": "1"})
        assert nobody.status_code == 200 and time.perf_counter() - started >= 0.6
        assert response.status_code == 200
        assert response.json()["totals"]["trades"] > 0
        assert client.get("/analytics/summary", params={"user_id": 2}).json()["symbols"]
        created = client.post("/trades", json={"user_id": 2, "symbol": "PG", "side": "BUY",
                                               "quantity": 1, "price": 1})
        assert created.status_code == 201, created.text
        assert client.post("/trades", json={"user_id": 9999, "symbol": "PG", "side": "BUY",
                                            "quantity": 1, "price": 1}).status_code == 422
    first, other = [s for s in exported.spans.get_finished_spans()
                    if attributes_of(s).get(semconv.SLOW_QUERY)]
    span = first
    assert attributes_of(other)[semconv.DB_QUERY_FINGERPRINT] == \
        attributes_of(first)[semconv.DB_QUERY_FINGERPRINT]
    assert span.name == "SELECT trades"
    assert attributes_of(span)[semconv.DB_QUERY_FINGERPRINT] == (
        "SELECT count(*) AS trades, sum(pnl) AS total_pnl FROM trades "
        "WHERE user_id = ? AND (SELECT pg_sleep(?)) IS NOT NULL"
    )
