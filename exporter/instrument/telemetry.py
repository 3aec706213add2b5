"""The tracer and instruments one `instrument()` call records into."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace

from exporter import semconv
from exporter.bounded import BoundedNames
from exporter.instrument.cache import CacheInstruments
from exporter.instrument.histograms import HistogramSink, LocalHistogram, SdkHistogram
from exporter.instrument.http_server import HttpInstruments
from exporter.instrument.pool_metrics import PoolInstruments
from exporter.instrument.providers import (
    SCOPE,
    ExportSettings,
    LocalHistograms,
    app_meter_provider,
    app_tracer_provider,
    own_meter_provider,
    own_tracer_provider,
)

_DESCRIPTIONS = {
    semconv.OPERATION_DURATION: "Duration of database client operations.",
    semconv.CONNECTION_CREATE_TIME: "The time it took to create a new connection",
    semconv.CONNECTION_WAIT_TIME: "The time it took to obtain an open connection from the pool",
    semconv.CONNECTION_USE_TIME: "The time between borrowing a connection and returning it to "
    "the pool",
    semconv.HTTP_SERVER_DURATION: "Duration of HTTP server requests.",
}
MAX_ERROR_TYPES = 32


class Meters:
    """The instruments of one meter provider; created once per provider."""

    def __init__(self, provider: metrics.MeterProvider, local: LocalHistograms | None) -> None:
        meter = provider.get_meter(SCOPE.name, SCOPE.version)

        def histogram(name: str, buckets: tuple[float, ...] = semconv.DURATION_BUCKETS
                      ) -> HistogramSink:
            description = _DESCRIPTIONS[name]
            if local is None:
                return SdkHistogram(meter, name, "s", description, buckets)
            sink = LocalHistogram(name, "s", description, buckets)
            local.items.append(sink)
            return sink

        self.duration = histogram(semconv.OPERATION_DURATION)
        self.pools = PoolInstruments(
            meter,
            wait=histogram(semconv.CONNECTION_WAIT_TIME),
            create=histogram(semconv.CONNECTION_CREATE_TIME),
            use=histogram(semconv.CONNECTION_USE_TIME),
        )
        errors = BoundedNames(MAX_ERROR_TYPES, semconv.OTHER_ERROR)
        self.http = HttpInstruments(
            meter, histogram(semconv.HTTP_SERVER_DURATION, semconv.HTTP_DURATION_BUCKETS), errors
        )
        self.cache = CacheInstruments(meter, errors)


_METERS: dict[int, tuple[metrics.MeterProvider, Meters]] = {}
_METERS_LOCK = threading.Lock()


def _meters(provider: metrics.MeterProvider, local: LocalHistograms | None) -> Meters:
    with _METERS_LOCK:
        entry = _METERS.get(id(provider))
        if entry is None or entry[0] is not provider:
            entry = (provider, Meters(provider, local))
            _METERS[id(provider)] = entry
        return entry[1]


@dataclass
class Telemetry:
    tracer: trace.Tracer
    meters: Meters
    tracer_provider: trace.TracerProvider
    meter_provider: metrics.MeterProvider

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        flushed = True
        for provider in (self.tracer_provider, self.meter_provider):
            flush: Any = getattr(provider, "force_flush", None)
            if flush is not None:
                flushed = bool(flush(timeout_millis)) and flushed
        return flushed


def resolve(
    tracer_provider: trace.TracerProvider | None,
    meter_provider: metrics.MeterProvider | None,
    settings: ExportSettings,
) -> Telemetry:
    """The application's providers where it has them, ours (shared per settings) otherwise."""
    tracer_side = app_tracer_provider(tracer_provider) or own_tracer_provider(settings)
    app_meter = app_meter_provider(meter_provider)
    if app_meter is not None:
        meter_side, meters = app_meter, _meters(app_meter, None)
    else:
        own_meter, local = own_meter_provider(settings)
        meter_side, meters = own_meter, _meters(own_meter, local)
    return Telemetry(
        tracer=tracer_side.get_tracer(SCOPE.name, SCOPE.version),
        meters=meters,
        tracer_provider=tracer_side,
        meter_provider=meter_side,
    )
