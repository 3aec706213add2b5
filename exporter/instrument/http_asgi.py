"""HTTP server metrics for Starlette and FastAPI apps: an ASGI middleware installed in place.

The middleware wraps the app's whole middleware stack, outside Starlette's
`ServerErrorMiddleware`, so it sees the 500 that middleware sends and the exception it re-raises.
The app's `build_middleware_stack` gets an instance attribute that wraps what it builds (the
stack may be built later, or rebuilt); a stack already built is wrapped at once. The duration
ends when the app returns, which for a streaming response is after its last byte.

The route template comes from `scope["route"]`, which Starlette's router (and FastAPI's) sets to
the matched route; mounted sub-apps add their prefixes through `RouteTemplates`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider

from exporter import semconv
from exporter.instrument.http_server import (
    HttpServerMetrics,
    otel_records_http,
    scheme_of,
    step_aside_message,
)
from exporter.instrument.private import fastapi_telemetry

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MAX_TEMPLATES = 10_000


class RouteTemplates:
    """The full template of every leaf route of an app, mount prefixes included."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._templates: dict[int, tuple[Any, str | None]] = {}
        self._rebuild()

    def of(self, scope: Scope) -> str | None:
        route = scope.get("route")
        if route is None:
            return None
        found = self._templates.get(id(route))
        if found is None or found[0] is not route:
            found = self._learn(route)
        return found[1]

    def _learn(self, route: Any) -> tuple[Any, str | None]:
        self._rebuild()
        found = self._templates.get(id(route))
        if found is None or found[0] is not route:
            path = getattr(route, "path", None)
            leaf = isinstance(path, str) and not _is_container(route)
            found = (route, path if leaf else None)
            if len(self._templates) < _MAX_TEMPLATES:
                self._templates[id(route)] = found
        return found

    def _rebuild(self) -> None:
        templates: dict[int, tuple[Any, str | None]] = {}
        _walk(getattr(self._app, "routes", []), "", templates, depth=0)
        self._templates = templates


def _walk(routes: Any, prefix: str, out: dict[int, tuple[Any, str | None]], depth: int) -> None:
    if depth > 8:
        return
    for route in routes:
        path = getattr(route, "path", "")
        path = path if isinstance(path, str) else ""
        if _is_container(route):
            out[id(route)] = (route, None)
            _walk(getattr(route, "routes", []) or [], prefix + path, out, depth + 1)
        else:
            out[id(route)] = (route, prefix + path)


def _is_container(route: Any) -> bool:
    return type(route).__name__ in ("Mount", "Host") or (
        hasattr(route, "routes") and not hasattr(route, "endpoint")
    )


class HttpMetricsMiddleware:
    """Times every `http` request; websockets and lifespan pass through untouched."""

    def __init__(self, app: ASGIApp, recorder: HttpServerMetrics, templates: RouteTemplates,
                 owner: Any) -> None:
        self.app, self._recorder, self._templates, self._owner = app, recorder, templates, owner
        self._checked = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        recorder = self._recorder
        if scope["type"] != "http" or not recorder.active:
            await self.app(scope, receive, send)
            return
        if not self._checked:
            self._check_peers()
            if not recorder.active:
                await self.app(scope, receive, send)
                return
        method = semconv.http_method(scope["method"])
        scheme = scheme_of(scope.get("scheme"))
        active = recorder.started(method, scheme)
        response = _Status(send)
        error: BaseException | None = None
        start = perf_counter()
        try:
            await self.app(scope, receive, response.send)
        except BaseException as failure:
            error = failure
            raise
        finally:
            seconds = perf_counter() - start
            active.decrement()
            # An app that raised before it started a response gets a 500 from the server.
            status = response.status or (500 if error is not None else 0)
            recorder.finished(method, scheme, self._templates.of(scope), status, error, seconds)

    def _check_peers(self) -> None:
        self._checked = True
        if otel_records_http(self._owner) or fastapi_records_http(self._owner):
            self._recorder.active = False
            log.warning(step_aside_message(self._owner))


class _Status:
    __slots__ = ("_send", "status")

    def __init__(self, send: Send) -> None:
        self._send, self.status = send, 0

    def send(self, message: Message) -> Awaitable[None]:
        """Returns the server's awaitable itself: no coroutine of our own per message."""
        if message["type"] == "http.response.start":
            self.status = message["status"]
        return self._send(message)


def fastapi_records_http(app: Any) -> bool:
    """FastAPI 0.16x records `http.server.*` itself once a meter provider is configured."""
    config = fastapi_telemetry(app)
    if config is None or not config.get("metrics", True):
        return False
    return config.get("meter_provider") is not None or isinstance(
        metrics.get_meter_provider(), MeterProvider
    )


def is_asgi_app(app: Any) -> bool:
    return hasattr(app, "build_middleware_stack") and hasattr(app, "middleware_stack")


def install(app: Any, recorder: HttpServerMetrics) -> Callable[[], None]:
    """Wrap `app`'s middleware stack; the returned function undoes it."""
    templates = RouteTemplates(app)
    if otel_records_http(app) or fastapi_records_http(app):
        log.warning(step_aside_message(app))
        recorder.active = False
    original_build = app.build_middleware_stack

    def build() -> ASGIApp:
        return HttpMetricsMiddleware(original_build(), recorder, templates, app)

    app.build_middleware_stack = build
    if app.middleware_stack is not None:
        app.middleware_stack = HttpMetricsMiddleware(app.middleware_stack, recorder, templates,
                                                     app)

    def remove() -> None:
        recorder.active = False
        if app.__dict__.get("build_middleware_stack") is build:
            del app.build_middleware_stack
        stack = app.middleware_stack
        if isinstance(stack, HttpMetricsMiddleware) and stack._recorder is recorder:
            app.middleware_stack = stack.app

    return remove
