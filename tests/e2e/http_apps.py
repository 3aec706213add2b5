"""Small HTTP apps for the worker-process tests, instrumented in each worker after the fork.

    uvicorn --workers 3 --factory tests.e2e.http_apps:starlette_app
    gunicorn --workers 3 tests.e2e.http_apps:flask_app()

Each request sleeps `DELAY` seconds *blocking* its worker, so concurrent requests are spread over
the worker processes whatever the machine's speed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from exporter.instrument import instrument

DELAY = 0.05


async def trade(request: Request) -> JSONResponse:
    time.sleep(DELAY)
    return JSONResponse({"id": request.path_params["trade_id"]})


def starlette_app() -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        handle = instrument(app=app)
        yield
        handle.force_flush()
        handle.uninstrument()

    return Starlette(routes=[Route("/trades/{trade_id:int}", trade)], lifespan=lifespan)


def flask_app() -> Any:
    from flask import Flask

    app = Flask(__name__)

    @app.get("/trades/<int:trade_id>")
    def one(trade_id: int) -> dict[str, int]:
        time.sleep(DELAY)
        return {"id": trade_id}

    instrument(app=app)  # gunicorn without --preload imports this in every worker
    return app
