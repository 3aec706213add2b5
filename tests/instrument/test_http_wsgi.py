"""HTTP server metrics on Flask apps, driven through Werkzeug's real WSGI test client.

Requests are `buffered`, so the client closes each response as a WSGI server does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, stream_with_context

from tests.instrument.helpers import Telemetry

DURATION = "http.server.request.duration"
ACTIVE = "http.server.active_requests"


def flask_app() -> Flask:
    app = Flask(__name__)

    @app.get("/trades/<int:trade_id>")
    def trade(trade_id: int) -> dict[str, int]:
        return {"id": trade_id}

    @app.post("/trades")
    def create() -> tuple[dict[str, str], int]:
        return {"status": "created"}, 201

    @app.get("/boom")
    def boom() -> str:
        raise KeyError("no")

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[bytes]:
            for _ in range(3):
                time.sleep(0.1)
                yield b"x"

        return Response(stream_with_context(chunks()))

    return app


def points(telemetry: Telemetry) -> dict[tuple[str | None, str, str | None], Any]:
    return {(p.attributes.get("http.route"), p.attributes["http.response.status_code"],
             p.attributes.get("error.type")): p.value for p in telemetry.points(DURATION)}


@pytest.fixture
def app(telemetry: Telemetry) -> Flask:
    app = flask_app()
    telemetry.instrument(app=app)
    return app


def test_routes_are_templates(app: Flask, telemetry: Telemetry) -> None:
    client = app.test_client()
    for n in range(4):
        assert client.get(f"/trades/{n}", buffered=True).status_code == 200
    assert client.post("/trades", buffered=True).status_code == 201
    for n in range(50):
        assert client.get(f"/unknown/{n}", buffered=True).status_code == 404
    found = points(telemetry)
    assert found[("/trades/<int:trade_id>", "200", None)].count == 4
    assert found[("/trades", "201", None)].count == 1
    assert found[(None, "404", None)].count == 50
    assert len(found) == 3


def test_handled_exception_is_a_500_with_its_type(app: Flask, telemetry: Telemetry) -> None:
    assert app.test_client().get("/boom", buffered=True).status_code == 500
    assert points(telemetry)[("/boom", "500", "KeyError")].count == 1


def test_propagated_exception_is_recorded_and_reraised(app: Flask, telemetry: Telemetry) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(KeyError):
        app.test_client().get("/boom", buffered=True)
    (point,) = telemetry.points(DURATION)
    assert point.attributes["error.type"] == "KeyError"
    assert point.attributes["http.response.status_code"] == "500"  # what the server answers
    assert [p.value for p in telemetry.points(ACTIVE)] == [0]


def test_streaming_response_is_timed_to_its_last_byte(app: Flask, telemetry: Telemetry) -> None:
    response = app.test_client().get("/stream", buffered=True)
    assert response.data == b"xxx"
    assert points(telemetry)[("/stream", "200", None)].sum >= 0.3
    assert [p.value for p in telemetry.points(ACTIVE)] == [0]


def test_uninstrument_restores_the_app(app: Flask, telemetry: Telemetry) -> None:
    original = app.wsgi_app.wsgi_app  # type: ignore[attr-defined]
    client = app.test_client()
    client.get("/trades/1", buffered=True)
    telemetry.handles[0].uninstrument()
    assert app.wsgi_app is original
    assert all(f.__name__ != "note_route" for f in app.before_request_funcs.get(None, []))
    client.get("/trades/2", buffered=True)
    assert points(telemetry)[("/trades/<int:trade_id>", "200", None)].count == 1


def test_opentelemetry_flask_instrumentation_is_not_counted_twice(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry import metrics
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: provider)
    app = flask_app()
    FlaskInstrumentor.instrument_app(app, meter_provider=provider)
    try:
        telemetry.instrument(app=app)
        app.test_client().get("/trades/1", buffered=True)
    finally:
        FlaskInstrumentor.uninstrument_app(app)
    data = reader.get_metrics_data()
    assert data is not None
    scopes = {s.scope.name for r in data.resource_metrics for s in r.scope_metrics
              for m in s.metrics if m.name.startswith("http.server")}
    assert scopes and "exporter.instrument" not in scopes
    provider.shutdown()
