"""The current value of every series pushed over OTLP, kept until it goes stale.

Callers (translate.py) hand in plain values, already named and labelled; the store applies
temporality (a delta point is added to what the series holds, a cumulative point replaces it),
enforces the series limits, forgets series not updated within the staleness period and turns
what it holds into `Family` objects. It is not thread-safe: `OtlpState` serialises access.

Besides the series counts, the store keeps an estimate of the bytes its series take in the text
format (each line: name, labels, value) and refuses a new series, or the growth of a histogram's
buckets, that would take it past `max_bytes`: the `/metrics` body, and the time to render it,
stay bounded whatever the labels are (`refusal` then says "size_limit").

Producers (service_name + service_instance_id, told by `pushed_by` before their points) are
followed too: each one's export interval is learned from its own pushes, and one that misses
`MISSED_INTERVALS` of them (plus `EXPIRY_GRACE_SECONDS`, never sooner than
`EXPIRY_FLOOR_SECONDS` after its last push, never later than the staleness period) is taken for
dead: all its series, `target_info` included, are forgotten at the next prune and it is counted
in `producers_expired`. While a producer is alive, each of its series still ages by the
staleness period on its own (a series absent from some pushes is kept that long).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from itertools import pairwise

from exporter.exposition import Family, Labels, Row, label_text
from exporter.memo import Memo
from exporter.otlp import exphist
from exporter.otlp.exphist import ExpBuckets
from exporter.otlp.naming import bound_text
from exporter.otlp.rows import HistogramRow, NumberRow, SummaryRow

EXP_MAX_BUCKETS = 64
_BOUNDS_CACHE_MAX = 1024
_BOUNDS_CACHE_BYTES = 1024 * 1024
_LINE_OVERHEAD = 40  # suffix, value, separators, newline: a generous per-line estimate
MISSED_INTERVALS = 3  # a producer that misses this many export intervals is taken for dead
EXPIRY_GRACE_SECONDS = 1.0
EXPIRY_FLOOR_SECONDS = 3.0  # never sooner than this after its last push
ONE_EXPORT_SECONDS = 0.5  # pushes this close to the first of an export are that export's parts
LEARNED_GAPS = 8  # the interval is the longest of this many last gaps between exports
MIN_GAPS = 2  # fewer gaps known (a producer seen once or twice): the staleness period rules
MAX_PRODUCERS = 10_000  # producers followed at once; past it a new one ages by staleness only
CUMULATIVE_TYPES = frozenset({"counter", "histogram", "exphistogram", "summary"})


class Liveness:
    """When one producer pushed last, and the gaps between its last exports."""

    __slots__ = ("ended", "expires", "gaps", "gone", "last", "start")

    def __init__(self, now: float, staleness: float) -> None:
        self.start = self.last = now  # `start`: the first push of its latest export
        self.gaps: list[float] = []
        self.gone = False
        self.ended = False  # it said its last word: only its cumulative series stay, a while
        self.expires = now + staleness

    def pushed(self, now: float, staleness: float) -> None:
        """Pushes less than ONE_EXPORT_SECONDS after an export's first one are parts of that
        export (an SDK splits a large export, a request may hold a producer twice): they keep
        it alive but teach no interval."""
        if now - self.start >= ONE_EXPORT_SECONDS:
            self.gaps.append(now - self.start)
            if len(self.gaps) > LEARNED_GAPS:
                del self.gaps[0]
            self.start = now
        self.last = max(self.last, now)
        self.expires = self.last + self.deadline(staleness)

    @property
    def interval(self) -> float | None:
        """The longest of the last gaps between exports (jitter and an odd late export only
        make it wait longer, never flap); None until MIN_GAPS are known."""
        return max(self.gaps) if len(self.gaps) >= MIN_GAPS else None

    def deadline(self, staleness: float) -> float:
        """Seconds after its last push at which the producer is taken for dead."""
        interval = self.interval
        if interval is None:
            return staleness
        missed = MISSED_INTERVALS * interval + EXPIRY_GRACE_SECONDS
        return min(staleness, max(EXPIRY_FLOOR_SECONDS, missed))


class Series:
    __slots__ = ("cost", "label", "line", "producer", "seen", "t")

    def __init__(self) -> None:
        self.seen = 0.0
        self.producer: Liveness | None = None  # None: not followed, it ages by staleness only
        self.t = 0
        self.line = 0  # bytes of one line of this series, estimated
        self.cost = 0  # bytes of all its lines, estimated
        self.label = ""  # its label pairs as text, made at its first collection

    def is_old(self, t: int, delta: bool) -> bool:
        """A point older than the one applied last (a retried batch) is ignored; 0 is unknown."""
        if not t or not self.t:
            return False
        return t < self.t or (delta and t == self.t)

    def text_of(self, labels: Labels) -> str:
        if not self.label and labels:
            self.label = label_text(labels)
        return self.label

    def row(self, labels: Labels) -> Row:
        """Its values now, to render once the store is let go."""
        raise NotImplementedError


class NumberSeries(Series):
    __slots__ = ("value",)

    def __init__(self) -> None:
        super().__init__()
        self.value = 0.0

    def row(self, labels: Labels) -> Row:
        return NumberRow(labels, self.text_of(labels), self.value)


class HistogramSeries(Series):
    __slots__ = ("count", "counts", "les", "sum")

    def __init__(self) -> None:
        super().__init__()
        self.les: tuple[str, ...] = ()
        self.counts: list[int] = []  # replaced by each point, never changed in place
        self.count = 0
        self.sum: float | None = None

    def row(self, labels: Labels) -> Row:
        return HistogramRow(labels, self.text_of(labels), self.les, self.counts, self.count,
                            self.sum)


class ExpHistogramSeries(Series):
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        super().__init__()
        self.buckets = exphist.ExpBuckets(0, 0.0, 0)  # changed in place by delta points
        self.count = 0
        self.sum: float | None = None

    def row(self, labels: Labels) -> Row:
        pairs = exphist.classic_buckets(self.buckets)
        return HistogramRow(labels, self.text_of(labels), [bound_text(b) for b, _ in pairs],
                            [n for _, n in pairs], self.count, self.sum)


class SummarySeries(Series):
    __slots__ = ("count", "quantiles", "sum")

    def __init__(self) -> None:
        super().__init__()
        self.quantiles: list[tuple[str, float]] = []  # replaced by each point
        self.count = 0
        self.sum = 0.0

    def row(self, labels: Labels) -> Row:
        return SummaryRow(labels, self.text_of(labels), self.quantiles, self.count, self.sum)


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
        max_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.max_series_per_metric = max_series_per_metric
        self.max_series_total = max_series_total
        self.max_metrics = max_metrics
        self.staleness_seconds = staleness_seconds
        self.clock = clock
        self.max_bytes = max_bytes
        self.bytes = 0
        self.refusal = ""
        self.families: dict[str, MetricFamily] = {}
        self.series_count = 0
        self.producers: dict[tuple[str, str], Liveness] = {}
        self.producers_expired = 0
        self._pushing: Liveness | None = None  # the producer whose points are being put
        self._ending: list[Liveness] = []  # producers that ended, their counts still shown
        self._ends = False  # the points being put are an ending producer's last word
        self._ended = False  # a producer ended since the last prune
        self.now = clock()
        self._last_prune = self.now
        self._les: Memo[tuple[float, ...], tuple[str, ...]] = Memo(
            _BOUNDS_CACHE_MAX, _BOUNDS_CACHE_BYTES
        )

    def tick(self) -> None:
        """Read the clock once for a batch of updates; prune now and then."""
        self.now = self.clock()
        self._pushing, self._ends = None, False
        if self.now - self._last_prune >= self.staleness_seconds / 4:
            self.prune()

    def pushed_by(self, producer: tuple[str, str]) -> None:
        """`producer` (service name, instance id) pushed now; the series put from here to the
        next `tick`, `pushed_by` or `ended` are its own."""
        live = self.producers.get(producer)
        if live is not None:
            live.pushed(self.now, self.staleness_seconds)
        elif len(self.producers) < MAX_PRODUCERS:
            live = self.producers[producer] = Liveness(self.now, self.staleness_seconds)
        self._pushing, self._ends = live, False

    def ended(self, producer: tuple[str, str]) -> None:
        """`producer` said its last word (a clean exit): it is no longer followed nor counted
        as expired. Its gauges end at once (`end`); its counters, histograms and summaries keep
        their final values for as long as it would have taken to miss its intervals, so every
        scraper sees what it counted last (a recycled worker's last requests are not lost)."""
        live = self.producers.pop(producer, None)
        if live is not None:
            live.expires = self.now + live.deadline(self.staleness_seconds)
            live.ended = self._ended = True
            self._ending.append(live)
            if len(self._ending) > MAX_PRODUCERS:
                self._ending[0].gone = True
        self._pushing, self._ends = None, True

    def end(self, fam: MetricFamily, labels: Labels) -> None:
        """A point flagged "no recorded value": the series ends now, unless it is a cumulative
        one in an ending producer's last word (it stays until that producer is forgotten, see
        `ended`)."""
        if not (self._ends and fam.type in CUMULATIVE_TYPES):
            self.remove(fam, labels)

    def _expire_producers(self) -> bool:
        """Forget the producers past their deadline; True when a producer went since the last
        prune (its series go too)."""
        dead = [key for key, live in self.producers.items() if live.expires < self.now]
        for key in dead:
            self.producers.pop(key).gone = True
        self.producers_expired += len(dead)
        done = [live for live in self._ending if live.expires < self.now or live.gone]
        for live in done:
            live.gone = True
        if done:
            self._ending = [live for live in self._ending if not live.gone]
        went, self._ended = bool(dead) or bool(done) or self._ended, False
        return went

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

    def _series(self, fam: MetricFamily, labels: Labels, lines: int) -> Series | None:
        series = fam.series.get(labels)
        if series is None:
            line = len(fam.name) + _LINE_OVERHEAD + sum(len(k) + len(v) + 4 for k, v in labels)
            if not self._room(fam, line * lines):
                return None
            series = fam.series[labels] = fam.kind()
            series.line = line
            self.series_count += 1
            self._resize(series, lines)
        elif not self._resize(series, lines):
            return None
        series.seen = self.now
        series.producer = self._pushing
        return series

    def _fits(self, fam: MetricFamily, cost: int) -> bool:
        if self.bytes + cost > self.max_bytes:
            self.refusal = "size_limit"
            return False
        if len(fam.series) < self.max_series_per_metric and (
            self.series_count < self.max_series_total
        ):
            return True
        self.refusal = "series_limit"
        return False

    def _room(self, fam: MetricFamily, cost: int) -> bool:
        if self._fits(fam, cost):
            return True
        if self._last_prune == self.now:  # pruned already in this batch: nothing more to free
            return False
        self.prune(drop_empty=False)  # `fam` may be empty: it must stay the one in the store
        return self._fits(fam, cost)

    def _resize(self, series: Series, lines: int) -> bool:
        """Account a series' new number of lines; False (size_limit) when growing it would
        pass the byte budget."""
        cost = series.line * lines
        if cost > series.cost and self.bytes + cost - series.cost > self.max_bytes:
            self.refusal = "size_limit"
            return False
        self.bytes += cost - series.cost
        series.cost = cost
        return True

    def put_number(
        self, fam: MetricFamily, labels: Labels, value: float, t: int, delta: bool
    ) -> bool:
        """False when a limit dropped the point (`refusal` says which)."""
        series = self._series(fam, labels, 1)
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
            les = tuple(bound_text(b) for b in bounds)
            self._les.put(bounds, les, 8 * len(bounds) + sum(map(len, les)))
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
        series = self._series(fam, labels, len(les) + 3)
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
        old = fam.series.get(labels)
        merged = old.buckets if delta and isinstance(old, ExpHistogramSeries) and old.t else None
        series = self._series(fam, labels, _exp_lines(merged, buckets))
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
        series = self._series(fam, labels, len(quantiles) + 2)
        if series is None:
            return False
        assert isinstance(series, SummarySeries)
        if not series.is_old(t, False):
            series.quantiles, series.count, series.sum = quantiles, count, sum_
            series.t = t or series.t
        return True

    def remove(self, fam: MetricFamily, labels: Labels) -> None:
        """A point flagged "no recorded value": the series ends now."""
        series = fam.series.pop(labels, None)
        if series is not None:
            self.series_count -= 1
            self.bytes -= series.cost

    def prune(self, drop_empty: bool = True) -> None:
        self._last_prune = self.now
        cutoff = self.now - self.staleness_seconds
        went = self._expire_producers()
        for name, fam in list(self.families.items()):
            if went:
                kept = fam.type in CUMULATIVE_TYPES
                stale = [labels for labels, s in fam.series.items()
                         if s.seen < cutoff or (s.producer is not None and (
                             s.producer.gone or (s.producer.ended and not kept)))]
            else:
                stale = [labels for labels, s in fam.series.items() if s.seen < cutoff]
            for labels in stale:
                self.bytes -= fam.series.pop(labels).cost
            self.series_count -= len(stale)
            if drop_empty and not fam.series:
                del self.families[name]

    def collect(self) -> list[Family]:
        self.now = self.clock()
        self.prune()
        return [_family(fam) for fam in self.families.values()]


def _span(a: dict[int, int], b: dict[int, int], same_scale: bool) -> int:
    keys = [*a, *b]
    if not keys:
        return 0
    if not same_scale:
        return EXP_MAX_BUCKETS + 1
    return min(EXP_MAX_BUCKETS + 1, max(keys) - min(keys) + 1)


def _exp_lines(held: ExpBuckets | None, new: ExpBuckets) -> int:
    """At most as many lines as the histogram will have once `new` is merged into `held`."""
    if held is None:
        held = ExpBuckets(new.scale, 0.0, 0)
    same = held.scale == new.scale
    return _span(held.pos, new.pos, same) + _span(held.neg, new.neg, same) + 4


def _family(fam: MetricFamily) -> Family:
    return Family(fam.name, "histogram" if fam.type == "exphistogram" else fam.type, fam.help,
                  rows=[series.row(labels) for labels, series in fam.series.items()])
