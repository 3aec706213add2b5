"""Runs the sidecar: two uvicorn servers (web and OTLP) on one event loop, their connections
bounded by exporter/connections.py.

Both listening sockets are bound before either server starts: an address that cannot be bound
(in use, not on this machine, a privileged port) stops start-up with one line naming every such
address and exit code 3 (`LISTEN_FAILED`), never a traceback. The process logs its life once:
`starting`, `listening` (both addresses), `shutting down` (on a signal), `stopped`; uvicorn's own
per-server lines ("Started server process", "Shutting down", ...) are dropped, since with two
servers in one process each would appear twice.

Signals: SIGTERM, SIGINT and SIGQUIT stop both servers gracefully (a log line; requests in flight
finish within the graceful-shutdown bound; a second one stops at once). SIGHUP is logged and
ignored (the configuration is read at start only: restart to apply a change). SIGUSR1 logs one
status line (connections, requests in flight, refusals). SIGUSR2 is logged and ignored."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import Generator, Sequence

import uvicorn
from starlette.types import ASGIApp

from exporter import __version__
from exporter.app import Sidecar, build_sidecar
from exporter.config import Config, parse_listen_address
from exporter.connections import (
    ConnectionStats,
    EventLoop,
    Listener,
    RequestLogFilter,
    gated_protocol,
    h11_backstop,
    protocol_name,
)
from exporter.log import setup_logging
from exporter.webconfig import WebConfig, load_web_config

log = logging.getLogger("exporter")
GRACEFUL_SHUTDOWN_SECONDS = 4
LISTEN_FAILED = 3
"""Exit code when a listener cannot be bound (0: clean stop, 2: bad flag or file)."""


class ListenError(Exception):
    """One or more listen addresses cannot be bound; the message names each one and why."""


class UvicornLifecycleFilter(logging.Filter):
    """Drops uvicorn's per-server start and stop lines: the sidecar runs two servers in one
    process, so each would appear twice; `run` logs the process's own (`listening`,
    `stopped`), and `shutting down` comes from the signal handler."""

    MESSAGES = frozenset({
        "Started server process [%d]",
        "Finished server process [%d]",
        "Shutting down",
        "Waiting for application startup.",
        "Application startup complete.",
        "Waiting for application shutdown.",
        "Application shutdown complete.",
        "Waiting for connections to close. (CTRL+C to force quit)",
        "Waiting for background tasks to complete. (CTRL+C to force quit)",
    })

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg in self.MESSAGES)


class _Server(uvicorn.Server):
    """Signals are handled once for both servers, in `serve_all`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _uvicorn_config(app: ASGIApp, address: str, flag: str, tls: WebConfig | None,
                    listener: Listener) -> uvicorn.Config:
    """The TLS handshake is the gated protocol's (so that it counts against the connection
    caps and times out), not uvicorn's: `config.ssl` stays None."""
    host, port = parse_listen_address(address, flag)
    limits = listener.limits
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            lifespan="off", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                            server_header=False, http=gated_protocol(listener),
                            h11_max_incomplete_event_size=h11_backstop(limits),
                            timeout_keep_alive=math.ceil(limits.keep_alive_timeout_seconds))
    config.load()
    if tls is not None and tls.tls is not None:
        listener.tls = tls.tls
    return config


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_IGNORED_SIGNALS = {signal.SIGHUP: "the configuration is read at start only: restart to apply "
                                   "a change",
                    signal.SIGUSR2: "no meaning"}


def _bind(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for every address `host` resolves to, as `loop.create_server` would
    open them (SO_REUSEADDR, IPv6 sockets IPv6-only)."""
    infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                               socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # a family this host does not support
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
        if not sockets:
            raise OSError(f"no usable address for {host}")
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def bind_all(listeners: Sequence[tuple[str, str, int]], backlog: int
             ) -> list[list[socket.socket]]:
    """Binds every (flag, host, port) before any serves. If any fails, closes what was bound
    and raises `ListenError` naming every address that failed."""
    bound: list[list[socket.socket]] = []
    failures: list[str] = []
    for flag, host, port in listeners:
        try:
            bound.append(_bind(host, port, backlog))
        except OSError as exc:  # socket.gaierror included
            failures.append(f"{flag} {_address(host, port)}: {_reason(exc)}")
    if failures:
        for sockets in bound:
            for sock in sockets:
                sock.close()
        raise ListenError("cannot listen: " + "; ".join(failures))
    return bound


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bound_address(sockets: Sequence[socket.socket]) -> str:
    return ",".join(_address(*sock.getsockname()[:2]) for sock in sockets)


async def serve_all(servers: Sequence[uvicorn.Server], sidecar: Sidecar,
                    connections: ConnectionStats | None = None,
                    sockets: Sequence[list[socket.socket] | None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    stats = connections or ConnectionStats()
    loop.set_exception_handler(stats.loop_exception_handler)

    def stop(sig: signal.Signals) -> None:
        if any(server.should_exit for server in servers):
            log.warning("stopping now", extra={"signal": sig.name})
            for server in servers:
                server.force_exit = True
            return
        in_flight = sum(len(server.server_state.tasks) for server in servers)
        log.info("shutting down", extra={"signal": sig.name, "in_flight": in_flight,
                                         "grace": f"{GRACEFUL_SHUTDOWN_SECONDS}s"})
        for server in servers:
            server.should_exit = True
        for listener in stats.listeners:
            listener.abort_handshakes()

    def ignore(sig: signal.Signals) -> None:
        log.info("signal ignored", extra={"signal": sig.name, "why": _IGNORED_SIGNALS[sig]})

    def status(sig: signal.Signals) -> None:
        fields: dict[str, object] = {"signal": sig.name}
        for listener in stats.listeners:
            fields.update(listener.status())
        fields["in_flight"] = sum(len(server.server_state.tasks) for server in servers)
        fields["requests"] = sum(server.server_state.total_requests for server in servers)
        fields["accept_errors"] = stats.accept_errors
        log.info("status", extra=fields)

    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    for sig in _IGNORED_SIGNALS:
        loop.add_signal_handler(sig, ignore, sig)
    loop.add_signal_handler(signal.SIGUSR1, status, signal.SIGUSR1)
    bound = sockets or [None] * len(servers)
    try:
        await asyncio.gather(*(s.serve(sockets=b) for s, b in zip(servers, bound, strict=True)))
    finally:
        await sidecar.close()


def run(config: Config) -> int:
    setup_logging(config.log_level, config.log_format)
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(RequestLogFilter())
    uvicorn_log.addFilter(UvicornLifecycleFilter())
    web_config = load_web_config(config.web_config_file) if config.web_config_file else None
    sidecar = build_sidecar(config, web_config)
    stats = sidecar.connections
    configs = [
        _uvicorn_config(sidecar.web_app, config.web_listen_address, "--web.listen-address",
                        web_config, stats.listener("web", config.server)),
        _uvicorn_config(sidecar.otlp_app, config.otlp_listen_address, "--otlp.listen-address",
                        sidecar.otlp_config, stats.listener("otlp", config.server)),
    ]
    servers = [_Server(c) for c in configs]
    log.info("starting", extra={
        "version": __version__,
        "web": config.web_listen_address,
        "otlp": config.otlp_listen_address,
        "targets": ",".join(t.address for t in config.targets) or "none",
        "tls": bool(web_config and web_config.tls),
        "basic_auth": bool(web_config and web_config.users),
        "http": protocol_name(),
        "max_connections": config.server.max_connections,
    })
    try:
        sockets = bind_all([("--web.listen-address", configs[0].host, configs[0].port),
                            ("--otlp.listen-address", configs[1].host, configs[1].port)],
                           configs[0].backlog)
    except ListenError as exc:
        log.error(str(exc))
        asyncio.run(sidecar.close())
        return LISTEN_FAILED
    log.info("listening", extra={"web": _bound_address(sockets[0]),
                                 "otlp": _bound_address(sockets[1])})
    with asyncio.Runner(loop_factory=EventLoop) as runner:
        runner.run(serve_all(servers, sidecar, stats, sockets))
    if any(not s.started for s in servers):
        log.error("a listener could not start (see above)")
        return 1
    log.info("stopped")
    return 0
