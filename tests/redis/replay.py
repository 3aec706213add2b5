"""A small RESP2 server that replays recorded replies: INFO (any section argument) gets the
recorded INFO text, CLUSTER INFO the recorded CLUSTER INFO text, CONFIG GET an empty map, PING
PONG, CLIENT SETNAME OK, anything else `-ERR unknown command`. Loopback only; for the fixtures of
servers that cannot run here (Valkey, KeyDB, Dragonfly, old Redis).

    with replay_server(info=text, cluster_info=text) as port: ...
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _read_command(stream: socket.SocketIO | object) -> list[bytes] | None:
    rfile = stream
    line = rfile.readline()  # type: ignore[attr-defined]
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.split()
    args = []
    for _ in range(int(line[1:])):
        size = int(rfile.readline()[1:])  # type: ignore[attr-defined]
        args.append(rfile.read(size + 2)[:-2])  # type: ignore[attr-defined]
    return args


@contextmanager
def replay_server(info: str, cluster_info: str | None = None) -> Iterator[int]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                try:
                    args = _read_command(self.rfile)
                except (OSError, ValueError):
                    return
                if not args:
                    return
                name = b" ".join(a.upper() for a in args[:2])
                if args[0].upper() == b"INFO":
                    reply = _bulk(info)
                elif name == b"CLUSTER INFO" and cluster_info is not None:
                    reply = _bulk(cluster_info)
                elif name == b"CONFIG GET":
                    reply = b"*0\r\n"
                elif args[0].upper() == b"PING":
                    reply = b"+PONG\r\n"
                elif name == b"CLIENT SETNAME":
                    reply = b"+OK\r\n"
                else:
                    reply = b"-ERR unknown command\r\n"
                try:
                    self.wfile.write(reply)
                except OSError:
                    return

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
