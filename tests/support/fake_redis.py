"""A fake Redis that answers every request with one huge reply, streamed until the client hangs
up: to show that a scrape refuses a reply over `redis.max_reply_bytes` before buffering it.

    with huge_reply_server(kind="bulk", size=200 * MiB) as fake:   # fake.port, fake.sent
        ...

`kind` is "bulk" (`$<size>` then the bytes), "array" (`*<n>` of `:1`), or "line" (a `+` line
with no end). Every loop is bounded by `size`; the server listens on loopback only.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

MiB = 1024 * 1024
CHUNK = 64 * 1024


@dataclass
class FakeRedis:
    port: int
    sent: list[int] = field(default_factory=list)  # bytes written on each connection

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"


def _header_and_unit(kind: str, size: int) -> tuple[bytes, bytes]:
    if kind == "bulk":
        return f"${size}\r\n".encode(), b"x" * CHUNK
    if kind == "array":
        return f"*{size // 4}\r\n".encode(), b":1\r\n" * (CHUNK // 4)
    if kind == "line":
        return b"+", b"y" * CHUNK
    raise ValueError(kind)


@contextmanager
def huge_reply_server(kind: str = "bulk", size: int = 200 * MiB) -> Iterator[FakeRedis]:
    header, unit = _header_and_unit(kind, size)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            conn: socket.socket = self.request
            conn.settimeout(10)
            written = 0
            try:
                if not conn.recv(65536):
                    return
                conn.sendall(header)
                while written < size:
                    conn.sendall(unit)
                    written += len(unit)
            except OSError:
                pass
            finally:
                fake.sent.append(written)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake = FakeRedis(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
