"""Both listeners' connections, bounded before a request reaches the app.

Each listener (web, OTLP) gets a `Listener`: it caps the connections open on it and per client
address, and counts every connection it turns away. The HTTP protocol classes are uvicorn's own
(`H11Protocol`, `HttpToolsProtocol`), subclassed by `gated_protocol` to:

- refuse a connection over a cap in `connection_made`, before uvicorn sees it (abort: no
  response, no traceback, no log line per connection, only a counter and a throttled line);
- do the TLS handshake themselves (`start_tls` below, asyncio's with `ssl_handshake_timeout`
  and a 32 KiB read buffer), so that a connection counts against the caps from its first
  packet, not from the end of its handshake;
- arm a timer from the connection's start (and from the first byte of each later request on a
  kept-alive connection) until the request's headers are complete: a connection that sends no
  byte, or not all its headers, within `server.header_timeout` is closed;
- count the bytes received while the headers are incomplete: past `server.max_header_bytes` the
  request gets 431 and the connection is closed before the parser buffers more;
- when a new connection finds a cap reached, close the connection that has been idle longest
  between two requests (of the same client for the per-client cap, of any for the listener's)
  and admit the new one: a kept-alive connection holds its place only while nobody needs it,
  so a pod with more workers than `server.max_connections_per_client` still gets every push in.

uvicorn internals relied on (guarded by tests/test_connections.py, one test per protocol):
`connection_made`/`connection_lost`/`data_received`/`on_response_complete`/`send_400_response`
and the attributes `transport`, `timeout_keep_alive_task` (set while a kept-alive connection
waits for its next request), `conn` (h11.Connection, H11Protocol), `parser` and the parser
callbacks `on_message_begin`/`on_headers_complete`/`on_message_complete` (HttpToolsProtocol).
asyncio internals relied on: `SSLProtocol` (its constructor, `max_size`, `_app_transport`,
`_handshake_timeout_handle`; tests/test_connections.py) and the selector loop's
`_accept_connection` (`EventLoop`; tests/abuse/test_connections.py, the fd-limit test).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl
import time
from asyncio import sslproto
from collections.abc import Callable
from typing import Any, Protocol

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from exporter.exposition import Family, counter, gauge
from exporter.limits import ServerLimits

log = logging.getLogger("exporter.connections")

REASONS = ("max_connections", "per_client", "header_timeout", "header_too_large",
           "tls_handshake_timeout", "tls_handshake_failed", "invalid_request")
LOG_INTERVAL_SECONDS = 10.0
_TOO_LARGE = b"Request header fields too large"
_RESPONSE_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                 b"content-type: text/plain; charset=utf-8\r\n"
                 b"content-length: " + str(len(_TOO_LARGE)).encode() + b"\r\n"
                 b"connection: close\r\n\r\n" + _TOO_LARGE)


class Throttle:
    """At most one log line per key and interval; the line says how many events it stands for."""

    def __init__(self, interval: float = LOG_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[Any, float] = {}
        self._pending: dict[Any, int] = {}

    def hit(self, key: Any) -> int | None:
        """Count an event; the number of events to report if a line is due now, else None."""
        self._pending[key] = self._pending.get(key, 0) + 1
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return None
        self._last[key] = now
        return self._pending.pop(key)


class Idle(Protocol):
    def evict(self) -> None:
        """Give up its slot now and close (it is idle between two requests)."""


class Listener:
    """One listener's connections: the caps, the counts, the handshakes in progress, and the
    kept-alive connections idle between two requests (oldest first), closed to make room."""

    def __init__(self, name: str, limits: ServerLimits, tls: ssl.SSLContext | None = None,
                 throttle: Throttle | None = None) -> None:
        self.name = name
        self.limits = limits
        self.tls = tls
        self.open = 0
        self.accepted = 0
        self.per_client: dict[str, int] = {}
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.handshaking: set[asyncio.Transport] = set()
        self.idle_closed = 0
        self._idle: dict[Idle, str] = {}  # idle connections, longest idle first, their clients
        self._throttle = throttle or Throttle()

    def admit(self, client: str) -> bool:
        """Take a slot for a new connection from `client` (closing an idle one if a cap is
        reached), or count and log its refusal."""
        if self.open >= self.limits.max_connections and not self._close_idle(None):
            self.reject("max_connections")
            return False
        if (self.per_client.get(client, 0) >= self.limits.max_connections_per_client
                and not self._close_idle(client)):
            self.reject("per_client")
            return False
        held = self.per_client.get(client, 0)
        self.open += 1
        self.accepted += 1
        self.per_client[client] = held + 1
        return True

    def release(self, client: str) -> None:
        self.open -= 1
        left = self.per_client.get(client, 1) - 1
        if left > 0:
            self.per_client[client] = left
        else:
            self.per_client.pop(client, None)

    def idle(self, connection: Idle, client: str) -> None:
        self._idle[connection] = client

    def busy(self, connection: Idle) -> None:
        self._idle.pop(connection, None)

    def _close_idle(self, client: str | None) -> bool:
        """Close the longest idle connection (of `client`, or of anyone); False if none."""
        for connection, owner in self._idle.items():
            if client is None or owner == client:
                del self._idle[connection]
                connection.evict()
                self.idle_closed += 1
                return True
        return False

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1
        count = self._throttle.hit(reason)
        if count is not None:
            log.warning("connections refused", extra={
                "listener": self.name, "reason": reason, "count": count,
                "interval": f"{self._throttle.interval:g}s", "open": self.open})

    def abort_handshakes(self) -> None:
        for transport in list(self.handshaking):
            transport.abort()

    def status(self) -> dict[str, Any]:
        refused = sum(self.rejected.values())
        return {f"{self.name}_open": self.open, f"{self.name}_accepted": self.accepted,
                f"{self.name}_refused": refused, f"{self.name}_clients": len(self.per_client)}


class ConnectionStats:
    """Every listener's counts, as the sidecar's own metrics; and accept() failures."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []
        self.accept_errors = 0
        self._throttle = Throttle()

    def listener(self, name: str, limits: ServerLimits,
                 tls: ssl.SSLContext | None = None) -> Listener:
        listener = Listener(name, limits, tls)
        self.listeners.append(listener)
        return listener

    def accept_failed(self, error: BaseException | None) -> None:
        self.accept_errors += 1
        count = self._throttle.hit("accept")
        if count is not None:
            log.error("accept failed, retrying in 1s", extra={
                "error": str(error), "count": count,
                "interval": f"{self._throttle.interval:g}s"})

    def collect(self) -> list[Family]:
        opened = gauge("tradesense_exporter_connections_open",
                       "Connections open on each listener (TLS handshakes included)")
        accepted = counter("tradesense_exporter_connections_accepted_total",
                           "Connections admitted on each listener")
        rejected = counter("tradesense_exporter_connections_rejected_total",
                           "Connections closed by a server limit, by listener and reason")
        idle_closed = counter("tradesense_exporter_connections_idle_closed_total",
                              "Kept-alive connections idle between two requests, closed to "
                              "admit a new one at server.max_connections or "
                              "server.max_connections_per_client")
        for lst in self.listeners:
            opened.add(lst.open, (("listener", lst.name),))
            accepted.add(lst.accepted, (("listener", lst.name),))
            idle_closed.add(lst.idle_closed, (("listener", lst.name),))
            for reason, n in lst.rejected.items():
                rejected.add(n, (("listener", lst.name), ("reason", reason)))
        errors = counter("tradesense_exporter_accept_errors_total",
                         "accept() calls that failed for lack of a resource (EMFILE, ENFILE, "
                         "ENOBUFS, ENOMEM); the listener retries after 1s", self.accept_errors)
        return [opened, accepted, rejected, idle_closed, errors]

    def loop_exception_handler(self, loop: asyncio.AbstractEventLoop,
                               context: dict[str, Any]) -> None:
        """asyncio logs a traceback per failed accept() (then backs off 1s): count it and log
        one throttled line instead. Anything else goes to the default handler."""
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            self.accept_failed(context.get("exception"))
            return
        loop.default_exception_handler(context)


class RequestLogFilter(logging.Filter):
    """uvicorn logs a warning per malformed request; one throttled line per message instead."""

    MESSAGES = ("Invalid HTTP request received.", "Unsupported upgrade request.",
                "No supported WebSocket library detected")

    def __init__(self, throttle: Throttle | None = None) -> None:
        super().__init__()
        self.throttle = throttle or Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        key = next((m for m in self.MESSAGES if message.startswith(m)), None)
        if key is None:
            return True
        count = self.throttle.hit(key)
        if count is None:
            return False
        record.count = count
        record.interval = f"{self.throttle.interval:g}s"
        return True


_OUT_OF_RESOURCE = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class _AcceptOnceAfterFailure:
    """The listening socket as `_accept_connection` sees it for one readiness event: after an
    accept() fails for lack of a resource, the next ones say 'nothing waiting'."""

    def __init__(self, sock: Any) -> None:
        self.inner = sock
        self.failed = False

    def accept(self) -> Any:
        if self.failed:
            raise BlockingIOError(errno.EAGAIN, "accept paused after a resource failure")
        try:
            return self.inner.accept()
        except OSError as exc:
            if exc.errno in _OUT_OF_RESOURCE:
                self.failed = True
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class EventLoop(asyncio.SelectorEventLoop):
    """The selector loop, but one failed accept() per readiness event, not `backlog` of them.

    Python's `_accept_connection` (3.11, at least) goes on calling accept() after an EMFILE, up to
    `backlog` (uvicorn: 2,048) times per event, and schedules a retry and reports the error for
    each: 2,048 tracebacks and 2,048 timers per event, which is the log flood and the spinning
    CPU of a listener at the fd limit. This relies on the private `_accept_connection(factory,
    sock, ...)` (guarded by tests/abuse/test_connections.py)."""

    def _accept_connection(self, protocol_factory: Any, sock: Any,
                           *args: Any, **kwargs: Any) -> None:
        if isinstance(sock, _AcceptOnceAfterFailure):
            sock = sock.inner
        super()._accept_connection(  # type: ignore[misc]
            protocol_factory, _AcceptOnceAfterFailure(sock), *args, **kwargs)


class _SSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS layer with a 32 KiB read buffer instead of 256 KiB: the buffer is
    allocated (and touched) per connection before the handshake, which made a stalled handshake
    cost about 300 KB. Two TLS records fit; the sidecar's requests are small."""

    max_size = 32 * 1024

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        # A handshake that timed out leaves its timer handle, whose callback is a bound method of
        # this protocol: a reference cycle that only the cyclic GC would free, late.
        handle: asyncio.TimerHandle | None = self._handshake_timeout_handle  # type: ignore[has-type]
        if handle is not None:
            handle.cancel()
            self._handshake_timeout_handle = None


async def start_tls(loop: asyncio.AbstractEventLoop, transport: asyncio.Transport,
                    protocol: asyncio.Protocol, context: ssl.SSLContext,
                    timeout: float) -> asyncio.Transport | str | None:
    """`loop.start_tls(server_side=True)` (Python 3.11's, line for line) with `_SSLProtocol`,
    and a failed handshake returned as "timeout" or "failed" rather than raised. Relies on
    asyncio.sslproto.SSLProtocol's constructor, `_app_transport` and
    `_handshake_timeout_handle`. None: the peer closed during the handshake."""
    waiter = loop.create_future()
    tls = _SSLProtocol(loop, protocol, context, waiter, True, None,
                       ssl_handshake_timeout=timeout,  # type: ignore[arg-type]
                       ssl_shutdown_timeout=timeout, call_connection_made=False)
    transport.pause_reading()
    transport.set_protocol(tls)
    made = loop.call_soon(tls.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except asyncio.CancelledError:
        transport.close()
        made.cancel()
        resumed.cancel()
        raise
    except BaseException as exc:
        transport.close()
        made.cancel()
        resumed.cancel()
        # Neither the exception nor its traceback (which holds this frame, which holds the
        # waiter, which holds the exception) outlives this call: no cycle for the GC to find.
        exc.__traceback__ = None
        del waiter
        return "timeout" if isinstance(exc, ConnectionAbortedError) else "failed"
    return tls._app_transport


def _client_of(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "unix")


class _Gate:
    """The connection limits, mixed in before one of uvicorn's HTTP protocols."""

    listener: Listener
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate_init()

    def _gate_init(self) -> None:
        self._client = ""
        self._admitted = False
        self._started = False
        self._closed = False
        self._in_headers = True
        self._header_bytes = 0
        self._tail = b""
        self._header_timer: asyncio.TimerHandle | None = None
        self._early: list[bytes] = []

    # The base protocol's methods (resolved through the MRO: H11Protocol or HttpToolsProtocol).
    def _base_connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._client = _client_of(transport)
        if not self.listener.admit(self._client):
            transport.abort()
            return
        self._admitted = True
        if self.listener.tls is not None:
            self.listener.handshaking.add(transport)
            self.loop.create_task(self._handshake(transport, self.listener.tls))
            return
        self._start(transport)

    async def _handshake(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        timeout = self.listener.limits.tls_handshake_timeout_seconds
        try:
            tls = await start_tls(self.loop, raw, self, context,  # type: ignore[arg-type]
                                  timeout)
        except asyncio.CancelledError:
            raw.abort()
            self._release()
            raise
        finally:
            self.listener.handshaking.discard(raw)
        if isinstance(tls, str):
            self.listener.reject(f"tls_handshake_{tls}")
        if tls is None or isinstance(tls, str) or tls.is_closing():
            raw.abort()
            self._release()
            self._never_started()
            return
        self._start(tls)

    def _start(self, transport: asyncio.Transport) -> None:
        self._started = True
        self._base_connection_made(transport)
        self._arm_header_timer()
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)  # type: ignore[attr-defined]

    def _held_back(self, data: bytes) -> bool:
        """asyncio's TLS layer may hand over the first request's bytes as the handshake ends,
        before `start_tls` has returned: keep them until then (one read, at most a loop turn;
        the header limit applies when they are replayed)."""
        if self._started:
            return False
        self._early.append(data)
        return True

    def _release(self) -> None:
        if self._admitted:
            self._admitted = False
            self.listener.release(self._client)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.busy(self)
        self._cancel_header_timer()
        self._release()
        if self._started:
            super().connection_lost(exc)  # type: ignore[misc]
        else:
            self._never_started()

    def _never_started(self) -> None:
        """Break what uvicorn's constructor tied (its connection_lost does it for a started
        connection), so that a refused connection is freed at once, not by the cyclic GC."""

    # Idle between two requests: its slot may be taken.
    def _maybe_idle(self) -> None:
        """After a response: idle if uvicorn waits for the next request (its keep-alive timer
        armed) and no byte of one has come."""
        if (getattr(self, "timeout_keep_alive_task", None) is not None and not self._closed
                and self._in_headers and self._header_bytes == 0):
            self.listener.idle(self, self._client)

    def evict(self) -> None:
        self._closed = True
        self._release()
        self.transport.close()

    # Headers: a deadline and a size.
    def _arm_header_timer(self) -> None:
        if self._header_timer is None and not self._closed:
            self._header_timer = self.loop.call_later(
                self.listener.limits.header_timeout_seconds, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._in_headers and not self._closed:
            self._closed = True
            self.listener.reject("header_timeout")
            self.transport.abort()

    def _awaiting_headers(self) -> None:
        """A new request may start: its header bytes are counted from here."""
        if not self._in_headers:
            self._in_headers = True
            self._header_bytes = 0
            self._tail = b""

    def _headers_complete(self) -> None:
        self._in_headers = False
        self._cancel_header_timer()

    def _count_header_bytes(self, data: bytes) -> bool:
        """False (and the connection answered 431 and closed) once the headers are too big.
        Body bytes that arrive in the same read as the end of the headers do not count."""
        if self._closed:
            return False
        if not self._in_headers:
            return True
        limit = self.listener.limits.max_header_bytes
        start = self._header_bytes - len(self._tail)  # where tail + data begins
        self._header_bytes += len(data)
        if self._header_bytes > limit:
            end = (self._tail + data[: limit + 4]).find(b"\r\n\r\n")
            if end >= 0 and start + end + 4 <= limit:
                self._header_bytes = start + end + 4
                return True
        self._tail = (self._tail + data[-3:])[-3:]
        if self._header_bytes > limit:
            self._closed = True
            self._cancel_header_timer()
            self.listener.reject("header_too_large")
            self.transport.write(_RESPONSE_431)
            self.transport.close()
            return False
        self._arm_header_timer()
        return True

    def send_400_response(self, msg: str) -> None:
        self.listener.reject("invalid_request")
        self._closed = True
        self._cancel_header_timer()
        super().send_400_response(msg)  # type: ignore[misc]


class GatedH11Protocol(_Gate, H11Protocol):  # type: ignore[misc]
    """h11: the headers are complete when h11 has produced the request (their state leaves
    IDLE); h11's own incomplete-event limit is set above ours, as a backstop."""

    def data_received(self, data: bytes) -> None:
        self.listener.busy(self)
        if self._held_back(data) or not self._count_header_bytes(data):
            return
        super().data_received(data)
        self._check_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._check_request()
        self._maybe_idle()

    def _check_request(self) -> None:
        if self._closed:
            return
        if self.conn.their_state is h11.IDLE:
            self._awaiting_headers()
        else:
            self._headers_complete()


class GatedHttpToolsProtocol(_Gate, HttpToolsProtocol):  # type: ignore[misc]
    """httptools: the parser's callbacks say when a message begins and its headers end."""

    def data_received(self, data: bytes) -> None:
        self.listener.busy(self)
        if self._held_back(data) or not self._count_header_bytes(data):
            return
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._maybe_idle()

    def _never_started(self) -> None:
        self.parser = None  # type: ignore[assignment]  # it refers back to this protocol

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._headers_complete()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_headers()


PROTOCOLS: dict[str, type[asyncio.Protocol]] = {"h11": GatedH11Protocol,
                                                 "httptools": GatedHttpToolsProtocol}


def protocol_name() -> str:
    """httptools (uvicorn's `auto` choice, a dependency); EXPORTER_HTTP_PROTOCOL overrides it
    (h11 or httptools), for tests and for comparing the two."""
    chosen = os.environ.get("EXPORTER_HTTP_PROTOCOL", "").strip().lower()
    if chosen in PROTOCOLS:
        return chosen
    return "httptools"


def gated_protocol(listener: Listener, name: str | None = None) -> type[asyncio.Protocol]:
    """A protocol class for uvicorn's `Config(http=...)`, bound to `listener`."""
    base = PROTOCOLS[name or protocol_name()]
    return type(f"{base.__name__}_{listener.name}", (base,), {"listener": listener})


def h11_backstop(limits: ServerLimits) -> int:
    """h11's own incomplete-event limit: above ours, so a too-big header gets our 431 first."""
    return 2 * limits.max_header_bytes + 4096

