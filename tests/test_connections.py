"""The connection gate (exporter/connections.py) on a real uvicorn server in this process, under
both HTTP protocols: caps, header deadline and size, TLS handshakes; and the uvicorn internals it
relies on (each test runs once per protocol, so an upgrade that moves them fails here)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from exporter.connections import (
    ConnectionStats,
    Listener,
    RequestLogFilter,
    Throttle,
    gated_protocol,
    h11_backstop,
)
from exporter.limits import ServerLimits
from tests.support.net import free_port
from tests.support.redis_servers import TLSFiles, make_tls_files

pytestmark = pytest.mark.e2e

LIMITS = ServerLimits(max_connections=6, max_connections_per_client=4,
                      header_timeout_seconds=0.4, max_header_bytes=4096,
                      tls_handshake_timeout_seconds=0.4)
PROTOCOLS = ["h11", "httptools"]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    reply = b"ok %d" % len(body)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(reply)).encode())]})
    await send({"type": "http.response.body", "body": reply})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def serving(protocol: str, limits: ServerLimits = LIMITS,
            tls: ssl.SSLContext | None = None) -> Iterator[tuple[int, Listener]]:
    stats = ConnectionStats()
    listener = stats.listener("web", limits, tls)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off",
                            http=gated_protocol(listener, protocol),
                            h11_max_incomplete_event_size=h11_backstop(limits))
    server = _Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        yield port, listener
    finally:
        server.should_exit = True
        thread.join(10)


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    return sock


def read_all(sock: socket.socket) -> bytes:
    out = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            out += chunk
    return out


def read_response(sock: socket.socket) -> bytes:
    """One response (headers and a content-length body) off a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def get(port: int, source: str = "127.0.0.1") -> bytes:
    with connect(port, source) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        return read_all(sock)


def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_keep_alive_requests_and_a_slow_body_pass(protocol: str) -> None:
    with serving(protocol) as (port, listener), connect(port) as sock:
        for _ in range(3):  # the header deadline is re-armed and cancelled per request
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            time.sleep(0.25)
        # Headers complete: the body may take longer than the header deadline.
        sock.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nab")
        time.sleep(0.7)
        sock.sendall(b"cd")
        assert read_response(sock).endswith(b"ok 4")
        assert listener.rejected["header_timeout"] == 0
        assert listener.open == 1
    wait_for(lambda: listener.open == 0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_silent_and_slow_headers_are_closed(protocol: str) -> None:
    with serving(protocol) as (port, listener):
        silent = connect(port)
        slow = connect(port)
        slow.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")
        started = time.monotonic()
        assert read_all(silent) == b""
        assert read_all(slow) == b""
        assert 0.3 < time.monotonic() - started < 2
        wait_for(lambda: listener.rejected["header_timeout"] == 2)
        wait_for(lambda: listener.open == 0)
        # A kept-alive connection's next request has the same deadline.
        with connect(port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET / HTTP/1.1\r\n")
            assert read_all(sock) == b""
        assert listener.rejected["header_timeout"] == 3
        assert get(port).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_oversized_headers_get_431(protocol: str) -> None:
    with serving(protocol) as (port, listener), connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nx-big: ")
        with contextlib.suppress(OSError):
            for _ in range(64):  # the server closes long before 64 x 1 KiB
                sock.sendall(b"a" * 1024)
                time.sleep(0.002)
        assert read_all(sock).startswith(b"HTTP/1.1 431")
        assert listener.rejected["header_too_large"] == 1
        wait_for(lambda: listener.open == 0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_body_in_the_same_read_as_the_headers_is_not_header_bytes(protocol: str) -> None:
    """An OTLP push bigger than max_header_bytes, headers and body in one write."""
    body = b"x" * (LIMITS.max_header_bytes * 4)
    head = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body)
    with serving(protocol) as (port, listener), connect(port) as sock:
        sock.sendall(head + body)
        assert read_response(sock).endswith(b"ok %d" % len(body))
        # and headers that end past the limit, with a body after them, still get 431
        big = b"POST / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * LIMITS.max_header_bytes
        with connect(port) as other:
            other.sendall(big + b"\r\ncontent-length: 2\r\n\r\nab")
            assert read_all(other).startswith(b"HTTP/1.1 431")
        assert listener.rejected["header_too_large"] == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_connection_caps_per_client_and_per_listener(protocol: str) -> None:
    with serving(protocol) as (port, listener):
        held = [connect(port, "127.0.0.2") for _ in range(4)]
        over = connect(port, "127.0.0.2")
        assert read_all(over) == b""  # closed at once, long before the header deadline
        wait_for(lambda: listener.rejected["per_client"] == 1)
        held += [connect(port, "127.0.0.3") for _ in range(2)]
        wait_for(lambda: listener.open == 6)
        assert get(port, "127.0.0.4") == b""
        assert listener.rejected["max_connections"] == 1
        for sock in held:
            sock.close()
        wait_for(lambda: listener.open == 0)
        assert listener.per_client == {}
        assert get(port, "127.0.0.4").startswith(b"HTTP/1.1 200")


def kept_alive(port: int, source: str) -> socket.socket:
    """A connection that has had one answer and waits, kept alive, for its next request."""
    sock = connect(port, source)
    sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    return sock


def answers(sock: socket.socket) -> bool:
    sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    return read_response(sock).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_longest_idle_connection_of_a_client_makes_room_at_its_cap(protocol: str) -> None:
    with serving(protocol) as (port, listener):
        idle = []
        for _ in range(4):  # the per-client cap
            idle.append(kept_alive(port, "127.0.0.2"))
            time.sleep(0.02)
        idle[0], idle[1] = idle[1], idle[0]
        assert answers(idle[1])  # the first used again: the second is now the longest idle
        newer = connect(port, "127.0.0.2")
        assert answers(newer)
        assert read_all(idle[0]) == b""  # closed by the sidecar to admit `newer`
        assert all(answers(sock) for sock in idle[1:])
        assert listener.rejected["per_client"] == 0 and listener.idle_closed == 1
        # In the middle of a request (headers begun) no connection is taken for room.
        for sock in [*idle[1:], newer]:
            sock.sendall(b"GET / HTTP/1.1\r\n")
        over = connect(port, "127.0.0.2")
        assert read_all(over) == b""
        assert listener.rejected["per_client"] == 1 and listener.idle_closed == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_longest_idle_connection_of_anyone_makes_room_on_a_full_listener(
        protocol: str) -> None:
    with serving(protocol) as (port, listener):
        idle = []
        for client in ("127.0.0.2", "127.0.0.3", "127.0.0.4") * 2:  # 6, the listener's cap
            idle.append(kept_alive(port, client))
            time.sleep(0.02)
        newer = connect(port, "127.0.0.5")
        assert answers(newer)
        assert read_all(idle[0]) == b""
        assert all(answers(sock) for sock in idle[1:])
        assert listener.rejected["max_connections"] == 0 and listener.idle_closed == 1
        wait_for(lambda: listener.open == 6)
        newer.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_invalid_request_counted(protocol: str) -> None:
    with serving(protocol) as (port, listener), connect(port) as sock:
        sock.sendall(b"\x00\x01 nonsense\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 400")
        assert listener.rejected["invalid_request"] == 1


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("certs"))


def _server_context(certs: TLSFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certs.server_cert), str(certs.server_key))
    return ctx


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_handshakes_count_and_time_out(protocol: str, certs: TLSFiles) -> None:
    limits = replace(LIMITS, max_connections_per_client=3)
    with serving(protocol, limits, _server_context(certs)) as (port, listener):
        stalled = [connect(port, "127.0.0.2") for _ in range(3)]
        for sock in stalled:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # half a ClientHello
        wait_for(lambda: listener.open == 3)
        assert read_all(connect(port, "127.0.0.2")) == b""  # the handshakes hold the slots
        assert listener.rejected["per_client"] == 1
        client = ssl.create_default_context(cafile=str(certs.ca_cert))
        with connect(port) as raw, client.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            assert tls.recv(4096).startswith(b"HTTP/1.1 200")
        for sock in stalled:
            assert read_all(sock) == b""
        wait_for(lambda: listener.rejected["tls_handshake_timeout"] == 3)
        wait_for(lambda: listener.open == 0)
        # Plain HTTP on the TLS port fails the handshake at once.
        assert get(port) == b""
        wait_for(lambda: listener.rejected["tls_handshake_failed"] == 1)


def test_throttle_reports_suppressed_events() -> None:
    now = [0.0]
    throttle = Throttle(10, clock=lambda: now[0])
    assert throttle.hit("a") == 1
    assert throttle.hit("a") is None
    assert throttle.hit("b") == 1
    now[0] = 10.5
    assert throttle.hit("a") == 2


def test_accept_failures_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    stats = ConnectionStats()
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(50):
                stats.loop_exception_handler(loop, {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(24, "Too many open files")})
    finally:
        loop.close()
    assert stats.accept_errors == 50
    lines = [r for r in caplog.records if r.name == "exporter.connections"]
    assert len(lines) == 1 and lines[0].exc_info is None
    families = {f.name: f for f in stats.collect()}
    assert families["tradesense_exporter_accept_errors_total"].samples[0].value == 50


def test_uvicorn_request_warnings_are_throttled() -> None:
    filt = RequestLogFilter()
    records = [logging.makeLogRecord({"msg": "Invalid HTTP request received."})
               for _ in range(20)]
    assert sum(filt.filter(r) for r in records) == 1
    assert filt.filter(logging.makeLogRecord({"msg": "Started server process"}))


def test_config_file_sets_the_server_limits(tmp_path: Path) -> None:
    from exporter.config import section_from_yaml
    from exporter.limits import ServerLimits as Configured
    limits = section_from_yaml({"max_connections": 9, "header_timeout": "250ms",
                                "tls_handshake_timeout": "2s"}, "server", Configured)
    assert limits.max_connections == 9
    assert limits.header_timeout_seconds == 0.25
    assert limits.tls_handshake_timeout_seconds == 2.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_refused_and_timed_out_connections_are_freed_without_the_cyclic_gc(
        protocol: str, certs: TLSFiles) -> None:
    import gc

    from exporter.connections import _Gate, _SSLProtocol

    limits = replace(LIMITS, max_connections=20, max_connections_per_client=10)
    gc.collect()
    gc.disable()
    try:
        with serving(protocol, limits, _server_context(certs)) as (port, listener):
            socks = [connect(port, "127.0.0.2") for _ in range(15)]  # 5 over the cap
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            for sock in socks:
                read_all(sock)
                sock.close()
            wait_for(lambda: listener.rejected["tls_handshake_timeout"] == 10)
            wait_for(lambda: listener.open == 0)
            time.sleep(0.1)
            live = [o for o in gc.get_objects() if isinstance(o, (_Gate, _SSLProtocol))]
            assert live == []
    finally:
        gc.enable()
