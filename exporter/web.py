"""The web listener: what Prometheus scrapes and what people open."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from exporter.config import Config
from exporter.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    Family,
    counter,
    render,
    render_gzip,
    wants_openmetrics,
)
from exporter.gc_pause import GC_PAUSE
from exporter.redis.collector import RedisCollector
from exporter.redis.target import RedisTarget, TargetError, normalize_address

Collect = Callable[[], list[Family]]
# Sees the Redis families of each collection as they pass (the status page's recorder):
# (families, the targets collected, whether samples carry a `target` label).
RedisObserver = Callable[[list[Family], Sequence[RedisTarget], bool], None]
log = logging.getLogger("exporter.web")
SCRAPE_HEADROOM = 0.25
RENDERS_AT_ONCE = 2


@dataclass
class WebState:
    config: Config
    redis: RedisCollector
    collectors: Sequence[Collect] = field(default_factory=list)
    scrape_request_errors: int = 0
    on_redis: RedisObserver | None = None

    def observe(self, families: list[Family], targets: Sequence[RedisTarget],
                labelled: bool) -> None:
        if self.on_redis is not None:
            try:
                self.on_redis(families, targets, labelled)
            except Exception:  # the page's recorder must never cost a scrape
                log.exception("redis observer failed")

    def collect(self) -> list[Family]:
        return [counter("redis_target_scrape_request_errors_total",
                        "Requests to /scrape refused: no target, a bad one, or one the config "
                        "does not allow", self.scrape_request_errors)]


def _timeout(request: Request, configured: float) -> float:
    """Prometheus announces its own scrape timeout; finish a little before it."""
    header = request.headers.get("x-prometheus-scrape-timeout-seconds")
    try:
        announced = float(header) - SCRAPE_HEADROOM if header else configured
    except ValueError:
        announced = configured
    return max(0.05, min(configured, announced))


def _accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().removeprefix("q=")
            return not q or q.strip() not in ("0", "0.0", "0.00", "0.000")
    return False


def _collect_all(families: list[Family], collectors: Sequence[Collect]) -> list[Family]:
    for collect in collectors:
        try:
            families.extend(collect())
        except Exception:  # one broken collector must not cost the Redis metrics
            log.exception("collector failed", extra={"collector": repr(collect)})
    return families


def _body(families: list[Family], collectors: Sequence[Collect], openmetrics: bool,
          compress: bool) -> bytes:
    with GC_PAUSE.held():
        everything = _collect_all(families, collectors)
        return (render_gzip if compress else render)(everything, openmetrics)


async def _exposition(request: Request, families: list[Family], renders: asyncio.Semaphore,
                      collectors: Sequence[Collect] = ()) -> Response:
    """Collection of the in-memory families, rendering and compression run in a worker thread
    (at most RENDERS_AT_ONCE at a time), so /healthz and the OTLP listener never wait behind a
    large body."""
    openmetrics = wants_openmetrics(request.headers.get("accept"))
    compress = _accepts_gzip(request.headers.get("accept-encoding", ""))
    async with renders:
        body = await asyncio.to_thread(_body, families, collectors, openmetrics, compress)
    headers = {"Content-Type": OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE}
    if compress:
        headers["Content-Encoding"] = "gzip"
    return Response(body, headers=headers)


def build_web_app(state: WebState, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    config = state.config
    several = len(config.targets) > 1
    renders = asyncio.Semaphore(RENDERS_AT_ONCE)

    async def metrics(request: Request) -> Response:
        timeout = _timeout(request, config.scrape_timeout)
        families = await state.redis.collect(config.targets, timeout, label_targets=several)
        state.observe(families, config.targets, several)
        families.extend(state.collect())
        return await _exposition(request, families, renders, state.collectors)

    def refuse(message: str, status: int) -> Response:
        state.scrape_request_errors += 1
        return PlainTextResponse(message + "\n", status_code=status)

    async def scrape(request: Request) -> Response:
        raw = request.query_params.get("target", "")
        if not raw:
            return refuse("missing ?target=", 400)
        if "@" in (raw.partition("://")[2] or raw):
            return refuse("credentials are not accepted in ?target=; put them in the config "
                          "file", 400)
        try:
            address = normalize_address(raw)
        except TargetError:
            return refuse("invalid ?target= address", 400)
        target = config.scrape_targets.get(address)
        if target is None:
            return refuse(f"target {address} is not allowed by the config file", 403)
        families = await state.redis.collect([target], _timeout(request, config.scrape_timeout))
        state.observe(families, [target], False)
        return await _exposition(request, families, renders)

    routes: list[BaseRoute] = [
        Route("/metrics", metrics),
        Route("/scrape", scrape),
        *extra_routes,
    ]
    return Starlette(routes=routes)

