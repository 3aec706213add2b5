"""OTLP metrics into the series store, by the compatibility specification's type rules.

Gauges stay gauges (untyped when `metric.metadata` says `prometheus.type=unknown`); monotonic
sums become counters, cumulative ones as they are and delta ones accumulated; non-monotonic
cumulative sums become gauges, non-monotonic delta sums are dropped (the specification says
so); histograms, delta or cumulative, become classic histograms; exponential histograms are
converted to classic ones (see exphist.py); summaries stay summaries. Every data point is
either accepted or counted as dropped with a reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    AGGREGATION_TEMPORALITY_DELTA,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    SummaryDataPoint,
)

from exporter.exposition import Labels
from exporter.otlp import exphist, naming
from exporter.otlp.resource import (
    MAX_RESOURCE_ATTRIBUTES,
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    producer,
)
from exporter.otlp.store import EXP_MAX_BUCKETS, MetricFamily, SeriesStore

TARGET_INFO = "target_info"
SCOPE_NAME = "otel_scope_name"
SCOPE_VERSION = "otel_scope_version"
RESERVED_LABELS = frozenset(
    {SERVICE_NAME, SERVICE_INSTANCE_ID, SCOPE_NAME, SCOPE_VERSION, "le", "quantile"}
)
# Families the sidecar itself exposes (its Redis metrics, its own, the process and Python
# collectors'); a pushed metric must not shadow them.
RESERVED_NAMES = frozenset({TARGET_INFO, "tradesense_slow_queries_total"})
RESERVED_PREFIXES = ("tradesense_exporter_", "redis_", "process_", "python_")
NO_RECORDED_VALUE = 1
MAX_NAME_LENGTH = 256
MAX_RAW_NAME_LENGTH = 1024
MAX_HELP_LENGTH = 1024
MAX_LABELS = 64
MAX_BOUNDS = 256
MAX_EXP_BUCKETS_IN = 4096


class _Reserved:
    """What a family lookup returns for a name the sidecar keeps for itself."""


RESERVED = _Reserved()
_Family = MetricFamily | _Reserved | None


@dataclass(slots=True)
class MetricsOutcome:
    accepted: int = 0
    series_limit: int = 0
    unsupported: int = 0
    size_limit: int = 0
    future_timestamp: int = 0
    reserved_name: int = 0
    attributes_dropped: int = 0  # attribute keys too long, resource attributes past the cap

    @property
    def dropped(self) -> int:
        return (
            self.series_limit
            + self.unsupported
            + self.size_limit
            + self.future_timestamp
            + self.reserved_name
        )

    def message(self) -> str:
        if not self.dropped:
            return ""
        return (
            f"{self.dropped} data points dropped: {self.series_limit} past a series limit, "
            f"{self.size_limit} past the exposition size limit, "
            f"{self.future_timestamp} stamped too far in the future, "
            f"{self.reserved_name} named like the sidecar's own metrics, "
            f"{self.unsupported} unsupported (delta non-monotonic sum, unspecified temporality, "
            "invalid buckets, conflicting type or too many labels)"
        )


@dataclass(frozen=True, slots=True)
class Bounds:
    """Per-request input bounds: label name length, resource attributes in target_info, and
    the latest point timestamp accepted (Unix ns; 0 accepts any)."""

    max_label_name_length: int = naming.MAX_LABEL_NAME_LENGTH
    max_resource_attributes: int = MAX_RESOURCE_ATTRIBUTES
    latest_ns: int = 0


class _Batch:
    """One request's walk through its metrics; `base` holds the labels of the current scope."""

    def __init__(self, store: SeriesStore, scope_labels: bool, bounds: Bounds) -> None:
        self.store = store
        self.scope_labels = scope_labels
        self.bounds = bounds
        self.out = MetricsOutcome()
        self.base: dict[str, str] = {}
        self.base_labels: Labels = ()

    def too_new(self, t: int) -> bool:
        """A point stamped past the allowed clock skew is dropped (and counted): applied, it
        would hide every later, correctly stamped point of its series."""
        if self.bounds.latest_ns and t > self.bounds.latest_ns:
            self.out.future_timestamp += 1
            return True
        return False

    def refused(self) -> None:
        if self.store.refusal == "size_limit":
            self.out.size_limit += 1
        else:
            self.out.series_limit += 1

    def set_scope(self, producer_labels: dict[str, str], scope: InstrumentationScope) -> None:
        base = dict(producer_labels)
        if self.scope_labels:
            if scope.name:
                base[SCOPE_NAME] = scope.name[: naming.MAX_LABEL_VALUE_LENGTH]
            if scope.version:
                base[SCOPE_VERSION] = scope.version[: naming.MAX_LABEL_VALUE_LENGTH]
        self.base = base
        self.base_labels = tuple(sorted(base.items()))

    def labels(self, attributes: Sequence[KeyValue]) -> Labels | None:
        if not attributes:
            return self.base_labels
        if len(attributes) > MAX_LABELS:
            return None
        attributes, dropped = naming.short_keys(attributes, self.bounds.max_label_name_length)
        self.out.attributes_dropped += dropped
        found = naming.attribute_labels(attributes)
        for name in found.keys() & RESERVED_LABELS:
            text = found.pop(name)
            moved = "exported_" + name
            found[moved] = f"{found[moved]};{text}" if moved in found else text
        found.update(self.base)
        return tuple(sorted(found.items()))


def apply_metrics(
    request: ExportMetricsServiceRequest,
    store: SeriesStore,
    scope_labels: bool = True,
    bounds: Bounds = Bounds(),
) -> MetricsOutcome:
    store.tick()
    batch = _Batch(store, scope_labels, bounds)
    for rm in request.resource_metrics:
        who = producer(rm.resource, bounds.max_label_name_length, bounds.max_resource_attributes)
        batch.out.attributes_dropped += who.dropped_attributes
        ending = _ends_everything(rm)  # a producer's last word at a clean exit
        if ending:
            store.ended((who.service_name, who.instance_id))
        else:
            store.pushed_by((who.service_name, who.instance_id))
        info = store.family(TARGET_INFO, "gauge", "Target metadata")
        if info is not None and ending:
            store.remove(info, who.target_labels)
        elif info is not None:
            store.put_number(info, who.target_labels, 1, 0, False)
        for sm in rm.scope_metrics:
            batch.set_scope(who.labels, sm.scope)
            for metric in sm.metrics:
                _metric(batch, metric)
    return batch.out


def _ends_everything(rm: Any) -> bool:
    """Every point of this producer's batch flagged "no recorded value" (and at least one)."""
    seen = False
    for sm in rm.scope_metrics:
        for metric in sm.metrics:
            which = metric.WhichOneof("data")
            for point in getattr(metric, which).data_points if which else ():
                if not point.flags & NO_RECORDED_VALUE:
                    return False
                seen = True
    return seen


def _count_points(metric: Metric, which: str) -> int:
    return len(getattr(metric, which).data_points)


def _metric(batch: _Batch, metric: Metric) -> None:
    which = metric.WhichOneof("data")
    if which is None:
        return
    family_of, apply_points = _HANDLERS[which]
    fam = family_of(batch.store, metric)
    if fam is None:
        batch.out.unsupported += _count_points(metric, which)
    elif isinstance(fam, _Reserved):
        batch.out.reserved_name += _count_points(metric, which)
    else:
        apply_points(batch, fam, metric)


def is_reserved(name: str) -> bool:
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES)


def _named_family(store: SeriesStore, metric: Metric, kind: str, type_: str) -> _Family:
    if len(metric.name) > MAX_RAW_NAME_LENGTH or len(metric.unit) > MAX_RAW_NAME_LENGTH:
        return None  # never sanitized nor memoised: a name this long is not a real one
    name = naming.metric_name(metric.name, metric.unit, kind)
    if not name or len(name) > MAX_NAME_LENGTH:
        return None
    if is_reserved(name):
        return RESERVED
    return store.family(name, type_, metric.description[:MAX_HELP_LENGTH])


def _prometheus_type(metric: Metric) -> str:
    for kv in metric.metadata:
        if kv.key == "prometheus.type":
            return kv.value.string_value
    return ""


def _gauge_family(store: SeriesStore, metric: Metric) -> _Family:
    untyped = bool(metric.metadata) and _prometheus_type(metric) == "unknown"
    return _named_family(store, metric, naming.GAUGE, "untyped" if untyped else "gauge")


def _gauge_points(batch: _Batch, fam: MetricFamily, metric: Metric) -> None:
    _numbers(batch, fam, metric.gauge.data_points, False)


def _sum_family(store: SeriesStore, metric: Metric) -> _Family:
    s = metric.sum
    if s.aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE:
        if s.is_monotonic:
            return _named_family(store, metric, naming.COUNTER, "counter")
        return _named_family(store, metric, naming.OTHER, "gauge")
    if s.aggregation_temporality == AGGREGATION_TEMPORALITY_DELTA and s.is_monotonic:
        return _named_family(store, metric, naming.COUNTER, "counter")
    return None


def _sum_points(batch: _Batch, fam: MetricFamily, metric: Metric) -> None:
    delta = metric.sum.aggregation_temporality == AGGREGATION_TEMPORALITY_DELTA
    _numbers(batch, fam, metric.sum.data_points, delta)


def _numbers(
    batch: _Batch, fam: MetricFamily, points: Sequence[NumberDataPoint], delta: bool
) -> None:
    store, out = batch.store, batch.out
    for dp in points:
        labels = batch.labels(dp.attributes)
        which = dp.WhichOneof("value")
        if labels is None or which is None:
            out.unsupported += 1
            continue
        if batch.too_new(dp.time_unix_nano):
            continue
        if dp.flags & NO_RECORDED_VALUE:
            store.end(fam, labels)
            out.accepted += 1
            continue
        value = dp.as_double if which == "as_double" else dp.as_int
        if store.put_number(fam, labels, value, dp.time_unix_nano, delta):
            out.accepted += 1
        else:
            batch.refused()


def _temporality(temporality: int) -> bool | None:
    """True for delta, False for cumulative, None for unspecified."""
    if temporality == AGGREGATION_TEMPORALITY_CUMULATIVE:
        return False
    if temporality == AGGREGATION_TEMPORALITY_DELTA:
        return True
    return None


def _histogram_family(store: SeriesStore, metric: Metric) -> _Family:
    if _temporality(metric.histogram.aggregation_temporality) is None:
        return None
    return _named_family(store, metric, naming.OTHER, "histogram")


def _histogram_points(batch: _Batch, fam: MetricFamily, metric: Metric) -> None:
    _each_histogram_point(batch, fam, metric.histogram, _histogram_point)


def _each_histogram_point(batch: _Batch, fam: MetricFamily, data: Any,
                          apply: Callable[[_Batch, MetricFamily, Labels, Any, bool], None]
                          ) -> None:
    """Classic and exponential histograms alike: labels, no-value points, then `apply`."""
    delta = bool(_temporality(data.aggregation_temporality))
    store, out = batch.store, batch.out
    for dp in data.data_points:
        labels = batch.labels(dp.attributes)
        if labels is None:
            out.unsupported += 1
        elif batch.too_new(dp.time_unix_nano):
            pass
        elif dp.flags & NO_RECORDED_VALUE:
            store.end(fam, labels)
            out.accepted += 1
        else:
            apply(batch, fam, labels, dp, delta)


def _histogram_point(
    batch: _Batch, fam: MetricFamily, labels: Labels, dp: HistogramDataPoint, delta: bool
) -> None:
    out = batch.out
    counts = dp.bucket_counts
    if counts:
        bounds = tuple(dp.explicit_bounds)
        les = batch.store.bucket_labels(bounds) if len(bounds) <= MAX_BOUNDS else None
        if les is None or len(counts) != len(bounds) + 1 or sum(counts) != dp.count:
            out.unsupported += 1
            return
    else:
        les = ()
    sum_ = dp.sum if dp.HasField("sum") and not (dp.HasField("min") and dp.min < 0) else None
    t = dp.time_unix_nano
    if batch.store.put_histogram(fam, labels, les, counts, dp.count, sum_, t, delta):
        out.accepted += 1
    else:
        batch.refused()


def _exp_histogram_family(store: SeriesStore, metric: Metric) -> _Family:
    if _temporality(metric.exponential_histogram.aggregation_temporality) is None:
        return None
    return _named_family(store, metric, naming.OTHER, "exphistogram")


def _exp_histogram_points(batch: _Batch, fam: MetricFamily, metric: Metric) -> None:
    _each_histogram_point(batch, fam, metric.exponential_histogram, _exp_point)


def _exp_point(
    batch: _Batch,
    fam: MetricFamily,
    labels: Labels,
    dp: ExponentialHistogramDataPoint,
    delta: bool,
) -> None:
    out = batch.out
    pos, neg = dp.positive, dp.negative
    if (
        not exphist.MIN_SCALE <= dp.scale <= exphist.MAX_SCALE
        or len(pos.bucket_counts) + len(neg.bucket_counts) > MAX_EXP_BUCKETS_IN
        or not 0.0 <= dp.zero_threshold < math.inf
        or dp.zero_count + sum(pos.bucket_counts) + sum(neg.bucket_counts) != dp.count
    ):
        out.unsupported += 1
        return
    buckets = exphist.from_point(
        dp.scale,
        dp.zero_threshold,
        dp.zero_count,
        (pos.offset, pos.bucket_counts),
        (neg.offset, neg.bucket_counts),
        EXP_MAX_BUCKETS,
    )
    negative = bool(buckets.neg) or (dp.HasField("min") and dp.min < 0)
    sum_ = dp.sum if dp.HasField("sum") and not negative else None
    if batch.store.put_exp_histogram(
        fam, labels, buckets, dp.count, sum_, dp.time_unix_nano, delta
    ):
        out.accepted += 1
    else:
        batch.refused()


def _summary_family(store: SeriesStore, metric: Metric) -> _Family:
    return _named_family(store, metric, naming.OTHER, "summary")


def _summary_points(batch: _Batch, fam: MetricFamily, metric: Metric) -> None:
    store, out = batch.store, batch.out
    for dp in metric.summary.data_points:
        labels = batch.labels(dp.attributes)
        quantiles = _quantiles(dp)
        if labels is None or quantiles is None:
            out.unsupported += 1
        elif batch.too_new(dp.time_unix_nano):
            pass
        elif dp.flags & NO_RECORDED_VALUE:
            store.end(fam, labels)
            out.accepted += 1
        elif store.put_summary(fam, labels, quantiles, dp.count, dp.sum, dp.time_unix_nano):
            out.accepted += 1
        else:
            batch.refused()


def _quantiles(dp: SummaryDataPoint) -> list[tuple[str, float]] | None:
    pairs = sorted((q.quantile, q.value) for q in dp.quantile_values)
    if len(pairs) > MAX_BOUNDS or any(not 0.0 <= q <= 1.0 for q, _ in pairs):
        return None
    return [(naming.bound_text(q), v) for q, v in pairs]


_FamilyFn = Callable[[SeriesStore, Metric], _Family]
_PointsFn = Callable[[_Batch, MetricFamily, Metric], None]
_HANDLERS: dict[str, tuple[_FamilyFn, _PointsFn]] = {
    "gauge": (_gauge_family, _gauge_points),
    "sum": (_sum_family, _sum_points),
    "histogram": (_histogram_family, _histogram_points),
    "exponential_histogram": (_exp_histogram_family, _exp_histogram_points),
    "summary": (_summary_family, _summary_points),
}
