"""One persistent connection per Redis target, pipelining a scrape's commands in one round trip.

The handshake sends nothing but AUTH and SELECT: no CLIENT SETNAME or SETINFO, which a
least-privilege ACL user may not run and which Redis 7.0 refuses (each refusal would count in its
error stats).
A connection that fails or times out mid-reply is dropped (its protocol state is unknown) and the
next scrape dials again; a healthy one is reused, unlike redis_exporter which dials every scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio.connection as rconn
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from exporter.redis.errors import ScrapeError, classify, is_auth_reply
from exporter.redis.target import RedisTarget


def build_connection(target: RedisTarget, timeout: float) -> rconn.AbstractConnection:
    common: dict[str, Any] = {
        "db": target.db,
        "username": target.username,
        "password": target.password,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": True,
        "encoding_errors": "replace",
        "driver_info": None,
        "retry": Retry(NoBackoff(), 0),
        "protocol": 2,
    }
    if target.scheme == "unix":
        return rconn.UnixDomainSocketConnection(path=target.path, **common)
    if target.is_tls:
        tls = target.tls
        return rconn.SSLConnection(
            host=target.host,
            port=target.port,
            ssl_ca_certs=tls.ca_file,
            ssl_certfile=tls.cert_file,
            ssl_keyfile=tls.key_file,
            ssl_cert_reqs="none" if tls.insecure_skip_verify else "required",
            ssl_check_hostname=not tls.insecure_skip_verify,
            **common,
        )
    return rconn.Connection(host=target.host, port=target.port, **common)


class RedisConnection:
    """Serialises scrapes of one target over one connection (a second concurrent scrape waits
    for the first, within its own deadline)."""

    def __init__(self, target: RedisTarget, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self.last_connect_seconds = 0.0
        self._conn: rconn.AbstractConnection | None = None
        self._lock = asyncio.Lock()

    async def execute(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        async with self._lock:
            try:
                conn = await self._connected()
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                return [await self._read_one(conn) for _ in commands]
            except BaseException as exc:
                self._drop()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise classify(exc, self.timeout) from None

    async def _connected(self) -> rconn.AbstractConnection:
        self.last_connect_seconds = 0.0
        if self._conn is not None and self._conn.is_connected:
            return self._conn
        started = time.perf_counter()
        conn = build_connection(self.target, self.timeout)
        self._conn = conn
        await conn.connect()
        self.last_connect_seconds = time.perf_counter() - started
        return conn

    @staticmethod
    async def _read_one(conn: rconn.AbstractConnection) -> Any:
        try:
            return await conn.read_response(disconnect_on_error=False)
        except redis.exceptions.ResponseError as err:
            if is_auth_reply(err):
                raise ScrapeError("authentication failed") from None
            return err

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(RuntimeError):  # its event loop may already be closed
                conn._close()

    async def close(self) -> None:
        async with self._lock:
            self._drop()
