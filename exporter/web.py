"""The web listener: what Prometheus scrapes and what people open."""

from __future__ import annotations

import asyncio
import gzip
import html
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from exporter import __version__
from exporter.config import Config
from exporter.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    Family,
    counter,
    render,
    wants_openmetrics,
)
from exporter.redis.collector import RedisCollector
from exporter.redis.target import TargetError, normalize_address

Collect = Callable[[], list[Family]]
log = logging.getLogger("exporter.web")
SCRAPE_HEADROOM = 0.25
RENDERS_AT_ONCE = 2


@dataclass
class WebState:
    config: Config
    redis: RedisCollector
    collectors: Sequence[Collect] = field(default_factory=list)
    scrape_request_errors: int = 0

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
    body = render(_collect_all(families, collectors), openmetrics)
    return gzip.compress(body, compresslevel=1, mtime=0) if compress else body


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
        return await _exposition(request, families, renders)

    async def healthz(request: Request) -> Response:
        targets = {address: {"up": s.up, "error": s.error, "last_scrape": s.last_scrape,
                             "duration_seconds": round(s.duration, 6),
                             "degraded": list(s.degraded)}
                   for address, s in state.redis.status.items()}
        return JSONResponse({"status": "ok", "version": __version__, "targets": targets})

    async def index(request: Request) -> Response:
        return HTMLResponse(_index_html(config))

    routes: list[BaseRoute] = [
        Route("/", index),
        Route("/metrics", metrics),
        Route("/scrape", scrape),
        Route("/healthz", healthz),
        *extra_routes,
    ]
    return Starlette(routes=routes)


def _index_html(config: Config) -> str:
    targets = "".join(f"<li><code>{html.escape(t.address)}</code></li>" for t in config.targets)
    allowed = "".join(
        f'<li><a href="/scrape?target={html.escape(a)}"><code>{html.escape(a)}</code></a></li>'
        for a in config.scrape_targets)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>tradesense-exporter</title></head>
<body><h1>tradesense-exporter {html.escape(__version__)}</h1>
<ul>
<li><a href="/metrics">/metrics</a>: Redis, application pool and query metrics</li>
<li><a href="/api/slow-queries">/api/slow-queries</a>: the slowest statement fingerprints,
per service (<code>?service=</code> filters)</li>
<li><a href="/healthz">/healthz</a>: liveness and the last scrape of each target</li>
</ul>
<h2>Redis targets on /metrics</h2><ul>{targets or "<li>none</li>"}</ul>
<h2>Targets allowed on /scrape</h2><ul>{allowed or "<li>none</li>"}</ul>
<p>OTLP/HTTP receiver on <code>{html.escape(config.otlp_listen_address)}</code>
(<code>POST /v1/metrics</code>, <code>POST /v1/traces</code>).</p>
</body></html>
"""
