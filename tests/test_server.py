"""The sidecar process's lifecycle: start, logs, graceful shutdown."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx

from tests.support.sidecar import run_sidecar


def test_sigterm_stops_within_five_seconds_even_mid_scrape() -> None:
    # A listener that accepts and never answers: the scrape in flight is hung when SIGTERM lands.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    port = hung.getsockname()[1]
    with run_sidecar([f"--redis.addr=redis://127.0.0.1:{port}", "--scrape.timeout=30s"]) as proc:
        threading.Thread(target=lambda: httpx.get(f"{proc.web_url}/metrics", timeout=40),
                         daemon=True).start()
        time.sleep(0.5)
        started = time.monotonic()
        code = proc.stop(timeout=10)
        assert time.monotonic() - started < 5
        assert code == 0
    hung.close()


def test_json_logs_are_one_object_per_line() -> None:
    with run_sidecar(["--redis.addr=redis://127.0.0.1:6379", "--log.format=json"]) as proc:
        httpx.get(f"{proc.web_url}/metrics")
        proc.stop()
        lines = proc.logs().strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert any(r["msg"] == "starting" and r["web"].endswith(str(proc.web_port))
               for r in records)
    assert all({"ts", "level", "msg"} <= set(r) for r in records)


def test_port_in_use_fails_startup() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    with run_sidecar([f"--otlp.listen-address=127.0.0.1:{port}"], wait=False) as proc:
        assert proc.proc.wait(20) != 0
        assert "address already in use" in proc.logs()
    taken.close()
