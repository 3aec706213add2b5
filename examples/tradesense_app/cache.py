"""A read-through Redis cache with TradeSense's TTLs; Redis being down only costs the cache."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
PREFIX = "tradesense:"


class Cache:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    async def get_or_load(
        self, key: str, ttl: int, load: Callable[[], Awaitable[Any]]
    ) -> tuple[Any, bool]:
        """(value, hit): the cached value, or `load()`'s, stored for `ttl` seconds."""
        try:
            cached = await self.client.get(PREFIX + key)
        except RedisError as error:
            log.warning("cache read failed: %s", type(error).__name__)
            cached = None
        if cached is not None:
            return json.loads(cached), True
        value = await load()
        try:
            await self.client.set(PREFIX + key, json.dumps(value, default=str), ex=ttl)
        except RedisError as error:
            log.warning("cache write failed: %s", type(error).__name__)
        return value, False
