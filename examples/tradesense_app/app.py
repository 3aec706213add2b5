"""The Starlette application: GET /trades, GET /analytics/summary, GET /healthz."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples.tradesense_app import db
from examples.tradesense_app.cache import Cache
from examples.tradesense_app.settings import LONG_TTL, SHORT_TTL, Settings
from exporter.instrument import instrument


def create_app(settings: Settings | None = None, **instrument_options: Any) -> Starlette:
    """The app; `instrument_options` go to `exporter.instrument.instrument()`."""
    chosen = settings or Settings.from_environment()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = db.make_engine(chosen)
        client = redis.Redis.from_url(chosen.redis_url)
        options = {"slow_query_threshold": chosen.slow_query_threshold,
                   "service_name": "tradesense-demo", **instrument_options}
        handle = instrument(engine, client, **options)
        await db.prepare(engine, chosen)
        app.state.engine, app.state.cache, app.state.settings = engine, Cache(client), chosen
        app.state.instrumentation = handle
        try:
            yield
        finally:
            await asyncio.to_thread(handle.force_flush)
            handle.uninstrument()
            await client.aclose()
            await engine.dispose()

    routes = [
        Route("/trades", list_trades),
        Route("/analytics/summary", analytics_summary),
        Route("/healthz", health),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def list_trades(request: Request) -> JSONResponse:
    user_id = _int_param(request, "user_id", 1)
    requested = _int_param(request, "limit", 20)
    if user_id is None or requested is None:
        return JSONResponse({"error": "user_id and limit must be integers"}, status_code=400)
    limit = max(1, min(requested, 500))

    async def load() -> list[dict[str, Any]]:
        async with request.app.state.engine.connect() as connection:
            return await db.recent_trades(connection, user_id, limit)

    cache: Cache = request.app.state.cache
    rows, hit = await cache.get_or_load(f"trades:{user_id}:{limit}", SHORT_TTL, load)
    return _cached({"user_id": user_id, "trades": rows}, hit)


async def analytics_summary(request: Request) -> JSONResponse:
    user_id = _int_param(request, "user_id", 1)
    if user_id is None:
        return JSONResponse({"error": "user_id must be an integer"}, status_code=400)
    engine = request.app.state.engine
    if request.query_params.get("slow") == "1":
        async with engine.connect() as connection:
            totals = await db.slow_summary(connection, user_id, request.app.state.settings)
        return _cached({"user_id": user_id, "totals": totals}, hit=None)

    async def load() -> list[dict[str, Any]]:
        async with engine.connect() as connection:
            return await db.summary(connection, user_id)

    cache: Cache = request.app.state.cache
    symbols, hit = await cache.get_or_load(f"analytics:{user_id}", LONG_TTL, load)
    return _cached({"user_id": user_id, "symbols": symbols}, hit)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _int_param(request: Request, name: str, default: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        return None


def _cached(body: dict[str, Any], hit: bool | None) -> JSONResponse:
    state = "bypass" if hit is None else ("hit" if hit else "miss")
    return JSONResponse(body, headers={"X-Cache": state})
