"""Assembles the sidecar from its parts: the Redis collector, the OTLP state, the web apps."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Scope

from exporter.auth import Authenticator, AuthMiddleware, OnReject, Verdict, auth_families
from exporter.config import Config, ConfigError, parse_listen_address
from exporter.connections import ConnectionStats
from exporter.exposition import Family
from exporter.otlp.receiver import otlp_app
from exporter.otlp.slowqueries import slow_queries_route
from exporter.otlp.state import OtlpState
from exporter.own_metrics import SelfCollector
from exporter.redis.collector import RedisCollector
from exporter.status.routes import status_routes
from exporter.status.state import StatusState
from exporter.web import WebState, build_web_app
from exporter.webconfig import HeadersMiddleware, WebConfig, WebConfigError, load_web_config

log = logging.getLogger("exporter")
_SIGNALS = {"/v1/metrics": "metrics", "/v1/traces": "traces"}


@dataclass
class Sidecar:
    web_app: ASGIApp
    otlp_app: ASGIApp
    redis: RedisCollector
    otlp: OtlpState
    otlp_config: WebConfig | None = None
    authenticators: dict[str, Authenticator] = field(default_factory=dict)
    connections: ConnectionStats = field(default_factory=ConnectionStats)

    async def close(self) -> None:
        for auth in self.authenticators.values():
            auth.close()
        await self.redis.close()


def build_sidecar(config: Config, web_config: WebConfig | None = None) -> Sidecar:
    redis = RedisCollector(config.scrape_timeout, config.redis)
    otlp = OtlpState(config.otlp, config.slow_queries)
    otlp_config = load_otlp_config(config.otlp_config_file)
    auths = {name: Authenticator(wc.users, wc.bearer_token, config.auth)
             for name, wc in (("web", web_config), ("otlp", otlp_config))
             if wc is not None and (wc.users or wc.bearer_token)}

    def collect_auth() -> list[Family]:
        return auth_families(auths.items()) if auths else []

    connections = ConnectionStats()
    status = StatusState(config, redis, otlp, connections)
    state = WebState(config, redis, [otlp.collect, SelfCollector().collect, collect_auth,
                                     connections.collect, redis.counters],
                     on_redis=status.observe_redis)
    routes = [slow_queries_route(otlp.slow_queries), *status_routes(status)]
    web = _secured(build_web_app(state, routes), web_config, auths.get("web"))
    otlp_asgi = _secured(otlp_app(otlp), otlp_config, auths.get("otlp"), _count_in_receiver(otlp))
    _warn_if_open(config.otlp_listen_address, otlp_config, "otlp" in auths)
    return Sidecar(web, otlp_asgi, redis, otlp, otlp_config, auths, connections)


def load_otlp_config(path: str | None) -> WebConfig | None:
    if not path:
        return None
    try:
        return load_web_config(path, bearer=True)
    except WebConfigError as exc:
        raise ConfigError(f"--otlp.config.file {path}: {exc}") from None


def _secured(app: ASGIApp, web_config: WebConfig | None, auth: Authenticator | None,
             on_reject: OnReject | None = None) -> ASGIApp:
    if auth is not None:
        app = AuthMiddleware(app, auth, on_reject)
    if web_config is not None and web_config.headers:
        app = HeadersMiddleware(app, web_config.headers)
    return app


def _count_in_receiver(otlp: OtlpState) -> OnReject:
    """Refused pushes count among the receiver's requests and rejections, by signal."""
    counters = otlp.counters
    for signal in _SIGNALS.values():
        counters.rejected.setdefault((signal, "unauthorized"), 0)

    def count(scope: Scope, verdict: Verdict) -> None:
        signal = _SIGNALS.get(scope.get("path", ""))
        if signal is not None:
            counters.requests[signal] = counters.requests.get(signal, 0) + 1
            counters.rejected[(signal, verdict)] = counters.rejected.get((signal, verdict), 0) + 1

    return count


def _warn_if_open(address: str, otlp_config: WebConfig | None, authenticated: bool) -> None:
    """One line at start-up when pushes off loopback are open to anyone, or cross in clear."""
    host, _ = parse_listen_address(address, "--otlp.listen-address")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return
    if not authenticated:
        log.warning("the OTLP listener on %s takes pushes from anyone who can reach it: give "
                    "--otlp.config.file a bearer_token_file (and TLS)", address)
    elif otlp_config is None or otlp_config.tls is None:
        log.warning("the OTLP listener on %s is authenticated but without TLS: its token "
                    "crosses the network in clear text", address)
