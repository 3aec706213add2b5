"""The Starlette application, TradeSense's backend in miniature.

    GET  /trades?user_id=&limit=      the user's latest trades       cache "trades", 300 s
    GET  /trades/{trade_id}?user_id=  one of the user's trades       cache "trades", 300 s
    POST /trades                      a new trade (JSON), 201; drops the user's cached trade
                                      lists and analytics in both layers
    GET  /analytics/summary?user_id=  per-symbol totals              cache "analytics", 3600 s
                                      (&slow=1: a deliberately slow query, never cached)
    GET  /healthz

Cached answers say where they came from: `X-Cache: hit|miss|bypass` and `X-Cache-Layer:
memory|redis|db`. Every route but /healthz is rate limited (100 a minute per client, in Redis)
and honours fault injection when it is enabled (see faults.py). Responses over 1 KB are gzipped.
Everything is instrumented: `instrument(engine, redis, app=app)` and `handle.cache(name)`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeGuard

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples.tradesense_app import db
from examples.tradesense_app.cache import HybridCache, RedisGate
from examples.tradesense_app.faults import ERROR_HEADER, LATENCY_HEADER, FaultInjection
from examples.tradesense_app.ratelimit import RateLimiter, client_id
from examples.tradesense_app.settings import GZIP_MINIMUM_SIZE, LONG_TTL, SHORT_TTL, Settings
from exporter.instrument import instrument

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
SIDES = ("BUY", "SELL")
_SYMBOL = re.compile(r"[A-Z0-9._-]{1,12}")


def create_app(settings: Settings | None = None, **instrument_options: Any) -> Starlette:
    """The app; `instrument_options` go to `exporter.instrument.instrument()`."""
    chosen = settings or Settings.from_environment()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = db.make_engine(chosen)
        # A cache must fail fast: short timeouts, one immediate retry (a pooled connection that
        # went stale when Redis restarted), never redis-py's default ten retries with backoff.
        client = redis.Redis.from_url(
            chosen.redis_url, socket_timeout=chosen.redis_timeout,
            socket_connect_timeout=chosen.redis_timeout, retry=Retry(NoBackoff(), 1))
        options = {"slow_query_threshold": chosen.slow_query_threshold,
                   "service_name": "tradesense-demo", **instrument_options}
        handle = instrument(engine, client, app=app, **options)
        await db.prepare(engine, chosen)
        state = app.state
        state.engine, state.settings, state.instrumentation = engine, chosen, handle
        state.redis = client
        gate = RedisGate(chosen.redis_cooldown)

        def hybrid(name: str, ttl: float) -> HybridCache:
            return HybridCache(name, client, handle.cache(name), ttl=ttl,
                               prefix=chosen.key_prefix, memory_entries=chosen.memory_entries,
                               memory_ttl=chosen.memory_ttl, gate=gate)

        state.trades, state.analytics = hybrid("trades", SHORT_TTL), hybrid("analytics", LONG_TTL)
        state.limiter = RateLimiter(client, chosen.rate_limit, chosen.rate_window,
                                    chosen.key_prefix, gate)
        state.faults = FaultInjection(chosen.faults)
        if chosen.faults:
            log.warning("fault injection is ON: requests may ask for errors (%s) and latency "
                        "(%s); never run this in production", ERROR_HEADER, LATENCY_HEADER)
        try:
            yield
        finally:
            await asyncio.to_thread(handle.force_flush)
            handle.uninstrument()
            await client.aclose()
            await engine.dispose()

    routes = [
        Route("/trades", guarded(list_trades), methods=["GET"]),
        Route("/trades", guarded(create_trade), methods=["POST"]),
        Route("/trades/{trade_id}", guarded(get_trade), methods=["GET"]),
        Route("/analytics/summary", guarded(analytics_summary), methods=["GET"]),
        Route("/healthz", health),
    ]
    middleware = [Middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_SIZE)]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def guarded(endpoint: Endpoint) -> Endpoint:
    """The rate limit, then fault injection, then the endpoint: inside the route, so that the
    429s and injected faults are recorded under the route's template."""

    @functools.wraps(endpoint)
    async def guarded_endpoint(request: Request) -> Response:
        state = request.app.state
        decision = await state.limiter.check(client_id(request))
        if decision is not None and not decision.allowed:
            return JSONResponse(
                {"error": "rate limit exceeded", "limit": decision.limit,
                 "window_seconds": state.limiter.window},
                status_code=429, headers=decision.headers())
        response = await state.faults.apply(request)
        if response is None:
            response = await endpoint(request)
        if decision is not None:
            response.headers.update(decision.headers())
        return response

    return guarded_endpoint


async def list_trades(request: Request) -> Response:
    user_id = _int_param(request, "user_id", 1)
    requested = _int_param(request, "limit", 20)
    if user_id is None or requested is None:
        return _error("user_id and limit must be positive integers")
    limit = min(requested, 500)

    async def load() -> list[dict[str, Any]]:
        async with request.app.state.engine.connect() as connection:
            return await db.recent_trades(connection, user_id, limit)

    cache: HybridCache = request.app.state.trades
    rows, source = await cache.get_or_load(_lists(user_id), str(limit), load)
    return _cached({"user_id": user_id, "trades": rows}, source)


async def get_trade(request: Request) -> Response:
    user_id = _int_param(request, "user_id", 1)
    trade_id = _positive(request.path_params["trade_id"])
    if user_id is None or trade_id is None:
        return _error("user_id and trade_id must be positive integers")

    async def load() -> dict[str, Any] | None:
        async with request.app.state.engine.connect() as connection:
            return await db.trade_by_id(connection, user_id, trade_id)

    cache: HybridCache = request.app.state.trades
    trade, source = await cache.get_or_load(_items(user_id), str(trade_id), load)
    if trade is None:
        return _cached({"error": "no such trade"}, source, status_code=404)
    return _cached({"user_id": user_id, "trade": trade}, source)


async def create_trade(request: Request) -> Response:
    try:
        body = await request.json()
    except ValueError:
        return _error("the body must be JSON")
    if not isinstance(body, dict):
        return _error("the body must be a JSON object")
    trade, problem = _valid_trade(body)
    if trade is None:
        return _error(problem, status_code=422)
    state = request.app.state
    async with state.engine.begin() as connection:
        if not await db.user_exists(connection, trade["user_id"]):
            return _error("no such user", status_code=422)
        created = await db.insert_trade(connection, trade)
    user_id = trade["user_id"]
    await state.trades.invalidate(_lists(user_id))
    await state.analytics.invalidate(_summary(user_id))
    return JSONResponse(created, status_code=201,
                        headers={"Location": f"/trades/{created['id']}?user_id={user_id}"})


async def analytics_summary(request: Request) -> Response:
    user_id = _int_param(request, "user_id", 1)
    if user_id is None:
        return _error("user_id must be a positive integer")
    engine = request.app.state.engine
    if request.query_params.get("slow") == "1":
        async with engine.connect() as connection:
            totals = await db.slow_summary(connection, user_id, request.app.state.settings)
        return _cached({"user_id": user_id, "totals": totals}, None)

    async def load() -> list[dict[str, Any]]:
        async with engine.connect() as connection:
            return await db.summary(connection, user_id)

    cache: HybridCache = request.app.state.analytics
    symbols, source = await cache.get_or_load(_summary(user_id), "summary", load)
    return _cached({"user_id": user_id, "symbols": symbols}, source)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


# Cache groups: one per user and kind, so a write drops exactly that user's entries.
def _lists(user_id: int) -> str:
    return f"u{user_id}:lists"


def _items(user_id: int) -> str:
    return f"u{user_id}:items"


def _summary(user_id: int) -> str:
    return f"u{user_id}"


def _valid_trade(body: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(the trade to insert, "") or (None, what is wrong)."""
    user_id, quantity = body.get("user_id"), body.get("quantity")
    symbol, side = body.get("symbol"), body.get("side")
    price, pnl = body.get("price"), body.get("pnl", 0.0)
    if not _is_int(user_id) or user_id < 1:
        return None, "user_id must be a positive integer"
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol.upper()):
        return None, "symbol must be 1 to 12 letters, digits, '.', '_' or '-'"
    if not isinstance(side, str) or side.upper() not in SIDES:
        return None, "side must be BUY or SELL"
    if not _is_int(quantity) or not 1 <= quantity <= 1_000_000:
        return None, "quantity must be an integer from 1 to 1000000"
    if not _is_number(price) or price <= 0:
        return None, "price must be a positive number"
    if not _is_number(pnl):
        return None, "pnl must be a number"
    return {"user_id": user_id, "symbol": symbol.upper(), "side": side.upper(),
            "quantity": quantity, "price": float(price), "pnl": float(pnl)}, ""


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _int_param(request: Request, name: str, default: int) -> int | None:
    raw = request.query_params.get(name)
    return default if raw is None else _positive(raw)


def _positive(raw: str) -> int | None:
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 1 else None


def _error(message: str, status_code: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


def _cached(body: dict[str, Any], source: str | None, status_code: int = 200) -> JSONResponse:
    """X-Cache: hit (from memory or Redis), miss (loaded) or bypass (no cache asked)."""
    if source is None:
        headers = {"X-Cache": "bypass"}
    else:
        headers = {"X-Cache": "miss" if source == "db" else "hit", "X-Cache-Layer": source}
    return JSONResponse(body, status_code=status_code, headers=headers)
