"""TradeSense's hybrid cache: an in-memory LRU first, Redis second, and memory as the fallback
when Redis fails (a Redis error costs only the cache: the lookup goes on to the database).

Entries live in groups. A group is one Redis hash, `<prefix><cache>:<group>` (one per user and
kind, `tradesense:trades:u3:lists`), whose fields are the entries (`20`: the 20 latest trades).
A write invalidates a whole group in both layers (one DEL in Redis). The hash's TTL is set by its
first entry (EXPIRE ... NX, Redis 7), so no entry outlives the cache's TTL; an entry copied into
memory lives there for at most `memory_ttl` seconds and never past its Redis expiry, which bounds
how stale another worker's memory can be after a write.

What it records through `handle.cache(name)` (exporter.instrument.CacheMetrics), ONE get per
lookup, as the metric contract has it:

- served from memory: gets{layer=memory, result=hit}
- served from Redis: gets{redis, hit}, and the entry is copied into memory: puts{memory}
- loaded from the database: gets{redis, miss} (the last layer tried, even when it failed),
  then puts{redis} and puts{memory}
- Redis failing: errors{redis, error_type=<exception class>}, and the lookup goes on; for
  `cooldown` seconds after Redis failed to answer (refused, timed out) it is not asked at all
  (see RedisGate), and each lookup it would have served counts as an error of the same type
- evictions{memory}: entries the LRU dropped for room or because their TTL had passed
- invalidations{memory|redis}: entries a write removed
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from exporter.instrument import CacheMetrics

log = logging.getLogger(__name__)

MEMORY, REDIS, DATABASE = "memory", "redis", "db"
MAX_PENDING_INVALIDATIONS = 10_000
# What a failing Redis layer may raise: redis-py's errors, a socket error it did not wrap, and a
# value in Redis that is not our JSON. None of them may cost the request.
LAYER_ERRORS = (RedisError, OSError, ValueError)
# Of those, the ones that say Redis is not answering at all (as against refusing one command).
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisGate:
    """Shared by the caches and the rate limiter: once Redis failed to answer, it is left alone
    for `cooldown` seconds, so that a hung Redis costs one request its timeout, not every
    request (0: always ask)."""

    def __init__(self, cooldown: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown, self._clock = cooldown, clock
        self._until = 0.0
        self.error_type = ""  # the class of the failure that closed the gate

    def closed(self) -> bool:
        return self._until > 0 and self._clock() < self._until

    def failed(self, error: BaseException) -> None:
        if self.cooldown > 0 and isinstance(error, UNAVAILABLE):
            self._until = self._clock() + self.cooldown
            self.error_type = type(error).__qualname__


class MemoryLRU:
    """At most `max_entries` entries, least recently used out first, each with its own expiry."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max(1, max_entries)
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()
        self._groups: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._entries

    def get(self, group: str, field: str) -> tuple[Any, int]:
        """(the live value or None, 1 if an expired entry was dropped else 0)."""
        key = (group, field)
        entry = self._entries.get(key)
        if entry is None:
            return None, 0
        expires, value = entry
        if expires <= self._clock():
            self._remove(key)
            return None, 1
        self._entries.move_to_end(key)
        return value, 0

    def put(self, group: str, field: str, value: Any, ttl: float) -> int:
        """Store for `ttl` seconds; returns how many entries were evicted to make room."""
        key = (group, field)
        self._entries[key] = (self._clock() + ttl, value)
        self._entries.move_to_end(key)
        self._groups.setdefault(group, set()).add(field)
        evicted = 0
        while len(self._entries) > self.max_entries:
            oldest, _ = self._entries.popitem(last=False)
            self._forget(oldest)
            evicted += 1
        return evicted

    def drop_group(self, group: str) -> int:
        fields = self._groups.pop(group, set())
        for field in fields:
            del self._entries[(group, field)]
        return len(fields)

    def _remove(self, key: tuple[str, str]) -> None:
        del self._entries[key]
        self._forget(key)

    def _forget(self, key: tuple[str, str]) -> None:
        group, field = key
        fields = self._groups.get(group)
        if fields is not None:
            fields.discard(field)
            if not fields:
                del self._groups[group]


class HybridCache:
    """One named cache (`trades`, `analytics`) over the in-memory LRU and Redis."""

    def __init__(
        self,
        name: str,
        client: redis.Redis,
        recorder: CacheMetrics,
        *,
        ttl: float,
        prefix: str = "tradesense:",
        memory_entries: int = 1000,
        memory_ttl: float = 30.0,
        gate: RedisGate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.client, self.recorder = name, client, recorder
        self.ttl, self.prefix, self.memory_ttl = ttl, prefix, memory_ttl
        self.memory = MemoryLRU(memory_entries, clock)
        self.gate = gate or RedisGate(0)
        self._pending: set[str] = set()  # Redis keys whose invalidation failed: dropped first
        self._redis_failing = False

    def redis_key(self, group: str) -> str:
        return f"{self.prefix}{self.name}:{group}"

    async def get_or_load(
        self, group: str, field: str, load: Callable[[], Awaitable[Any]]
    ) -> tuple[Any, str]:
        """(value, source): from memory, from Redis, or `load()`ed ("db") and stored in both.
        A value of None is not cached."""
        recorder = self.recorder
        value, expired = self.memory.get(group, field)
        if expired:
            recorder.eviction(MEMORY, expired)
        if value is not None:
            recorder.hit(MEMORY)
            return value, MEMORY
        redis_up, found = not self.gate.closed(), None
        if not redis_up:
            self._skipped()
        else:
            try:
                found = await self._redis_get(group, field)
            except LAYER_ERRORS as error:
                self._failed(error)
                redis_up = False
        if found is not None:
            value, remaining = found
            recorder.hit(REDIS)
            self._remember(group, field, value, remaining)
            return value, REDIS
        recorder.miss(REDIS)
        value = await load()
        if value is None:
            return None, DATABASE
        if redis_up:  # a Redis that just failed is not asked again within the same request
            try:
                await self._redis_put(group, field, value)
                recorder.put(REDIS)
            except LAYER_ERRORS as error:
                self._failed(error)
        self._remember(group, field, value, self.ttl)
        return value, DATABASE

    async def invalidate(self, group: str) -> None:
        """Drop every entry of `group` from both layers. When Redis fails, its key is dropped
        before that cache's next Redis read, so a Redis that comes back serves nothing stale."""
        removed = self.memory.drop_group(group)
        if removed:
            self.recorder.invalidation(MEMORY, removed)
        key = self.redis_key(group)
        if self.gate.closed():
            self._pend(key)
            self._skipped()
            return
        try:
            await self._flush_pending()
            removed = await self._drop([key])
        except LAYER_ERRORS as error:
            self._pend(key)
            self._failed(error)
            return
        self._recovered()
        if removed:
            self.recorder.invalidation(REDIS, removed)

    def _remember(self, group: str, field: str, value: Any, ttl: float) -> None:
        evicted = self.memory.put(group, field, value, min(ttl, self.memory_ttl))
        self.recorder.put(MEMORY)
        if evicted:
            self.recorder.eviction(MEMORY, evicted)

    async def _redis_get(self, group: str, field: str) -> tuple[Any, float] | None:
        await self._flush_pending()
        key = self.redis_key(group)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(key, field)
            pipe.pttl(key)
            raw, pttl = await pipe.execute()
        self._recovered()
        if raw is None:
            return None
        remaining = pttl / 1000 if pttl and pttl > 0 else self.ttl
        return json.loads(raw), remaining

    async def _redis_put(self, group: str, field: str, value: Any) -> None:
        key = self.redis_key(group)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(key, field, json.dumps(value, default=str))
            pipe.expire(key, int(self.ttl), nx=True)
            await pipe.execute()

    async def _drop(self, keys: list[str]) -> int:
        """Delete `keys` at once; returns how many entries (hash fields) they held."""
        async with self.client.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.hlen(key)
                pipe.delete(key)
            results = await pipe.execute()
        return sum(int(n) for n in results[::2])

    async def _flush_pending(self) -> None:
        if not self._pending:
            return
        keys = sorted(self._pending)
        removed = await self._drop(keys)
        self._pending.difference_update(keys)
        if removed:
            self.recorder.invalidation(REDIS, removed)

    def _pend(self, key: str) -> None:
        if len(self._pending) < MAX_PENDING_INVALIDATIONS:
            self._pending.add(key)
        else:
            log.warning("cache %s: too many invalidations waiting for Redis; %s may serve stale "
                        "entries until its TTL", self.name, key)

    def _failed(self, error: BaseException) -> None:
        self.recorder.error(REDIS, error)
        self.gate.failed(error)
        self._say_failing(f"{type(error).__name__}: {error}")

    def _skipped(self) -> None:
        """Redis not asked: it failed to answer (this cache or another user of the gate) less
        than a cool-down ago. Counted as a failure of the same kind."""
        self.recorder.error(REDIS, self.gate.error_type)
        self._say_failing(f"{self.gate.error_type}, not asked again for "
                          f"{self.gate.cooldown:g} s")

    def _say_failing(self, why: str) -> None:
        if not self._redis_failing:
            self._redis_failing = True
            log.warning("cache %s: Redis failed (%s); serving from memory and the database "
                        "until it is back", self.name, why)

    def _recovered(self) -> None:
        if self._redis_failing:
            self._redis_failing = False
            log.warning("cache %s: Redis is back", self.name)
