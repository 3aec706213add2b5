"""HTTP server metrics on Starlette and FastAPI apps, driven through their real ASGI stacks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from tests.instrument.helpers import Telemetry

DURATION = "http.server.request.duration"
ACTIVE = "http.server.active_requests"


async def trade(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["trade_id"]})


async def position(request: Request) -> JSONResponse:
    return JSONResponse({"symbol": request.path_params["symbol"]})


async def boom(request: Request) -> Response:
    raise ValueError("no")


async def unavailable(request: Request) -> Response:
    return PlainTextResponse("down", status_code=503)


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            await asyncio.sleep(0.1)
            yield b"x"

    return StreamingResponse(chunks())


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


def starlette_app() -> Starlette:
    inner = [Route("/positions/{symbol}", position)]
    return Starlette(routes=[
        Route("/trades/{trade_id:int}", trade),
        Route("/boom", boom),
        Route("/unavailable", unavailable),
        Route("/stream", stream),
        WebSocketRoute("/ws", echo),
        Mount("/v2", routes=inner),
    ])


@pytest.fixture
def client(telemetry: Telemetry) -> Iterator[TestClient]:
    app = starlette_app()
    telemetry.instrument(app=app)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def durations(telemetry: Telemetry, route: str | None = None, status: str | None = None
              ) -> list[Any]:
    return [p for p in telemetry.points(DURATION)
            if (route is None or p.attributes.get("http.route") == route)
            and (status is None or p.attributes.get("http.response.status_code") == status)]


def test_route_template_method_and_status(client: TestClient, telemetry: Telemetry) -> None:
    for trade_id in range(5):
        assert client.get(f"/trades/{trade_id}").status_code == 200
    (point,) = durations(telemetry, route="/trades/{trade_id:int}")
    assert point.value.count == 5
    assert point.attributes == {
        "http.request.method": "GET", "http.route": "/trades/{trade_id:int}",
        "http.response.status_code": "200", "url.scheme": "http",
    }
    assert list(point.value.explicit_bounds) == [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]


def test_unmatched_paths_get_no_route_and_add_one_series(client: TestClient,
                                                         telemetry: Telemetry) -> None:
    for n in range(200):
        assert client.get(f"/nothing/{n}").status_code == 404
    points = durations(telemetry, status="404")
    assert len(points) == 1 and points[0].value.count == 200
    assert "http.route" not in points[0].attributes


def test_mounted_route_gets_the_full_template(client: TestClient, telemetry: Telemetry) -> None:
    assert client.get("/v2/positions/AAPL").status_code == 200
    assert client.get("/v2/missing").status_code == 404
    assert durations(telemetry, route="/v2/positions/{symbol}")[0].value.count == 1
    (missing,) = durations(telemetry, status="404")
    assert "http.route" not in missing.attributes


def test_unknown_method_is_other(client: TestClient, telemetry: Telemetry) -> None:
    client.request("BREW", "/trades/1")
    client.request("PUT", "/trades/1")
    methods = {p.attributes["http.request.method"]: p.attributes.get("http.response.status_code")
               for p in telemetry.points(DURATION)}
    assert methods == {"_OTHER": "405", "PUT": "405"}


def test_exception_is_recorded_and_reraised(telemetry: Telemetry) -> None:
    app = starlette_app()
    telemetry.instrument(app=app)
    with TestClient(app) as raising, pytest.raises(ValueError):
        raising.get("/boom")
    (point,) = durations(telemetry, route="/boom")
    assert point.attributes["error.type"] == "ValueError"
    assert point.attributes["http.response.status_code"] == "500"


def test_5xx_answer_is_an_error_by_status(client: TestClient, telemetry: Telemetry) -> None:
    assert client.get("/unavailable").status_code == 503
    (point,) = durations(telemetry, route="/unavailable")
    assert point.attributes["error.type"] == "503"
    assert client.get("/trades/1").status_code == 200
    assert "error.type" not in durations(telemetry, route="/trades/{trade_id:int}")[0] \
        .attributes


def test_streaming_response_is_timed_to_its_last_byte(client: TestClient,
                                                      telemetry: Telemetry) -> None:
    assert client.get("/stream").content == b"xxx"
    (point,) = durations(telemetry, route="/stream")
    assert point.value.sum >= 0.3


def test_websocket_and_lifespan_pass_through(client: TestClient, telemetry: Telemetry) -> None:
    with client.websocket_connect("/ws") as websocket:
        websocket.send_text("hi")
        assert websocket.receive_text() == "hi"
    client.get("/trades/1")
    assert [p.attributes.get("http.route") for p in telemetry.points(DURATION)] == [
        "/trades/{trade_id:int}"]


def test_active_requests_rise_and_fall(telemetry: Telemetry) -> None:
    seen: list[int] = []

    async def slow(request: Request) -> Response:
        seen.extend(p.value for p in telemetry.points(ACTIVE))
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/slow", slow)])
    telemetry.instrument(app=app)
    with TestClient(app) as test_client:
        test_client.get("/slow")
    assert seen == [1]
    assert [p.value for p in telemetry.points(ACTIVE)] == [0]
    assert telemetry.points(ACTIVE)[0].attributes == {
        "http.request.method": "GET", "url.scheme": "http"}


def test_instrumenting_a_started_app_and_uninstrument(telemetry: Telemetry) -> None:
    app = starlette_app()
    with TestClient(app) as test_client:
        test_client.get("/trades/1")  # the middleware stack is built now
        handle = telemetry.instrument(app=app)
        test_client.get("/trades/2")
        assert durations(telemetry)[0].value.count == 1
        handle.uninstrument()
        handle.uninstrument()
        test_client.get("/trades/3")
        assert durations(telemetry)[0].value.count == 1
        assert telemetry.instrument(app=app) is not None  # again, after uninstrument
        test_client.get("/trades/4")
    assert app.middleware_stack is not None


def test_instrumenting_twice_counts_once(client: TestClient, telemetry: Telemetry) -> None:
    app = client.app
    assert telemetry.handles[0].add_app(app) is False
    client.get("/trades/1")
    assert durations(telemetry)[0].value.count == 1


def test_not_an_app_is_refused(telemetry: Telemetry) -> None:
    with pytest.raises(TypeError, match="not a Starlette, FastAPI or Flask application"):
        telemetry.instrument(app=object())


def test_fastapi_router_prefix_and_dependencies(telemetry: Telemetry) -> None:
    router = APIRouter(prefix="/analytics")

    @router.get("/users/{user_id}/summary")
    async def summary(user_id: int) -> dict[str, int]:
        return {"user": user_id}

    app = FastAPI()
    app.include_router(router)
    telemetry.instrument(app=app)
    with TestClient(app) as test_client:
        assert test_client.get("/analytics/users/7/summary").status_code == 200
        assert test_client.get("/analytics/users/x/summary").status_code == 422
    routes = {(p.attributes.get("http.route"), p.attributes["http.response.status_code"])
              for p in telemetry.points(DURATION)}
    assert routes == {("/analytics/users/{user_id}/summary", "200"),
                      ("/analytics/users/{user_id}/summary", "422")}


def _request_counts(reader: Any) -> dict[str, int]:
    """Scope name -> requests counted in any http.server duration histogram."""
    counts: dict[str, int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name in (DURATION, "http.server.duration"):
                    total = sum(p.count for p in metric.data.data_points)
                    counts[scope.scope.name] = counts.get(scope.scope.name, 0) + total
    return counts


@dataclass
class GlobalSdk:
    provider: MeterProvider
    reader: InMemoryMetricReader


@pytest.fixture
def global_sdk_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[GlobalSdk]:
    """The application's global SDK meter provider, reading into memory (patched in, so that
    no other test sees it: the SDK allows setting the real global only once per process)."""
    from opentelemetry import metrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: provider)
    yield GlobalSdk(provider, reader)
    provider.shutdown()


def test_opentelemetry_fastapi_instrumentation_is_not_counted_twice(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture, global_sdk_provider: GlobalSdk
) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app = FastAPI()

    @app.get("/trades/{trade_id}")
    async def one(trade_id: int) -> dict[str, int]:
        return {"id": trade_id}

    FastAPIInstrumentor.instrument_app(app, meter_provider=global_sdk_provider.provider)
    caplog.set_level(logging.WARNING)
    telemetry.instrument(app=app)
    try:
        with TestClient(app) as test_client:
            for n in range(3):
                test_client.get(f"/trades/{n}")
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    counts = _request_counts(global_sdk_provider.reader)
    assert "exporter.instrument" not in counts
    assert sum(counts.values()) == 3, counts
    assert "already instrumented by OpenTelemetry" in caplog.text


def test_opentelemetry_instrumentation_added_after_ours_is_not_counted_twice(
    telemetry: Telemetry, global_sdk_provider: GlobalSdk
) -> None:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    app = starlette_app()
    telemetry.instrument(app=app)
    app.add_middleware(OpenTelemetryMiddleware, meter_provider=global_sdk_provider.provider)
    with TestClient(app) as test_client:
        for n in range(3):
            test_client.get(f"/trades/{n}")
    counts = _request_counts(global_sdk_provider.reader)
    assert "exporter.instrument" not in counts
    assert sum(counts.values()) == 3, counts


def test_fastapi_native_telemetry_is_not_counted_twice(
    telemetry: Telemetry, global_sdk_provider: GlobalSdk
) -> None:
    app = FastAPI()

    @app.get("/trades/{trade_id}")
    async def one(trade_id: int) -> dict[str, int]:
        return {"id": trade_id}

    telemetry.instrument(app=app)
    with TestClient(app) as test_client:
        for n in range(3):
            test_client.get(f"/trades/{n}")
    counts = _request_counts(global_sdk_provider.reader)
    assert counts == {"fastapi": 3}, counts


def test_with_the_apps_provider_and_no_peer_ours_records(
    telemetry: Telemetry, global_sdk_provider: GlobalSdk
) -> None:
    app = starlette_app()
    telemetry.instrument(app=app)
    with TestClient(app) as test_client:
        for n in range(3):
            test_client.get(f"/trades/{n}")
    assert _request_counts(global_sdk_provider.reader) == {"exporter.instrument": 3}
