"""One persistent connection per Redis target, pipelining a scrape's commands in one round trip.

The handshake sends nothing but AUTH and SELECT: no CLIENT SETNAME or SETINFO, which a
least-privilege ACL user may not run and which Redis 7.0 refuses (each refusal would count in its
error stats).
A connection that fails or times out mid-reply is dropped (its protocol state is unknown) and the
next scrape dials again; a healthy one is reused, unlike redis_exporter which dials every scrape.
A reused connection that fails before any byte of reply (closed by a restarted server, or by its
idle `timeout`) is retried once on a fresh one: every command a scrape sends is read-only.

Replies are read by a parser that charges every element against the round trip's byte budget
(`redis.max_reply_bytes`) before reading it, so a huge bulk string or array is refused before it
is buffered, and the connection is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio.connection as rconn
import redis.exceptions
from redis._parsers.resp2 import _AsyncRESP2Parser
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from exporter.limits import RedisLimits
from exporter.redis.errors import ReplyTooLarge, ScrapeError, classify, is_auth_reply
from exporter.redis.target import RedisTarget

# What a decoded element costs beyond its bytes on the wire (its line, the parser's copy of it,
# the object and its slot: about 125 bytes measured), so that an array of millions of tiny
# elements is bounded in memory as well as one huge string.
ELEMENT_OVERHEAD = 128
RETRIED = frozenset({"connection closed by server", "connection reset by server"})


class ReplyBudget:
    """The bytes one round trip's replies may still take; shared by a connection's parser."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def reset(self) -> None:
        self.used = 0

    def charge(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise ReplyTooLarge(self.limit)


class CappedParser(_AsyncRESP2Parser):
    """RESP2, charging each line and bulk length against the budget before reading on."""

    def __init__(self, socket_read_size: int, budget: ReplyBudget) -> None:
        super().__init__(socket_read_size)
        self.budget = budget

    async def _readline(self) -> bytes:
        try:
            line = await super()._readline()
        except ValueError:  # the stream reader's line limit (64 KiB): no CRLF in sight
            raise ReplyTooLarge(self.budget.limit) from None
        self.budget.charge(len(line) + 2 + ELEMENT_OVERHEAD)
        return line

    async def _read(self, length: int) -> bytes:
        if length < 0:
            raise redis.exceptions.InvalidResponse("Protocol Error: negative bulk length")
        self.budget.charge(length + 2)
        return await super()._read(length)


@dataclass(slots=True)
class ConnectionStats:
    """Counted for the sidecar's own metrics, per target; outlive the connection objects."""

    reconnects: int = 0
    replies_too_large: int = 0


class _SSLConnection(rconn.SSLConnection):
    """redis-py's TLS connection, with the target's `tls.server_name` (when set) sent as SNI and
    checked against the server's certificate instead of the address's host."""

    def __init__(self, server_name: str | None = None, **kwargs: Any) -> None:
        self._server_name = server_name
        super().__init__(**kwargs)

    def _connection_arguments(self) -> Mapping[str, Any]:
        arguments = dict(super()._connection_arguments())
        if self._server_name:
            arguments["server_hostname"] = self._server_name
        return arguments


def build_connection(target: RedisTarget, timeout: float,
                     budget: ReplyBudget | None = None) -> rconn.AbstractConnection:
    parser = functools.partial(CappedParser, budget=budget or ReplyBudget(
        RedisLimits().max_reply_bytes))
    common: dict[str, Any] = {
        "parser_class": parser,
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
        return _SSLConnection(
            server_name=tls.server_name,
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
    """Serialises round trips to one target over one connection (the collector already lets
    concurrent scrapes of a target share one)."""

    def __init__(self, target: RedisTarget, timeout: float,
                 limits: RedisLimits | None = None, stats: ConnectionStats | None = None) -> None:
        self.target = target
        self.timeout = timeout
        # Time spent dialing since `reset_connect_time` (the collector resets it per scrape,
        # which may take more than one round trip).
        self.last_connect_seconds = 0.0
        # Counts the connections dialed: what a server refused is asked again on a new one.
        self.generation = 0
        self.stats = stats or ConnectionStats()
        self._budget = ReplyBudget((limits or RedisLimits()).max_reply_bytes)
        self._conn: rconn.AbstractConnection | None = None
        self._lock = asyncio.Lock()

    async def execute(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        async with self._lock:
            reused = self._conn is not None and self._conn.is_connected
            try:
                return await self._round_trip(commands)
            except ScrapeError as error:
                if not (reused and self._budget.used == 0 and error.reason in RETRIED):
                    raise
            self.stats.reconnects += 1
            return await self._round_trip(commands)

    async def _round_trip(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        try:
            self._budget.reset()
            conn = await self._connected()
            self._budget.reset()  # the handshake's replies are not the scrape's
            await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            return [await self._read_one(conn) for _ in commands]
        except BaseException as exc:
            self._drop()
            if isinstance(exc, asyncio.CancelledError):
                raise
            if isinstance(exc, ReplyTooLarge):
                self.stats.replies_too_large += 1
            raise classify(exc, self.timeout) from None

    async def _connected(self) -> rconn.AbstractConnection:
        if self._conn is not None and self._conn.is_connected:
            return self._conn
        started = time.perf_counter()
        conn = build_connection(self.target, self.timeout, self._budget)
        self._conn = conn
        self.generation += 1
        connect: Callable[[], Awaitable[None]] = conn.connect  # unannotated in redis-py
        await connect()
        self.last_connect_seconds += time.perf_counter() - started
        return conn

    def reset_connect_time(self) -> None:
        self.last_connect_seconds = 0.0

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
            _close_now(conn)

    async def close(self) -> None:
        async with self._lock:
            self._drop()


def _close_now(conn: rconn.AbstractConnection) -> None:
    """Closes the socket without awaiting: redis-py's asyncio connection has no public way to
    (its `_close`, redis-py 5 to 8), and a close that awaits fails once the loop is gone."""
    close = getattr(conn, "_close", None)
    if callable(close):
        with contextlib.suppress(RuntimeError):  # its event loop may already be closed
            close()
