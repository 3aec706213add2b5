"""HTTP server metrics for Flask apps: a WSGI middleware on `app.wsgi_app`, installed in place.

Flask matches the URL rule when it pushes the request context, before `before_request`
functions run; the first of them copies the rule's template into the WSGI environ, where the
middleware reads it after the response. A teardown function copies an unhandled exception
(Flask answers it with a 500 itself). The duration ends when the server closes the response
iterable, after its last byte, so streamed responses are timed whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from time import perf_counter
from typing import Any

from exporter import semconv
from exporter.instrument.counters import CounterCell
from exporter.instrument.http_server import (
    HttpServerMetrics,
    otel_records_http,
    scheme_of,
    step_aside_message,
)

log = logging.getLogger(__name__)

ROUTE_KEY = "exporter.instrument.http_route"
ERROR_KEY = "exporter.instrument.error"
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class WsgiMetricsMiddleware:
    def __init__(self, app: WSGIApp, recorder: HttpServerMetrics) -> None:
        self.wsgi_app, self._recorder = app, recorder

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        recorder = self._recorder
        if not recorder.active:
            return self.wsgi_app(environ, start_response)
        method = semconv.http_method(environ.get("REQUEST_METHOD", ""))
        scheme = scheme_of(environ.get("wsgi.url_scheme"))
        request = _Request(recorder, environ, method, scheme, recorder.started(method, scheme))

        def respond(status: str, headers: Any, exc_info: Any = None) -> Any:
            request.status = int(status[:3]) if status[:3].isdigit() else 0
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, respond)
        except BaseException as failure:
            request.finish(failure)
            raise
        return _Body(body, request)


class _Request:
    __slots__ = ("_active", "_done", "_environ", "_recorder", "method", "scheme", "start",
                 "status")

    def __init__(self, recorder: HttpServerMetrics, environ: dict[str, Any], method: str,
                 scheme: str, active: CounterCell) -> None:
        self._recorder, self._environ, self._active = recorder, environ, active
        self.method, self.scheme, self.status = method, scheme, 0
        self._done = False
        self.start = perf_counter()

    def finish(self, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        seconds = perf_counter() - self.start
        self._active.decrement()
        environ = self._environ
        error = error or environ.get(ERROR_KEY)
        status = self.status or (500 if error is not None else 0)  # what the server answers
        self._recorder.finished(self.method, self.scheme, environ.get(ROUTE_KEY), status,
                                error, seconds)


class _Body:
    """The response iterable, passed through; closing it ends the measurement."""

    def __init__(self, body: Iterable[bytes], request: _Request) -> None:
        self._body, self._request = body, request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except GeneratorExit:  # the server stopped iterating: close() ends the measurement
            raise
        except BaseException as failure:
            self._request.finish(failure)
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._request.finish(None)


def is_flask_app(app: Any) -> bool:
    return hasattr(app, "wsgi_app") and hasattr(app, "before_request_funcs")


def install(app: Any, recorder: HttpServerMetrics) -> Callable[[], None]:
    """Wrap `app.wsgi_app` and add the route and error hooks; the returned function undoes it."""
    from flask import request

    if otel_records_http(app):
        log.warning(step_aside_message(app))
        recorder.active = False

    def note_route() -> None:
        rule = request.url_rule
        if rule is not None:
            request.environ[ROUTE_KEY] = rule.rule

    def note_error(error: BaseException | None) -> None:
        if error is not None:
            request.environ[ERROR_KEY] = error

    app.before_request_funcs.setdefault(None, []).insert(0, note_route)
    app.teardown_request_funcs.setdefault(None, []).append(note_error)
    middleware = WsgiMetricsMiddleware(app.wsgi_app, recorder)
    app.wsgi_app = middleware

    def remove() -> None:
        recorder.active = False
        _discard(app.before_request_funcs.get(None, []), note_route)
        _discard(app.teardown_request_funcs.get(None, []), note_error)
        if app.wsgi_app is middleware:
            app.wsgi_app = middleware.wsgi_app

    return remove


def _discard(functions: list[Any], function: Any) -> None:
    if function in functions:
        functions.remove(function)
