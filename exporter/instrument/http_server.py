"""`http.server.request.duration` and `http.server.active_requests`, shared by ASGI and WSGI.

The middlewares measure; `HttpServerMetrics` turns a finished request into attributes and finds
its histogram cell. Cells are cached per (method, route, status, error) so a request costs a
dictionary lookup, not an attribute-set hash in the SDK. Routes are templates only, methods a
closed set, status codes 100 to 599 and error types bounded, so the series stay bounded.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider

from exporter import semconv
from exporter.bounded import BoundedNames
from exporter.instrument.counters import CounterCell, LocalCounter
from exporter.instrument.histograms import Cell, HistogramSink
from exporter.instrument.private import instrumented_by_opentelemetry

log = logging.getLogger(__name__)

_MAX_ROUTE = 256
_MAX_CELLS = 8192


class HttpInstruments:
    """The HTTP server instruments of one meter."""

    def __init__(self, meter: Any, duration: HistogramSink, errors: BoundedNames) -> None:
        self.duration = duration
        self.active = LocalCounter(
            meter, semconv.HTTP_SERVER_ACTIVE_REQUESTS, "{request}",
            "Number of active HTTP server requests.", monotonic=False,
        )
        self.error_types = errors


class HttpServerMetrics:
    """What one instrumented app records into; `active` False makes it pass requests through."""

    def __init__(self, instruments: HttpInstruments) -> None:
        self._instruments = instruments
        self.active = True
        self._cells: dict[tuple[str, str, str | None, int, str | None], Cell] = {}
        self._active: dict[tuple[str, str], CounterCell] = {}

    def started(self, method: str, scheme: str) -> CounterCell:
        """Count the request as active; the caller calls the cell's `decrement()` when done."""
        cell = self._active.get((method, scheme))
        if cell is None:
            cell = self._active_cell(method, scheme)
        cell.increment()
        return cell

    def finished(
        self, method: str, scheme: str, route: str | None, status: int,
        error: BaseException | None, seconds: float,
    ) -> None:
        error_type = None if error is None else type(error).__qualname__
        if error_type is None and status >= 500:
            error_type = str(status)
        key = (method, scheme, route, status, error_type)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._duration_cell(key)
        cell.observe(seconds)

    def _active_cell(self, method: str, scheme: str) -> CounterCell:
        attributes = {semconv.HTTP_REQUEST_METHOD: method, semconv.URL_SCHEME: scheme}
        cell = self._instruments.active.cell((method, scheme), attributes)
        self._active[(method, scheme)] = cell
        return cell

    def _duration_cell(self, key: tuple[str, str, str | None, int, str | None]) -> Cell:
        method, scheme, route, status, error_type = key
        attributes = {semconv.HTTP_REQUEST_METHOD: method, semconv.URL_SCHEME: scheme}
        if route is not None:
            attributes[semconv.HTTP_ROUTE] = route[:_MAX_ROUTE]
        if 100 <= status <= 599:
            attributes[semconv.HTTP_RESPONSE_STATUS_CODE] = str(status)
        if error_type is not None:
            attributes[semconv.ERROR_TYPE] = self._instruments.error_types.admit(error_type[:128])
        cell = self._instruments.duration.cell(attributes)
        if len(self._cells) < _MAX_CELLS:
            self._cells[key] = cell
        return cell


def scheme_of(value: object) -> str:
    return "https" if value == "https" else "http"


def otel_records_http(app: Any) -> bool:
    """Whether OpenTelemetry's own HTTP instrumentation already records this app's requests
    into an SDK meter provider: then ours would count every request twice."""
    instrumented = instrumented_by_opentelemetry(app) or any(
        getattr(getattr(m, "cls", None), "__name__", "") == "OpenTelemetryMiddleware"
        for m in getattr(app, "user_middleware", ())
    )
    return instrumented and isinstance(metrics.get_meter_provider(), MeterProvider)


def step_aside_message(app: Any) -> str:
    return (
        f"{type(app).__name__} is already instrumented by OpenTelemetry's HTTP instrumentation, "
        "which records http.server.* metrics: exporter.instrument leaves HTTP metrics to it "
        "(set OTEL_SEMCONV_STABILITY_OPT_IN=http so they use the names the dashboards read)"
    )
