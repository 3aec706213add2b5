"""A metric exporter that adds the locally aggregated histograms to every export."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from time import time_ns
from typing import Any

from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from exporter.instrument.histograms import LocalHistogram
from exporter.instrument.private import exporter_preferences


class MergingMetricExporter(MetricExporter):
    """Wraps `inner`; each export carries the SDK's metrics plus `histograms()`."""

    def __init__(
        self,
        inner: MetricExporter,
        histograms: Callable[[], Sequence[LocalHistogram]],
        scope: InstrumentationScope,
        resource: Resource,
    ) -> None:
        super().__init__(**exporter_preferences(inner))
        self._inner, self._histograms = inner, histograms
        self._scope, self._resource = scope, resource

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        merged = self.merged(metrics_data)
        return self._inner.export(merged, timeout_millis=timeout_millis, **kwargs)

    def merged(self, metrics_data: MetricsData) -> MetricsData:
        now = time_ns()
        local = [m for h in self._histograms() if (m := h.metric(now)) is not None]
        if not local:
            return metrics_data
        resources = list(metrics_data.resource_metrics) or [
            ResourceMetrics(resource=self._resource, scope_metrics=[], schema_url="")
        ]
        first = resources[0]
        scopes = list(first.scope_metrics)
        for index, scope in enumerate(scopes):
            if scope.scope.name == self._scope.name:
                scopes[index] = ScopeMetrics(
                    scope=scope.scope, metrics=[*scope.metrics, *local], schema_url=scope.schema_url
                )
                break
        else:
            scopes.append(ScopeMetrics(scope=self._scope, metrics=local, schema_url=""))
        resources[0] = ResourceMetrics(
            resource=first.resource, scope_metrics=scopes, schema_url=first.schema_url
        )
        return MetricsData(resource_metrics=resources)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)
