"""Assembles the sidecar from its parts: the Redis collector, the OTLP state, the web apps."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp

from exporter.config import Config
from exporter.otlp.receiver import otlp_app
from exporter.otlp.state import OtlpState
from exporter.redis.collector import RedisCollector
from exporter.selfmetrics import SelfCollector
from exporter.slowqueries import slow_queries_route
from exporter.web import WebState, build_web_app
from exporter.webconfig import BasicAuthMiddleware, HeadersMiddleware, WebConfig


@dataclass
class Sidecar:
    web_app: ASGIApp
    otlp_app: ASGIApp
    redis: RedisCollector
    otlp: OtlpState

    async def close(self) -> None:
        await self.redis.close()


def build_sidecar(config: Config, web_config: WebConfig | None = None) -> Sidecar:
    redis = RedisCollector(config.scrape_timeout)
    otlp = OtlpState(config.otlp, config.slow_queries)
    state = WebState(config, redis, [otlp.collect, SelfCollector().collect])
    web: ASGIApp = build_web_app(state, [slow_queries_route(otlp.slow_queries)])
    if web_config is not None and web_config.users:
        web = BasicAuthMiddleware(web, web_config.users)
    if web_config is not None and web_config.headers:
        web = HeadersMiddleware(web, web_config.headers)
    return Sidecar(web, otlp_app(otlp), redis, otlp)
