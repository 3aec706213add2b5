"""Tracer and meter providers: the application's, the global SDK ones, or our own.

Our own export OTLP/HTTP protobuf to the sidecar and honour the standard `OTEL_*` variables:
`OTEL_EXPORTER_OTLP_ENDPOINT` (and the per-signal ones; default http://127.0.0.1:4318, not
`localhost`, which may resolve to ::1 while the sidecar listens on IPv4), `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_METRIC_EXPORT_INTERVAL` (default here 10 s, not the SDK's 60 s,
so a new user sees data within a minute) and the SDK's other exporter and batch settings.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from exporter import __version__
from exporter.instrument.delivery import (
    EXPORT_TIMEOUT_SECONDS,
    KeepingSpanExporter,
    QuietMetricExporter,
    SidecarLink,
)
from exporter.instrument.export import MergingMetricExporter
from exporter.instrument.histograms import LocalHistogram

SCOPE = InstrumentationScope("exporter.instrument", __version__)
DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
DEFAULT_EXPORT_INTERVAL_MILLIS = 10_000
_INSTANCE_ID = str(uuid.uuid4())  # one per process, so each worker is its own series
log = logging.getLogger("exporter.instrument")
FORK_ADVICE = (
    "instrument() ran before this process forked (gunicorn --preload, or instrument() at import "
    "in a pre-fork server): the workers share one service.instance.id and overwrite each "
    "other's series at the sidecar, and the parent keeps reporting its own idle pools; call "
    "instrument() in each worker, after the fork (a post_fork hook, or the app's lifespan)"
)


@dataclass
class LocalHistograms:
    """The histograms our own MeterProvider's exporter adds to each export."""

    items: list[LocalHistogram] = field(default_factory=list)

    def __call__(self) -> Sequence[LocalHistogram]:
        return tuple(self.items)


@dataclass(frozen=True)
class ExportSettings:
    service_name: str | None = None
    endpoint: str | None = None
    metric_exporter: MetricExporter | None = None
    span_exporter: SpanExporter | None = None


@dataclass
class _Own:
    resource: Resource
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    local: LocalHistograms = field(default_factory=LocalHistograms)
    link: SidecarLink | None = None


_OWN: dict[ExportSettings, _Own] = {}
_OWN_LOCK = threading.Lock()


def build_resource(service_name: str | None) -> Resource:
    base = Resource.create()
    extra: dict[str, str] = {}
    env_name = str(base.attributes.get("service.name", ""))
    if service_name and env_name.startswith("unknown_service"):
        extra["service.name"] = service_name
    if "service.instance.id" not in base.attributes:
        extra["service.instance.id"] = _INSTANCE_ID
    return base.merge(Resource(extra))


def own_tracer_provider(settings: ExportSettings) -> TracerProvider:
    """Our tracer provider for these settings, shared by every call that asks for the same."""
    with _OWN_LOCK:
        own = _own(settings)
        if own.tracer_provider is None:
            own.tracer_provider = _tracer_provider(own, settings)
        return own.tracer_provider


def own_meter_provider(settings: ExportSettings) -> tuple[MeterProvider, LocalHistograms]:
    """Our meter provider for these settings and the local histograms its exporter adds."""
    with _OWN_LOCK:
        own = _own(settings)
        if own.meter_provider is None:
            own.meter_provider = _meter_provider(own, settings)
        return own.meter_provider, own.local


def _after_fork_in_child() -> None:
    if _OWN:
        log.warning(FORK_ADVICE)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _own(settings: ExportSettings) -> _Own:
    if settings not in _OWN:
        shown = settings.endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or (
            DEFAULT_ENDPOINT)
        _OWN[settings] = _Own(resource=build_resource(settings.service_name),
                              link=SidecarLink(shown))
    return _OWN[settings]


def app_tracer_provider(given: trace.TracerProvider | None) -> trace.TracerProvider | None:
    """The application's tracer provider: the one given, else a global SDK one, else None."""
    if given is not None:
        return given
    current = trace.get_tracer_provider()
    return current if isinstance(current, TracerProvider) else None


def app_meter_provider(given: metrics.MeterProvider | None) -> metrics.MeterProvider | None:
    """The application's meter provider: the one given, else a global SDK one, else None."""
    if given is not None:
        return given
    current = metrics.get_meter_provider()
    return current if isinstance(current, MeterProvider) else None


def _tracer_provider(own: _Own, settings: ExportSettings) -> TracerProvider:
    exporter = settings.span_exporter or _otlp_span_exporter(settings.endpoint, own.link)
    provider = TracerProvider(resource=own.resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _meter_provider(own: _Own, settings: ExportSettings) -> MeterProvider:
    resource = own.resource
    inner = settings.metric_exporter or _otlp_metric_exporter(settings.endpoint, own.link)
    merging = MergingMetricExporter(inner, own.local, SCOPE, resource)
    interval = None if os.environ.get("OTEL_METRIC_EXPORT_INTERVAL") else (
        DEFAULT_EXPORT_INTERVAL_MILLIS
    )
    reader = PeriodicExportingMetricReader(merging, export_interval_millis=interval)
    return MeterProvider(resource=resource, metric_readers=[reader])


def _signal_endpoint(endpoint: str | None, signal: str) -> str | None:
    if endpoint is None:
        env = (f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
        if any(os.environ.get(name) for name in env):
            return None  # the SDK exporter reads the variables itself
        endpoint = DEFAULT_ENDPOINT
    return f"{endpoint.rstrip('/')}/v1/{signal}"


def _timeout(signal: str) -> float | None:
    """Ours, unless the standard variables set one (the SDK then reads them itself)."""
    env = (f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
    return None if any(os.environ.get(name) for name in env) else EXPORT_TIMEOUT_SECONDS


def _otlp_metric_exporter(endpoint: str | None, link: SidecarLink | None) -> MetricExporter:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=_signal_endpoint(endpoint, "metrics"),
                                  timeout=_timeout("metrics"))
    return exporter if link is None else QuietMetricExporter(exporter, link)


def _otlp_span_exporter(endpoint: str | None, link: SidecarLink | None) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=_signal_endpoint(endpoint, "traces"),
                                timeout=_timeout("traces"))
    return exporter if link is None else KeepingSpanExporter(exporter, link)
