"""Traffic for the example app: cache hits, cache misses and now and then a slow query.

    python -m examples.tradesense_app.traffic --base-url http://127.0.0.1:8000 [--rate 20]
        [--duration 0 (forever)] [--slow-every 50] [--concurrency 20]

Most requests come from ten "hot" traders (hits once cached); the rest ask for other traders and
page sizes (misses); every `--slow-every`-th request asks for the slow analytics summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter

import httpx

HOT_USERS = range(1, 11)
ALL_USERS = range(1, 51)


def next_path(rng: random.Random, number: int, slow_every: int) -> tuple[str, str]:
    """(kind, path) of the `number`-th request."""
    if slow_every and number % slow_every == slow_every - 1:
        return "slow", f"/analytics/summary?user_id={rng.choice(ALL_USERS)}&slow=1"
    if rng.random() < 0.2:
        return "summary", f"/analytics/summary?user_id={rng.choice(HOT_USERS)}"
    if rng.random() < 0.85:
        return "trades", f"/trades?user_id={rng.choice(HOT_USERS)}&limit=20"
    return "trades", f"/trades?user_id={rng.choice(ALL_USERS)}&limit={rng.randint(1, 200)}"


async def drive(base_url: str, rate: float, duration: float, slow_every: int = 50,
                concurrency: int = 20, seed: int = 1, report_every: float = 10.0) -> Counter[str]:
    """Send requests at `rate` per second for `duration` seconds (0: until cancelled)."""
    rng, stats = random.Random(seed), Counter[str]()
    gate = asyncio.Semaphore(concurrency)
    started = last_report = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        tasks: set[asyncio.Task[None]] = set()
        number = 0
        while not duration or time.monotonic() - started < duration:
            kind, path = next_path(rng, number, slow_every)
            await gate.acquire()
            task = asyncio.create_task(_request(client, path, kind, stats, gate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            number += 1
            await asyncio.sleep(1 / rate)
            if report_every and time.monotonic() - last_report >= report_every:
                print(json.dumps(dict(stats)), flush=True)
                last_report = time.monotonic()
        await asyncio.gather(*tasks)
    return stats


async def _request(client: httpx.AsyncClient, path: str, kind: str, stats: Counter[str],
                   gate: asyncio.Semaphore) -> None:
    try:
        response = await client.get(path)
        stats[kind] += 1
        stats[f"cache_{response.headers.get('X-Cache', 'none')}"] += 1
        if response.status_code >= 400:
            stats["errors"] += 1
    except httpx.HTTPError:
        stats["errors"] += 1
    finally:
        gate.release()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.tradesense_app.traffic",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds; 0 runs forever")
    parser.add_argument("--slow-every", type=int, default=50, help="0 never asks for slow")
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    try:
        stats = asyncio.run(drive(args.base_url, args.rate, args.duration, args.slow_every,
                                  args.concurrency))
    except KeyboardInterrupt:
        return
    print(json.dumps(dict(stats)), flush=True)


if __name__ == "__main__":
    main()
