"""Runs the sidecar: two uvicorn servers (web and OTLP) on one event loop, stopped together on
SIGTERM or SIGINT within the graceful-shutdown bound."""

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
from exporter.log import setup_logging
from exporter.webconfig import WebConfig, load_web_config

log = logging.getLogger("exporter")
GRACEFUL_SHUTDOWN_SECONDS = 4


class _Server(uvicorn.Server):
    """Signals are handled once for both servers, in `serve_all`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _uvicorn_config(app: ASGIApp, address: str, flag: str, tls: WebConfig | None) -> uvicorn.Config:
    host, port = parse_listen_address(address, flag)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            lifespan="off", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                            server_header=False)
    config.load()
    if tls is not None and tls.tls is not None:
        config.ssl = tls.tls
    return config


async def serve_all(servers: Sequence[uvicorn.Server], sidecar: Sidecar) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        log.info("shutting down")
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(*(s.serve() for s in servers))
    finally:
        await sidecar.close()


def run(config: Config) -> int:
    setup_logging(config.log_level, config.log_format)
    web_config = load_web_config(config.web_config_file) if config.web_config_file else None
    sidecar = build_sidecar(config, web_config)
    servers = [
        _Server(_uvicorn_config(sidecar.web_app, config.web_listen_address,
                                "--web.listen-address", web_config)),
        _Server(_uvicorn_config(sidecar.otlp_app, config.otlp_listen_address,
                                "--otlp.listen-address", sidecar.otlp_config)),
    ]
    log.info("starting", extra={
        "version": __version__,
        "web": config.web_listen_address,
        "otlp": config.otlp_listen_address,
        "targets": ",".join(t.address for t in config.targets) or "none",
        "tls": bool(web_config and web_config.tls),
        "basic_auth": bool(web_config and web_config.users),
    })
    asyncio.run(serve_all(servers, sidecar))
    if any(not s.started for s in servers):
        log.error("a listener could not start (see above)")
        return 1
    return 0
