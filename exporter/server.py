"""Runs the sidecar: two uvicorn servers (web and OTLP) on one event loop, their connections
bounded by exporter/connections.py.

Signals: SIGTERM, SIGINT and SIGQUIT stop both servers gracefully (a log line; requests in flight
finish within the graceful-shutdown bound; a second one stops at once). SIGHUP is logged and
ignored (the configuration is read at start only: restart to apply a change). SIGUSR1 logs one
status line (connections, requests in flight, refusals). SIGUSR2 is logged and ignored."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
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
                            timeout_keep_alive=KEEP_ALIVE_SECONDS)
    config.load()
    if tls is not None and tls.tls is not None:
        listener.tls = tls.tls
    return config


KEEP_ALIVE_SECONDS = 5
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_IGNORED_SIGNALS = {signal.SIGHUP: "the configuration is read at start only: restart to apply "
                                   "a change",
                    signal.SIGUSR2: "no meaning"}


async def serve_all(servers: Sequence[uvicorn.Server], sidecar: Sidecar,
                    connections: ConnectionStats | None = None) -> None:
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
    try:
        await asyncio.gather(*(s.serve() for s in servers))
    finally:
        await sidecar.close()


def run(config: Config) -> int:
    setup_logging(config.log_level, config.log_format)
    logging.getLogger("uvicorn.error").addFilter(RequestLogFilter())
    web_config = load_web_config(config.web_config_file) if config.web_config_file else None
    sidecar = build_sidecar(config, web_config)
    stats = sidecar.connections
    servers = [
        _Server(_uvicorn_config(sidecar.web_app, config.web_listen_address,
                                "--web.listen-address", web_config,
                                stats.listener("web", config.server))),
        _Server(_uvicorn_config(sidecar.otlp_app, config.otlp_listen_address,
                                "--otlp.listen-address", sidecar.otlp_config,
                                stats.listener("otlp", config.server))),
    ]
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
    with asyncio.Runner(loop_factory=EventLoop) as runner:
        runner.run(serve_all(servers, sidecar, stats))
    if any(not s.started for s in servers):
        log.error("a listener could not start (see above)")
        return 1
    return 0
