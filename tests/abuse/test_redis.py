"""Issue 8 items 8, 10 and 12, against the real sidecar process and redis-servers of our own:

- 8: a reused connection closed by a restarted server, or by the server's idle `timeout`, is
  retried once on a fresh one: every scrape gives `redis_up 1`; a server really down still gives
  `redis_up 0` within the scrape timeout.
- 10: a target answering with a 400 MiB reply (a fake Redis, streamed) is refused at
  `redis.max_reply_bytes` before it is buffered: `redis_up 0`, "reply too large", RSS stays near
  its baseline, the other target and `/healthz` are unaffected.
- 12: 50 clients looping `/metrics` (another process, keep-alive, no pause) share round trips:
  Redis's own `cmdstat_info` counts at most 5 INFO a second (`redis.min_round_trip_interval`,
  0.2 s), against one per response before.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.abuse import log_lines, rss_bytes, timed_get
from tests.support.fake_redis import MiB, huge_reply_server
from tests.support.redis_servers import RedisServer, start_redis
from tests.support.sidecar import run_sidecar

SCRAPE_TIMEOUT = 2.0


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def sample(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)}\s+(\S+)$"
    if not labels:
        pattern = rf"^{re.escape(name)}(?:\{{[^}}]*\}})?\s+(\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{name}{labels} not in the exposition"
    return float(match.group(1))


def info_calls(server: RedisServer) -> int:
    stats = server.info("commandstats").get("cmdstat_info", {})
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


# --- item 8 -----------------------------------------------------------------------------------

def wait_until_only_admin_connected(server: RedisServer, limit: float = 30.0) -> None:
    """Redis closes idle clients in its cron, a second or more after `timeout`, later on a busy
    machine: wait for it rather than for a fixed time."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(0.5)
        with server.admin() as admin:
            if len(admin.client_list()) == 1:  # this admin connection alone
                return
    raise AssertionError(f"the sidecar's connection was still open after {limit} s")


def test_restart_and_idle_timeout_never_report_a_live_server_down(
        redis_server: RedisServer) -> None:
    with run_sidecar([f"--redis.addr={redis_server.url}",
                      f"--scrape.timeout={SCRAPE_TIMEOUT:g}s"]) as sidecar:
        metrics = f"{sidecar.web_url}/metrics"
        ups = [sample(get(metrics), "redis_up")]
        redis_server.restart()
        ups.append(sample(get(metrics), "redis_up"))
        with redis_server.admin() as admin:
            admin.config_set("timeout", 1)
        for _ in range(3):
            wait_until_only_admin_connected(redis_server)  # the idle timeout closed ours
            ups.append(sample(get(metrics), "redis_up"))
        text = get(metrics)
        reconnects = sample(text, "tradesense_exporter_redis_reconnects_total",
                            f'{{target="{redis_server.url}"}}')
        redis_server.stop()
        started = time.monotonic()
        down = sample(get(metrics), "redis_up")
        elapsed = time.monotonic() - started
        logs = sidecar.logs()
    assert ups == [1, 1, 1, 1, 1]
    assert reconnects == 4  # the restart, then each of the three idle closes
    assert down == 0 and elapsed < SCRAPE_TIMEOUT
    assert log_lines(logs, "redis scrape failed") == 1  # only the real outage


# --- item 10 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bulk", "array", "line"])
def test_a_huge_reply_is_refused_before_it_is_buffered(redis_server: RedisServer,
                                                       tmp_path: Path, kind: str) -> None:
    """A 400 MiB bulk string (refused at its length), an array of 100 million integers and a
    line with no end (both refused while streamed in)."""
    rss_ceiling = 2 * 16 * MiB  # above the baseline, during and after: twice the cap
    with huge_reply_server(kind, size=400 * MiB) as fake:
        config = tmp_path / "config.yml"
        config.write_text(f"targets: [{fake.url}, {redis_server.url}]\n"
                          f"scrape_timeout: {SCRAPE_TIMEOUT:g}s\n")  # default max_reply_bytes
        with run_sidecar([f"--config.file={config}"]) as sidecar:
            pid = sidecar.proc.pid
            get(f"{sidecar.web_url}/healthz")
            baseline = rss_bytes(pid)
            peak = baseline
            stop = threading.Event()

            def watch() -> None:
                nonlocal peak
                while not stop.is_set():
                    peak = max(peak, rss_bytes(pid))
                    time.sleep(0.005)

            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                texts, healthz = [], []
                for _ in range(5):
                    texts.append(get(f"{sidecar.web_url}/metrics"))
                    healthz.append(timed_get(f"{sidecar.web_url}/healthz"))
            finally:
                stop.set()
                watcher.join()
            after = rss_bytes(pid)
            status = json.loads(get(f"{sidecar.web_url}/healthz"))["targets"]
            logs = sidecar.logs()
    for text in texts:
        assert sample(text, "redis_up", f'{{target="{fake.url}"}}') == 0
        assert sample(text, "redis_up", f'{{target="{redis_server.url}"}}') == 1
    refused = sample(texts[-1], "tradesense_exporter_redis_replies_too_large_total",
                     f'{{target="{fake.url}"}}')
    assert refused == 5
    assert status[fake.url]["error"] == f"reply too large (over {16 * MiB} bytes)"
    assert all(code == 200 and seconds < 0.5 for code, seconds in healthz), healthz
    assert peak - baseline < rss_ceiling, (baseline, peak)
    assert after - baseline < rss_ceiling, (baseline, after)
    assert max(fake.sent) < 64 * MiB  # the fake never got to send its 400 MiB
    assert log_lines(logs, "reply too large") == 1  # logged when the error starts, not per scrape
    print(f"\nhuge {kind} reply: RSS baseline {baseline / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB, "
          f"after {after / MiB:.1f} MiB; fake sent at most {max(fake.sent) / MiB:.1f} MiB; "
          f"/healthz {max(s for _, s in healthz) * 1000:.1f} ms at worst")


# --- item 12 ----------------------------------------------------------------------------------

LOOPERS = r"""
import asyncio, json, sys, time
port, n, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
counts = {"ok": 0, "error": 0}
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"

async def client(deadline):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < deadline:
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            counts["ok" if head.startswith(b"HTTP/1.1 200") else "error"] += 1
    finally:
        writer.close()

async def main():
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(client(deadline) for _ in range(n)))

asyncio.run(main())
print(json.dumps(counts))
"""


def test_concurrent_metrics_clients_share_round_trips(redis_server: RedisServer) -> None:
    clients, seconds = 50, 4.0
    with run_sidecar([f"--redis.addr={redis_server.url}"]) as sidecar:
        metrics = f"{sidecar.web_url}/metrics"
        quiet = []
        for _ in range(5):  # as Prometheus scrapes: further apart than the interval
            quiet.append(timed_get(metrics)[1])
            time.sleep(0.3)
        before = info_calls(redis_server)
        loopers = subprocess.Popen(
            [sys.executable, "-c", LOOPERS, str(sidecar.web_port), str(clients), str(seconds)],
            stdout=subprocess.PIPE)
        time.sleep(1.0)
        loaded = [timed_get(metrics) for _ in range(5)]
        out, _ = loopers.communicate(timeout=seconds + 30)
        calls = info_calls(redis_server) - before - 1  # less the INFO that read `before`
        text = get(metrics)
        logs = sidecar.logs()
    counts = json.loads(out)
    responses = counts["ok"]
    round_trips = sample(text, "tradesense_exporter_redis_round_trips_total")
    joined = sample(text, "tradesense_exporter_redis_scrapes_joined_total")
    assert counts["error"] == 0 and responses > clients
    # Each /metrics either sent its own INFO or joined one in flight; Redis saw only the former.
    assert round_trips == len(quiet) + calls + 1 and joined > 0  # + the scrape that read them
    # Round trips start at least redis.min_round_trip_interval (0.2 s) apart: 5 a second.
    assert calls <= seconds / 0.2 + 2, (calls, responses)
    # A normal client waits at most for the next round trip: the interval plus one scrape.
    assert all(code == 200 and seconds < 0.2 + 0.5 for code, seconds in loaded), loaded
    assert log_lines(logs, "redis scrape failed") == 0
    print(f"\n{clients} clients x {seconds:g}s: {responses} responses "
          f"({responses / seconds:.0f}/s), {calls} INFO on Redis ({calls / seconds:.1f}/s), "
          f"{joined:.0f} scrapes joined a round trip in flight; normal client "
          f"{max(quiet) * 1000:.1f} ms quiet, {max(s for _, s in loaded) * 1000:.1f} ms loaded")
