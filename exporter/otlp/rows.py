"""What one collection of the OTLP store holds of each series, and how it is written as text.

`SeriesStore.collect` copies each series' values into a row while it holds the store (pushes
change series in place) and the rows are rendered after it lets go. A row writes its lines
itself, from the label text its series made once (`label`): a histogram's bucket lines are
the series' labels and one `le` pair, so nothing is built per line but the line. At 14,200
series (156,476 lines) this is what keeps a `/metrics` body from making a Sample and a label
tuple per line (docs/benchmarks.md "Rendering /metrics").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from exporter.exposition import Labels, Sample, escape_label_value, format_value


class NumberRow:
    __slots__ = ("label", "labels", "value")

    def __init__(self, labels: Labels, label: str, value: float) -> None:
        self.labels, self.label, self.value = labels, label, value

    def write(self, base: str, plain: str, append: Callable[[str], None]) -> None:
        if self.label:
            append(f"{base}{plain}{{{self.label}}} {format_value(self.value)}\n")
        else:
            append(f"{base}{plain} {format_value(self.value)}\n")

    def samples(self) -> list[Sample]:
        return [Sample("", self.labels, self.value)]


class HistogramRow:
    """Explicit buckets: `les` the bounds' texts, `counts` per bucket (not cumulative); the
    +Inf bucket is `count`. An exponential histogram comes as its classic buckets."""

    __slots__ = ("count", "counts", "label", "labels", "les", "sum")

    def __init__(self, labels: Labels, label: str, les: Sequence[str], counts: Sequence[int],
                 count: int, sum_: float | None) -> None:
        self.labels, self.label = labels, label
        self.les, self.counts, self.count, self.sum = les, counts, count, sum_

    def write(self, base: str, plain: str, append: Callable[[str], None]) -> None:
        label = self.label
        bucket = f"{base}_bucket{{{label}," if label else f"{base}_bucket{{"
        cumulative = 0
        for le, n in zip(self.les, self.counts, strict=False):
            cumulative += n
            append(f'{bucket}le="{le}"}} {cumulative}\n')
        append(f'{bucket}le="+Inf"}} {self.count}\n')
        braces = f"{{{label}}}" if label else ""
        if self.sum is not None:
            append(f"{base}_sum{braces} {format_value(self.sum)}\n")
        append(f"{base}_count{braces} {self.count}\n")

    def samples(self) -> list[Sample]:
        labels = self.labels
        out = []
        cumulative = 0
        for le, n in zip(self.les, self.counts, strict=False):
            cumulative += n
            out.append(Sample("_bucket", (*labels, ("le", le)), cumulative))
        out.append(Sample("_bucket", (*labels, ("le", "+Inf")), self.count))
        if self.sum is not None:
            out.append(Sample("_sum", labels, self.sum))
        out.append(Sample("_count", labels, self.count))
        return out


class SummaryRow:
    __slots__ = ("count", "label", "labels", "quantiles", "sum")

    def __init__(self, labels: Labels, label: str, quantiles: Sequence[tuple[str, float]],
                 count: int, sum_: float) -> None:
        self.labels, self.label = labels, label
        self.quantiles, self.count, self.sum = quantiles, count, sum_

    def write(self, base: str, plain: str, append: Callable[[str], None]) -> None:
        label = self.label
        opening = f"{base}{plain}{{{label}," if label else f"{base}{plain}{{"
        for q, value in self.quantiles:
            append(f'{opening}quantile="{escape_label_value(q)}"}} {format_value(value)}\n')
        braces = f"{{{label}}}" if label else ""
        append(f"{base}_sum{braces} {format_value(self.sum)}\n")
        append(f"{base}_count{braces} {format_value(self.count)}\n")

    def samples(self) -> list[Sample]:
        out = [Sample("", (*self.labels, ("quantile", q)), value) for q, value in self.quantiles]
        out.append(Sample("_sum", self.labels, self.sum))
        out.append(Sample("_count", self.labels, self.count))
        return out
