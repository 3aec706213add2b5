"""The current value of every series pushed over OTLP, kept until it goes stale.

Callers (translate.py) hand in plain values, already named and labelled; the store applies
temporality (a delta point is added to what the series holds, a cumulative point replaces it),
enforces the series limits, forgets series not updated within the staleness period and turns
what it holds into `Family` objects. It is not thread-safe: `OtlpState` serialises access.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise

from exporter.exposition import Family, Labels, Sample
from exporter.otlp import exphist
from exporter.otlp.exphist import ExpBuckets
from exporter.otlp.naming import bound_text

EXP_MAX_BUCKETS = 64
_BOUNDS_CACHE_MAX = 1024


class Series:
    __slots__ = ("seen", "t")

    def __init__(self) -> None:
        self.seen = 0.0
        self.t = 0

    def is_old(self, t: int, delta: bool) -> bool:
        """A point older than the one applied last (a retried batch) is ignored; 0 is unknown."""
        if not t or not self.t:
            return False
        return t < self.t or (delta and t == self.t)

    def emit(self, samples: list[Sample], labels: Labels) -> None:
        raise NotImplementedError


class NumberSeries(Series):
    __slots__ = ("value",)

    def __init__(self) -> None:
        super().__init__()
        self.value = 0.0

    def emit(self, samples: list[Sample], labels: Labels) -> None:
        samples.append(Sample("", labels, self.value))


class HistogramSeries(Series):
    __slots__ = ("count", "counts", "les", "sum")

    def __init__(self) -> None:
        super().__init__()
        self.les: tuple[str, ...] = ()
        self.counts: list[int] = []
        self.count = 0
        self.sum: float | None = None

    def emit(self, samples: list[Sample], labels: Labels) -> None:
        _buckets(samples, labels, zip(self.les, self.counts, strict=False), self.count, self.sum)


class ExpHistogramSeries(Series):
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        super().__init__()
        self.buckets = exphist.ExpBuckets(0, 0.0, 0)
        self.count = 0
        self.sum: float | None = None

    def emit(self, samples: list[Sample], labels: Labels) -> None:
        pairs = [(bound_text(b), n) for b, n in exphist.classic_buckets(self.buckets)]
        _buckets(samples, labels, pairs, self.count, self.sum)


class SummarySeries(Series):
    __slots__ = ("count", "quantiles", "sum")

    def __init__(self) -> None:
        super().__init__()
        self.quantiles: list[tuple[str, float]] = []
        self.count = 0
        self.sum = 0.0

    def emit(self, samples: list[Sample], labels: Labels) -> None:
        for q, value in self.quantiles:
            samples.append(Sample("", (*labels, ("quantile", q)), value))
        samples.append(Sample("_sum", labels, self.sum))
        samples.append(Sample("_count", labels, self.count))


class MetricFamily:
    __slots__ = ("help", "kind", "name", "series", "type")

    def __init__(self, name: str, type_: str, kind: type[Series], help_: str) -> None:
        self.name = name
        self.type = type_
        self.kind = kind
        self.help = help_
        self.series: dict[Labels, Series] = {}


_KINDS: dict[str, type[Series]] = {
    "gauge": NumberSeries,
    "counter": NumberSeries,
    "untyped": NumberSeries,
    "histogram": HistogramSeries,
    "exphistogram": ExpHistogramSeries,
    "summary": SummarySeries,
}


class SeriesStore:
    def __init__(
        self,
        max_series_per_metric: int = 2000,
        max_series_total: int = 50_000,
        max_metrics: int = 2000,
        staleness_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_series_per_metric = max_series_per_metric
        self.max_series_total = max_series_total
        self.max_metrics = max_metrics
        self.staleness_seconds = staleness_seconds
        self.clock = clock
        self.families: dict[str, MetricFamily] = {}
        self.series_count = 0
        self.now = clock()
        self._last_prune = self.now
        self._les: dict[tuple[float, ...], tuple[str, ...]] = {}

    def tick(self) -> None:
        """Read the clock once for a batch of updates; prune now and then."""
        self.now = self.clock()
        if self.now - self._last_prune >= self.staleness_seconds / 4:
            self.prune()

    def family(self, name: str, type_: str, help_: str) -> MetricFamily | None:
        """The family to update, or None when `name` holds another type or too many metrics
        are held already. `type_` is gauge, counter, untyped, histogram, exphistogram or
        summary (an exponential histogram is exposed as a histogram)."""
        fam = self.families.get(name)
        if fam is None:
            if len(self.families) >= self.max_metrics:
                self.prune()
                if len(self.families) >= self.max_metrics:
                    return None
            fam = MetricFamily(name, type_, _KINDS[type_], help_)
            self.families[name] = fam
        elif fam.type != type_:
            return None
        return fam

    def _series(self, fam: MetricFamily, labels: Labels) -> Series | None:
        series = fam.series.get(labels)
        if series is None:
            if not self._room(fam):
                return None
            series = fam.series[labels] = fam.kind()
            self.series_count += 1
        series.seen = self.now
        return series

    def _room(self, fam: MetricFamily) -> bool:
        if len(fam.series) < self.max_series_per_metric and (
            self.series_count < self.max_series_total
        ):
            return True
        if self._last_prune == self.now:  # pruned already in this batch: nothing more to free
            return False
        self.prune(drop_empty=False)  # `fam` may be empty: it must stay the one in the store
        return len(fam.series) < self.max_series_per_metric and (
            self.series_count < self.max_series_total
        )

    def put_number(
        self, fam: MetricFamily, labels: Labels, value: float, t: int, delta: bool
    ) -> bool:
        """False when the series limit dropped the point."""
        series = self._series(fam, labels)
        if series is None:
            return False
        assert isinstance(series, NumberSeries)
        if not series.is_old(t, delta):
            series.value = series.value + value if delta else value
            series.t = t or series.t
        return True

    def bucket_labels(self, bounds: tuple[float, ...]) -> tuple[str, ...] | None:
        """`le` texts for valid explicit bounds (finite, strictly increasing), else None."""
        les = self._les.get(bounds)
        if les is None:
            if not all(map(math.isfinite, bounds)) or any(a >= b for a, b in pairwise(bounds)):
                return None
            if len(self._les) >= _BOUNDS_CACHE_MAX:
                self._les.clear()
            les = self._les[bounds] = tuple(bound_text(b) for b in bounds)
        return les

    def put_histogram(
        self,
        fam: MetricFamily,
        labels: Labels,
        les: tuple[str, ...],
        counts: Sequence[int],
        count: int,
        sum_: float | None,
        t: int,
        delta: bool,
    ) -> bool:
        """`les` from `bucket_labels`; `counts` has one more entry than `les` (or none)."""
        series = self._series(fam, labels)
        if series is None:
            return False
        assert isinstance(series, HistogramSeries)
        if series.is_old(t, delta):
            return True
        if delta and series.t and series.les == les and len(series.counts) == len(counts):
            series.counts = [a + b for a, b in zip(series.counts, counts, strict=True)]
            series.count += count
            series.sum = None if sum_ is None or series.sum is None else series.sum + sum_
        else:
            series.les, series.counts, series.count, series.sum = les, list(counts), count, sum_
        series.t = t or series.t or 1
        return True

    def put_exp_histogram(
        self,
        fam: MetricFamily,
        labels: Labels,
        buckets: ExpBuckets,
        count: int,
        sum_: float | None,
        t: int,
        delta: bool,
    ) -> bool:
        series = self._series(fam, labels)
        if series is None:
            return False
        assert isinstance(series, ExpHistogramSeries)
        if series.is_old(t, delta):
            return True
        if delta and series.t:
            exphist.merge(series.buckets, buckets, EXP_MAX_BUCKETS)
            series.count += count
            series.sum = None if sum_ is None or series.sum is None else series.sum + sum_
        else:
            series.buckets, series.count, series.sum = buckets, count, sum_
        series.t = t or series.t or 1
        return True

    def put_summary(
        self,
        fam: MetricFamily,
        labels: Labels,
        quantiles: list[tuple[str, float]],
        count: int,
        sum_: float,
        t: int,
    ) -> bool:
        series = self._series(fam, labels)
        if series is None:
            return False
        assert isinstance(series, SummarySeries)
        if not series.is_old(t, False):
            series.quantiles, series.count, series.sum = quantiles, count, sum_
            series.t = t or series.t
        return True

    def remove(self, fam: MetricFamily, labels: Labels) -> None:
        """A point flagged "no recorded value": the series ends now."""
        if fam.series.pop(labels, None) is not None:
            self.series_count -= 1

    def prune(self, drop_empty: bool = True) -> None:
        self._last_prune = self.now
        cutoff = self.now - self.staleness_seconds
        for name, fam in list(self.families.items()):
            stale = [labels for labels, s in fam.series.items() if s.seen < cutoff]
            for labels in stale:
                del fam.series[labels]
            self.series_count -= len(stale)
            if drop_empty and not fam.series:
                del self.families[name]

    def collect(self) -> list[Family]:
        self.now = self.clock()
        self.prune()
        return [_render(fam) for fam in self.families.values()]


def _render(fam: MetricFamily) -> Family:
    out = Family(fam.name, "histogram" if fam.type == "exphistogram" else fam.type, fam.help)
    for labels, series in fam.series.items():
        series.emit(out.samples, labels)
    return out


def _buckets(
    samples: list[Sample],
    labels: Labels,
    pairs: Iterable[tuple[str, int]],
    count: int,
    sum_: float | None,
) -> None:
    cumulative = 0
    for le, n in pairs:
        cumulative += n
        samples.append(Sample("_bucket", (*labels, ("le", le)), cumulative))
    samples.append(Sample("_bucket", (*labels, ("le", "+Inf")), count))
    if sum_ is not None:
        samples.append(Sample("_sum", labels, sum_))
    samples.append(Sample("_count", labels, count))
