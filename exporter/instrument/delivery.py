"""Delivery to the sidecar when it is away: one log line when it goes, one when it is back,
slow-query spans kept (bounded) until it returns, and a short, bounded shutdown.

The SDK's OTLP/HTTP exporters retry with backoff until their timeout and log a warning per
retry and an error per failed batch: with the sidecar down, every worker logs every few
seconds, and an exit waits the whole timeout for each provider. Ours run them with a short
timeout (the sidecar is local: a push that takes a second is failing anyway, and metrics are
cumulative, so the next export carries everything), keep their log records to this module's two
lines, and, once the sidecar has failed during shutdown, skip the exports left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from exporter.instrument.private import exporter_preferences, otlp_request_sender

log = logging.getLogger("exporter.instrument")

EXPORT_TIMEOUT_SECONDS = 1.0
NO_RECORDED_VALUE = 1  # DataPointFlags.FLAG_NO_RECORDED_VALUE
MAX_KEPT_SPANS = 2048
SDK_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
)


class _Quiet(logging.Filter):
    """Drops the SDK exporters' records made inside one of our exports, on that thread only
    (an application's own exporters keep logging), and remembers the last one as the reason."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(self.local, "active", False):
            return True
        message = record.getMessage()
        if "due to timeout, max retries or shutdown" in message:  # the SDK's last word
            message = f"refused, or no answer within {EXPORT_TIMEOUT_SECONDS:g} s"
        self.local.reason = message[:300]
        return False

    @contextmanager
    def inside(self) -> Iterator[None]:
        self.local.active, self.local.reason = True, ""
        try:
            yield
        finally:
            self.local.active = False


_QUIET = _Quiet()
for _name in SDK_LOGGERS:
    logging.getLogger(_name).addFilter(_QUIET)


class SidecarLink:
    """Whether the sidecar at `endpoint` answers; logs each change once."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.reachable = True
        self.closing = False
        self._lock = threading.Lock()
        self._on_back: list[Callable[[], int]] = []

    def on_back(self, redeliver: Callable[[], int]) -> None:
        """`redeliver()` runs when the sidecar answers again and says how much it delivered."""
        self._on_back.append(redeliver)

    def succeeded(self, delivered_kept: int = 0) -> None:
        with self._lock:
            was, self.reachable = self.reachable, True
        if not was:
            delivered_kept += sum(redeliver() for redeliver in self._on_back)
            extra = f"; delivered {delivered_kept} kept slow-query spans" if delivered_kept else ""
            log.info("sidecar at %s is reachable again%s", self.endpoint, extra)

    def failed(self, reason: str) -> None:
        with self._lock:
            was, self.reachable = self.reachable, False
        if was:
            log.warning(
                "sidecar at %s is unreachable (%s); metrics resume when it is back, up to %d "
                "slow-query spans are kept until then; logged once, and once when it returns",
                self.endpoint, reason or "export failed", MAX_KEPT_SPANS,
            )

    def skip(self) -> bool:
        """During shutdown, with the sidecar known to be away, exports are not tried again."""
        return self.closing and not self.reachable


class QuietMetricExporter(MetricExporter):
    """On shutdown, after the SDK's last export, it sends every series of that export once more
    flagged "no recorded value", so the sidecar ends them at once instead of after its
    staleness window (a worker that exits is gone from /metrics within a second)."""

    def __init__(self, inner: MetricExporter, link: SidecarLink) -> None:
        super().__init__(**exporter_preferences(inner))
        self._inner, self._link = inner, link
        self._last: MetricsData | None = None

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        if self._link.skip():
            return MetricExportResult.FAILURE
        with _QUIET.inside():
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            reason = getattr(_QUIET.local, "reason", "")
        if result is MetricExportResult.SUCCESS:
            self._last = metrics_data
            self._link.succeeded()
        else:
            self._link.failed(reason)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._link.closing = True
        if self._last is not None and not self._link.skip():
            self._send_end(self._last)
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)

    def _send_end(self, data: MetricsData) -> None:
        # The SDK's data points have no flags; the encoded request has. Without the exporter's
        # own send of an encoded request the series end by staleness instead.
        send = otlp_request_sender(self._inner)
        if send is None:
            return
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

        request = encode_metrics(data)
        now = time.time_ns()
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points if kind else []:
                        point.flags |= NO_RECORDED_VALUE
                        point.time_unix_nano = now
        with _QUIET.inside():
            send(request)


class KeepingSpanExporter(SpanExporter):
    """Spans of failed exports are kept, up to `limit` (the oldest go first), and sent in
    front of the next batch."""

    def __init__(self, inner: SpanExporter, link: SidecarLink,
                 limit: int = MAX_KEPT_SPANS) -> None:
        self._inner, self._link = inner, link
        self._kept: deque[ReadableSpan] = deque(maxlen=limit)
        self._lock = threading.Lock()
        self.dropped = 0
        link.on_back(self._redeliver)

    @property
    def kept(self) -> int:
        return len(self._kept)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            batch = [*self._kept, *spans]
            self._kept.clear()
        if self._link.skip():
            result, reason = SpanExportResult.FAILURE, ""
        else:
            with _QUIET.inside():
                result = self._inner.export(batch)
                reason = getattr(_QUIET.local, "reason", "")
        if result is SpanExportResult.SUCCESS:
            self._link.succeeded(len(batch) - len(spans))
            return result
        self._keep(batch)
        self._link.failed(reason)
        return result

    def _redeliver(self) -> int:
        """The kept spans, sent now (from whichever export saw the sidecar return)."""
        with self._lock:
            batch = list(self._kept)
            self._kept.clear()
        if not batch:
            return 0
        with _QUIET.inside():
            result = self._inner.export(batch)
        if result is SpanExportResult.SUCCESS:
            return len(batch)
        self._keep(batch)
        return 0

    def _keep(self, batch: list[ReadableSpan]) -> None:
        with self._lock:
            merged = [*batch, *self._kept]  # what arrived during the export is newer
            limit = self._kept.maxlen or 0
            self.dropped += max(0, len(merged) - limit)
            self._kept = deque(merged[-limit:], maxlen=limit)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._link.closing = True
        self._inner.shutdown()
