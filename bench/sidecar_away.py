"""The app's own latency while its sidecar is up, down (connection refused) or hung (accepts,
never answers): per SQL statement and per HTTP request, with exports every 200 ms.

    .venv/bin/python bench/sidecar_away.py [--repeats 3] [--batches 40] [--batch 500]

Each variant runs in a process of its own (its own providers and export threads), the variants
in shuffled order, `--repeats` times; the figures are medians over the runs of each run's
per-batch median, and the ratio to "up".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("up", "down", "hung")


def measure(endpoint: str, batches: int, batch: int) -> dict[str, float]:
    """In the variant's process: per-statement and per-request CPU-free wall time, in µs."""
    from sqlalchemy import create_engine, text
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.types import Message

    from exporter.instrument import instrument

    async def trade(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/trades/{trade_id}", trade)])
    engine = create_engine("sqlite://")
    handle = instrument(engine, app=app, otlp_endpoint=endpoint, slow_query_threshold=None)
    scope = {"type": "http", "method": "GET", "path": "/trades/42", "raw_path": b"/trades/42",
             "query_string": b"", "headers": [], "scheme": "http", "root_path": "",
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 1), "http_version": "1.1"}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    async def requests(count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            await app(dict(scope), receive, send)
        return (time.perf_counter() - started) / count

    query_times, request_times = [], []
    loop = asyncio.new_event_loop()
    with engine.connect() as connection:
        statement = text("SELECT 1")
        for _ in range(batches):
            started = time.perf_counter()
            for _ in range(batch):
                connection.execute(statement).all()
            query_times.append((time.perf_counter() - started) / batch)
            request_times.append(loop.run_until_complete(requests(batch)))
            time.sleep(0.05)  # let the 200 ms exports land between batches too
    loop.close()
    handle.uninstrument()
    return {"query_us": statistics.median(query_times) * 1e6,
            "request_us": statistics.median(request_times) * 1e6}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_variant(variant: str, batches: int, batch: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OTEL_METRIC_EXPORT_INTERVAL": "200"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    helpers: list[Any] = []
    try:
        if variant == "up":
            web, otlp = _free_port(), _free_port()
            helpers.append(subprocess.Popen(
                [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{web}",
                 f"--otlp.listen-address=127.0.0.1:{otlp}", "--redis.addr="],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(2.0)
            port = otlp
        elif variant == "down":
            port = _free_port()
        else:
            hung = socket.socket()
            hung.bind(("127.0.0.1", 0))
            hung.listen(128)
            helpers.append(hung)
            port = hung.getsockname()[1]
        code = ("import json, sys; sys.path.insert(0, 'bench'); from sidecar_away import measure;"
                f"print(json.dumps(measure('http://127.0.0.1:{port}', {batches}, {batch})))")
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600, check=True)
        result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        for helper in helpers:
            if isinstance(helper, subprocess.Popen):
                helper.terminate()
                helper.wait(10)
            else:
                helper.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in random.sample(VARIANTS, len(VARIANTS)):
            runs[variant].append(run_variant(variant, args.batches, args.batch))
    print(f"{args.repeats} runs per variant, {args.batches} batches x {args.batch}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'sidecar':8} {'µs/statement':>13} {'vs up':>7} {'µs/request':>11} {'vs up':>7}")
    base = {k: statistics.median(r[k] for r in runs["up"]) for k in ("query_us", "request_us")}
    for variant in VARIANTS:
        query = statistics.median(r["query_us"] for r in runs[variant])
        request = statistics.median(r["request_us"] for r in runs[variant])
        print(f"{variant:8} {query:13.2f} {query / base['query_us']:7.3f} "
              f"{request:11.2f} {request / base['request_us']:7.3f}")


if __name__ == "__main__":
    main()
