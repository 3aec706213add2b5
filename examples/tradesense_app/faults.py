"""Fault injection on demand, for demos and tests: only when the app runs with
TRADESENSE_FAULTS=1 (`make demo` sets it; off by default, and then the headers are ignored).

    X-Inject-Latency-Ms: 800     the handler sleeps 800 ms (at most 30000) before it answers
    X-Inject-Error: 0.2          with probability 0.2 the handler answers a real 500

Both happen inside the route's handler, after the rate limit, so the HTTP metrics see them with
the route's template, and the lookup they replace is never made (no cache get is recorded).
A value that is not a number in range is answered with 400.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

ERROR_HEADER = "X-Inject-Error"
LATENCY_HEADER = "X-Inject-Latency-Ms"
MAX_LATENCY_MS = 30_000.0


class FaultInjection:
    def __init__(self, enabled: bool, chance: Callable[[], float] = random.random) -> None:
        self.enabled = enabled
        self._chance = chance

    async def apply(self, request: Request) -> Response | None:
        """The response that replaces the handler's (400 or an injected 500), or None."""
        if not self.enabled:
            return None
        headers = request.headers
        latency = _number(headers.get(LATENCY_HEADER), 0.0, MAX_LATENCY_MS)
        probability = _number(headers.get(ERROR_HEADER), 0.0, 1.0)
        if latency is None or probability is None:
            return JSONResponse(
                {"error": f"{LATENCY_HEADER} takes 0 to {MAX_LATENCY_MS:g} (ms), "
                          f"{ERROR_HEADER} a probability from 0 to 1"},
                status_code=400)
        if latency:
            await asyncio.sleep(latency / 1000)
        if probability and self._chance() < probability:
            return JSONResponse({"error": "injected fault"}, status_code=500,
                                headers={"X-Injected": "error"})
        return None


def _number(raw: str | None, low: float, high: float) -> float | None:
    """0 when absent; the value when it is a number from `low` to `high`; else None."""
    if raw is None or not raw.strip():
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and low <= value <= high else None
