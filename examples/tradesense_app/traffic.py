"""Traffic for the example app: TradeSense's mix, a cache hit rate near 96% once warm, writes that
invalidate, now and then a slow query, and errors and latency injected on demand.

    python -m examples.tradesense_app.traffic --base-url http://127.0.0.1:8000 [--rate 20]
        [--duration 0 (forever)] [--slow-every 50] [--concurrency 20] [--write-share 0.01]
        [--clients 0 (enough to stay under the rate limit)] [--noisy-share 0]
        [--error-rate 0] [--latency-ms 0] [--fault-share 1] [--report-every 10] [--seed 1]

Most requests read the trade lists, single trades and analytics of ten "hot" traders (hits once
cached); 1% ask for other traders and page sizes (misses); `--write-share` of them POST a trade
for a hot trader (which drops that trader's cached lists and analytics: the next reads miss);
every `--slow-every`-th asks for the slow analytics summary (never cached). Requests are spread
over `--clients` X-Client-Id values so that none passes the app's 100 a minute; `--noisy-share`
of them come from one more client, "noisy", which does (429s). `--error-rate P` and
`--latency-ms MS` ask the app (run with TRADESENSE_FAULTS=1) to fail with probability P and to
sleep MS on `--fault-share` of the requests.

It prints its counts as one JSON object (every `--report-every` seconds and at the end):
requests, elapsed_seconds, clients, kinds, by_route ("GET /trades/{trade_id}" -> status ->
count; "error" for a request that got no answer), status, cache_hit, cache_miss, cache_bypass,
hit_rate (hit / (hit + miss) of the X-Cache headers it saw), errors (5xx and no answer),
rate_limited (429), faulted (requests that carried fault headers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import IO, Any

import httpx

HOT_USERS = range(1, 11)
ALL_USERS = range(1, 51)
SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "EURUSD", "BTCUSD", "ES", "NQ", "GC")
RATE_LIMIT = 100  # the app's default, per client and minute
RECENT_IDS = 5  # single-trade reads pick among a hot trader's five latest trades


@dataclass(frozen=True)
class Planned:
    kind: str  # trades, trade, summary, cold, write, slow
    method: str
    route: str  # the app's route template, as http_route labels it
    path: str
    body: dict[str, Any] | None = None
    user_id: int = 0


@dataclass(frozen=True)
class Mix:
    """Shares of the requests that are not slow ones; the rest read hot trade lists."""

    write: float = 0.01
    cold: float = 0.01
    trade: float = 0.15
    summary: float = 0.18


def plan(rng: random.Random, number: int, slow_every: int, mix: Mix,
         recent: dict[int, list[int]]) -> Planned:
    """The `number`-th request."""
    if slow_every and number % slow_every == slow_every - 1:
        user = rng.choice(ALL_USERS)
        return Planned("slow", "GET", "/analytics/summary",
                       f"/analytics/summary?user_id={user}&slow=1", user_id=user)
    user = rng.choice(HOT_USERS)
    draw = rng.random()
    if draw < mix.write:
        body = {"user_id": user, "symbol": rng.choice(SYMBOLS), "side": rng.choice(("BUY", "SELL")),
                "quantity": rng.randint(1, 500), "price": round(rng.uniform(10, 900), 2),
                "pnl": round(rng.gauss(12, 250), 2)}
        return Planned("write", "POST", "/trades", "/trades", body, user)
    draw -= mix.write
    if draw < mix.cold:
        other = rng.choice(ALL_USERS)
        return Planned("cold", "GET", "/trades",
                       f"/trades?user_id={other}&limit={rng.randint(1, 200)}", user_id=other)
    draw -= mix.cold
    if draw < mix.trade and recent.get(user):
        trade_id = rng.choice(recent[user])
        return Planned("trade", "GET", "/trades/{trade_id}",
                       f"/trades/{trade_id}?user_id={user}", user_id=user)
    draw -= mix.trade
    if draw < mix.summary:
        return Planned("summary", "GET", "/analytics/summary",
                       f"/analytics/summary?user_id={user}", user_id=user)
    return Planned("trades", "GET", "/trades", f"/trades?user_id={user}&limit=20", user_id=user)


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    clients: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    by_route: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    status: Counter[str] = field(default_factory=Counter)
    cache: Counter[str] = field(default_factory=Counter)
    faulted: int = 0

    def record(self, planned: Planned, status: str, cache: str | None) -> None:
        self.kinds[planned.kind] += 1
        self.by_route[f"{planned.method} {planned.route}"][status] += 1
        self.status[status] += 1
        if cache:
            self.cache[cache] += 1

    def as_dict(self) -> dict[str, Any]:
        hits, misses = self.cache["hit"], self.cache["miss"]
        server_errors = sum(n for s, n in self.status.items() if s.startswith("5"))
        return {
            "requests": sum(self.status.values()),
            "elapsed_seconds": round(time.monotonic() - self.started, 3),
            "clients": self.clients,
            "kinds": dict(self.kinds),
            "by_route": {route: dict(counts) for route, counts in sorted(self.by_route.items())},
            "status": dict(self.status),
            "cache_hit": hits,
            "cache_miss": misses,
            "cache_bypass": self.cache["bypass"],
            "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
            "errors": server_errors + self.status["error"],
            "rate_limited": self.status["429"],
            "faulted": self.faulted,
        }


def client_count(rate: float, clients: int) -> int:
    """`clients`, or (0) enough that each sends about half the app's limit a minute."""
    return clients if clients > 0 else max(10, math.ceil(rate * 60 / (RATE_LIMIT / 2)))


async def drive(base_url: str, rate: float, duration: float, slow_every: int = 50,
                concurrency: int = 20, seed: int = 1, report_every: float = 10.0, *,
                write_share: float = 0.01, clients: int = 0, noisy_share: float = 0.0,
                error_rate: float = 0.0, latency_ms: float = 0.0, fault_share: float = 1.0,
                stop: asyncio.Event | None = None, out: IO[str] | None = None) -> dict[str, Any]:
    """Send requests at `rate` per second for `duration` seconds (0: until `stop` is set or the
    task is cancelled); returns the counts (see the module's doc)."""
    rng, stats = random.Random(seed), Stats()
    stats.clients = client_count(rate, clients)
    mix = Mix(write=write_share)
    recent: dict[int, list[int]] = {}
    faults = {}
    if error_rate:
        faults["X-Inject-Error"] = f"{error_rate:g}"
    if latency_ms:
        faults["X-Inject-Latency-Ms"] = f"{latency_ms:g}"
    gate = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    started = last_report = loop.time()
    next_at = started
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        tasks: set[asyncio.Task[None]] = set()
        number = 0
        while not (duration and loop.time() - started >= duration) and not (
                stop and stop.is_set()):
            planned = plan(rng, number, slow_every, mix, recent)
            headers = {"X-Client-Id": _client(rng, stats.clients, noisy_share)}
            if faults and rng.random() < fault_share:
                headers.update(faults)
                stats.faulted += 1
            await gate.acquire()
            task = asyncio.create_task(_send(client, planned, headers, stats, recent, gate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            number += 1
            next_at += 1 / rate
            delay = next_at - loop.time()
            if delay > 0:
                await _sleep(delay, stop)
            elif delay < -1:  # far behind (the app was slow): no catch-up burst
                next_at = loop.time()
            if report_every and loop.time() - last_report >= report_every:
                _print(stats, out)
                last_report = loop.time()
        await asyncio.gather(*tasks)
    return stats.as_dict()


def _client(rng: random.Random, clients: int, noisy_share: float) -> str:
    if noisy_share and rng.random() < noisy_share:
        return "noisy"
    return f"traffic-{rng.randrange(clients)}"


async def _sleep(delay: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)


async def _send(client: httpx.AsyncClient, planned: Planned, headers: dict[str, str],
                stats: Stats, recent: dict[int, list[int]], gate: asyncio.Semaphore) -> None:
    try:
        response = await client.request(planned.method, planned.path, json=planned.body,
                                        headers=headers)
    except httpx.HTTPError:
        stats.record(planned, "error", None)
        return
    finally:
        gate.release()
    stats.record(planned, str(response.status_code), response.headers.get("X-Cache"))
    if response.status_code in (200, 201) and planned.user_id in HOT_USERS:
        _learn_ids(planned, response, recent)


def _learn_ids(planned: Planned, response: httpx.Response,
               recent: dict[int, list[int]]) -> None:
    """Remember a hot trader's latest trade ids, for the single-trade reads."""
    if planned.kind == "trades":
        ids = [t["id"] for t in response.json()["trades"][:RECENT_IDS]]
        if ids:
            recent[planned.user_id] = ids
    elif planned.kind == "write":
        ids = recent.setdefault(planned.user_id, [])
        ids.insert(0, response.json()["id"])
        del ids[RECENT_IDS:]


def _print(stats: Stats, out: IO[str] | None) -> None:
    print(json.dumps(stats.as_dict()), file=out or sys.stdout, flush=True)


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return await drive(
        args.base_url, args.rate, args.duration, args.slow_every, args.concurrency, args.seed,
        args.report_every, write_share=args.write_share, clients=args.clients,
        noisy_share=args.noisy_share, error_rate=args.error_rate, latency_ms=args.latency_ms,
        fault_share=args.fault_share, stop=stop)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.tradesense_app.traffic",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="seconds; 0 runs until interrupted (SIGINT or SIGTERM: it prints "
                             "its counts and exits)")
    parser.add_argument("--slow-every", type=int, default=50, help="0 never asks for slow")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--write-share", type=float, default=0.01,
                        help="share of requests that POST a trade (and invalidate)")
    parser.add_argument("--clients", type=int, default=0,
                        help="X-Client-Id values to spread over; 0: enough to stay under the "
                             "rate limit")
    parser.add_argument("--noisy-share", type=float, default=0.0,
                        help="share of requests from one client, 'noisy' (429s past 100/min)")
    parser.add_argument("--error-rate", type=float, default=0.0, metavar="P",
                        help="ask the app to answer 500 with probability P (X-Inject-Error)")
    parser.add_argument("--latency-ms", type=float, default=0.0, metavar="MS",
                        help="ask the app to sleep MS ms per request (X-Inject-Latency-Ms)")
    parser.add_argument("--fault-share", type=float, default=1.0,
                        help="share of requests that carry the fault headers")
    parser.add_argument("--report-every", type=float, default=10.0,
                        help="seconds between progress lines; 0: only the final one")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    _print_final(asyncio.run(_main(args)))


def _print_final(stats: dict[str, Any]) -> None:
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
