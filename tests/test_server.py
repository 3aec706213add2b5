"""The sidecar process's lifecycle: start, logs, graceful shutdown, exit codes (0 a clean stop,
2 a bad flag or file: tests/test_cli.py, 3 a listen address that cannot be bound)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.support.sidecar import run_sidecar

pytestmark = pytest.mark.e2e


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


def _without_ts(line: str, fmt: str) -> str:
    if fmt == "json":
        record = json.loads(line)
        record.pop("ts")
        return json.dumps(record, sort_keys=True)
    assert line.startswith("ts=")
    return line.split(" ", 1)[1]


def _msg(line: str, fmt: str) -> str:
    if fmt == "json":
        return str(json.loads(line)["msg"])
    match = re.search(r' msg=("(?:[^"\\]|\\.)*"|\S+)', line)
    assert match is not None, line
    return match.group(1).strip('"')


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_start_and_stop_are_logged_once_each(fmt: str) -> None:
    # Two uvicorn servers in one process each logged "Started server process", "Shutting down"
    # and "Finished server process": every line about the start and the stop appeared twice.
    with run_sidecar(["--redis.addr=", f"--log.format={fmt}"]) as proc:
        assert httpx.get(f"{proc.web_url}/healthz").status_code == 200
        assert proc.stop() == 0
        lines = proc.logs().strip().splitlines()
    bare = [_without_ts(line, fmt) for line in lines]
    assert [line for line, n in Counter(bare).items() if n > 1] == []
    assert [_msg(line, fmt) for line in lines] == ["starting", "listening", "shutting down",
                                                    "stopped"]
    listening = lines[1]
    assert f"127.0.0.1:{proc.web_port}" in listening
    assert f"127.0.0.1:{proc.otlp_port}" in listening


def _occupied() -> tuple[socket.socket, int]:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    return taken, taken.getsockname()[1]


@pytest.mark.parametrize("busy", [("web",), ("otlp",), ("web", "otlp")])
def test_busy_ports_are_named_on_one_line_with_exit_code_3(busy: tuple[str, ...]) -> None:
    held = {name: _occupied() for name in busy}
    try:
        args = [f"--{name}.listen-address=127.0.0.1:{port}" for name, (_, port) in held.items()]
        with run_sidecar(args, wait=False) as proc:
            assert proc.proc.wait(20) == 3
            text = proc.logs()
    finally:
        for sock, _ in held.values():
            sock.close()
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 2, lines  # starting, then the one error
    error = lines[1]
    assert "level=error" in error and "cannot listen" in error
    for name, (_, port) in held.items():
        assert f"--{name}.listen-address 127.0.0.1:{port}: address already in use" in error
    for name in {"web", "otlp"} - set(busy):
        assert f"--{name}.listen-address" not in error


def _request(sock: socket.socket, path: bytes) -> bytes:
    sock.sendall(b"POST " + path + b" HTTP/1.1\r\nhost: x\r\n"
                 b"content-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    return data


def test_a_pusher_keeps_its_connection_until_the_keep_alive_timeout(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("server:\n  keep_alive_timeout: 3s\n")
    with run_sidecar(["--redis.addr=", f"--config.file={config}"]) as sidecar, \
            socket.create_connection(("127.0.0.1", sidecar.otlp_port), timeout=5) as sock:
        for pause in (1.5, 1.5, 0):  # idle under the timeout: the same connection answers
            assert _request(sock, b"/v1/metrics").startswith(b"HTTP/1.1 200")
            last = time.monotonic()
            time.sleep(pause)
        sock.settimeout(10)
        assert sock.recv(4096) == b""  # then the sidecar closes it, 3 s after the last answer
        assert 2.5 < time.monotonic() - last < 4.9  # (the fixed 5 s it replaced: 5 s)


def test_the_default_keep_alive_outlasts_the_export_intervals() -> None:
    from exporter.instrument.providers import DEFAULT_EXPORT_INTERVAL_MILLIS
    from exporter.limits import ServerLimits
    keep_alive = ServerLimits().keep_alive_timeout_seconds
    assert keep_alive > DEFAULT_EXPORT_INTERVAL_MILLIS / 1000 and keep_alive > 60  # SDK default
