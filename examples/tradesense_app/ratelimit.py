"""A Redis-backed rate limit: `limit` requests per client per fixed window (100 a minute).

One key per client and window, `<prefix>ratelimit:<client>:<window number>`, INCRemented and
given a TTL in one MULTI, so every worker and replica shares the count. A client is the
`X-Client-Id` header when it is given (a demo stand-in for an API key), else its address.
When Redis fails the limiter fails open: requests are served unlimited, and a log line says so
once per outage (and once more when Redis is back). While the shared RedisGate is closed (Redis
failed to answer less than a cool-down ago), it does not even ask.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis
from starlette.requests import Request

from examples.tradesense_app.cache import LAYER_ERRORS, RedisGate

log = logging.getLogger(__name__)

CLIENT_HEADER = "X-Client-Id"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # seconds until the window ends

    def headers(self) -> dict[str, str]:
        headers = {"X-RateLimit-Limit": str(self.limit),
                   "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter:
    def __init__(self, client: redis.Redis, limit: int, window: float,
                 prefix: str = "tradesense:", gate: RedisGate | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.limit, self.window = client, limit, window
        self.prefix, self._clock = prefix, clock
        self.gate = gate or RedisGate(0)
        self.failing_open = False

    @property
    def enabled(self) -> bool:
        return self.limit > 0 and self.window > 0

    async def check(self, client_id: str) -> Decision | None:
        """Count one request of `client_id`; None when the limit is off or Redis failed."""
        if not self.enabled or self.gate.closed():
            return None
        now = self._clock()
        number = int(now // self.window)
        key = f"{self.prefix}ratelimit:{client_id}:{number}"
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, math.ceil(self.window) + 1)
                count, _ = await pipe.execute()
        except LAYER_ERRORS as error:
            self.gate.failed(error)
            if not self.failing_open:
                self.failing_open = True
                log.warning("rate limit: Redis failed (%s: %s); failing open: requests are not "
                            "limited until it is back", type(error).__name__, error)
            return None
        if self.failing_open:
            self.failing_open = False
            log.warning("rate limit: Redis is back; limiting again")
        retry_after = max(1, math.ceil((number + 1) * self.window - now))
        return Decision(int(count) <= self.limit, self.limit, max(0, self.limit - int(count)),
                        retry_after)


def client_id(request: Request) -> str:
    """The `X-Client-Id` header when it is a plain token, else the client's address."""
    given = request.headers.get(CLIENT_HEADER, "").strip()
    if _CLIENT_ID.fullmatch(given):
        return f"id:{given}"
    host = request.client.host if request.client else "unknown"
    return f"addr:{host}"
