"""`/` (the page), `/api/status` (its data as JSON), `/readyz` and `/healthz`.

`/healthz` is liveness: it reads what is in memory, never waits on Redis or the OTLP store,
and answers 200 while the process serves. `/readyz` answers 503 only when the OTLP receiver
is not accepting pushes; a Redis target that is down is named there but does not make the
sidecar unready (restarting or unrouting the sidecar, and the app beside it, would not bring
Redis back)."""

from __future__ import annotations

import gzip
import time

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from exporter import __version__
from exporter.status.fmt import iso, iso_or_none, rounded
from exporter.status.page import CSP, render
from exporter.status.script import SCRIPT
from exporter.status.state import StatusState
from exporter.status.views import as_json

PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
GZIP_ABOVE = 16_384  # bytes of HTML: a page with many rows travels compressed
JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def status_routes(state: StatusState) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        await state.freshen()
        body = render(state.build()).encode()
        if len(body) > GZIP_ABOVE and "gzip" in request.headers.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=5, mtime=0)
            return HTMLResponse(body, headers={**PAGE_HEADERS, "Content-Encoding": "gzip",
                                               "Vary": "Accept-Encoding"})
        return HTMLResponse(body, headers={**PAGE_HEADERS, "Vary": "Accept-Encoding"})

    async def api_status(request: Request) -> Response:
        await state.freshen()
        return JSONResponse(as_json(state.build()), headers=JSON_HEADERS)

    async def healthz(request: Request) -> Response:
        now = time.time()
        targets = {}
        down = []
        for address, s in state.redis.status.items():
            targets[address] = {
                "up": s.up, "error": s.error, "last_scrape": iso_or_none(s.last_scrape),
                "last_scrape_age_seconds": rounded(now - s.last_scrape) if s.last_scrape
                else None,
                "duration_seconds": rounded(s.duration), "degraded": list(s.degraded)}
            if not s.up:
                down.append(address)
        return JSONResponse({"status": "alive", "version": __version__, "time": iso(now),
                             "targets": targets, "targets_down": down,
                             "readiness": "/readyz"}, headers=JSON_HEADERS)

    async def readyz(request: Request) -> Response:
        now = time.time()
        receiver = state.receiver(now)
        down = [{"target": address, "error": s.error, "last_scrape": iso_or_none(s.last_scrape)}
                for address, s in state.redis.status.items() if not s.up]
        up = [address for address, s in state.redis.status.items() if s.up]
        body = {"ready": receiver.accepting, "time": iso(now),
                "receiver": {"accepting": receiver.accepting, "reasons": receiver.reasons},
                "targets_up": up, "targets_down": down}
        return JSONResponse(body, status_code=200 if receiver.accepting else 503,
                            headers=JSON_HEADERS)

    async def script(request: Request) -> Response:
        return Response(SCRIPT, media_type="text/javascript",
                        headers={**JSON_HEADERS, "Cache-Control": "max-age=300"})

    async def favicon(request: Request) -> Response:
        return Response(status_code=204, headers={"Cache-Control": "max-age=86400"})

    return [
        Route("/", page, methods=["GET"]),
        Route("/api/status", api_status, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/status.js", script, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
    ]
