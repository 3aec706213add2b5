"""Exponential histograms converted to classic (`le`) buckets, without interpolation.

An exponential bucket at scale `s` and index `i` holds values in (b**i, b**(i+1)] with
b = 2**(2**-s). Every bucket at scale s >= 0 lies inside exactly one bucket at scale 0, the
power-of-two bucket (2**(i >> s), 2**((i >> s) + 1)], so downscaling to scale 0 (index `i >> s`)
is exact. The classic buckets are therefore the powers of two: `le="0.5"`, `le="1"`, `le="2"`,
... Points already at a negative scale keep it (their bounds are powers of two as well). When
the populated range of one sign spans more than `max_buckets` indexes, the histogram is
downscaled further, one step at a time, so one series never exposes more than about
2 * max_buckets + 2 bucket lines.
"""

from __future__ import annotations

from collections.abc import Iterable

MIN_SCALE = -10
MAX_SCALE = 20
_MAX_EXP = 1023
_MIN_EXP = -1074
_MOST_NEGATIVE = -1.7976931348623157e308


class ExpBuckets:
    """Bucket counts of one sign keyed by index, at `scale` <= 0, plus the zero bucket."""

    __slots__ = ("neg", "pos", "scale", "zero_count", "zero_threshold")

    def __init__(self, scale: int, zero_threshold: float, zero_count: int) -> None:
        self.scale = scale
        self.zero_threshold = zero_threshold
        self.zero_count = zero_count
        self.pos: dict[int, int] = {}
        self.neg: dict[int, int] = {}

    def total(self) -> int:
        return self.zero_count + sum(self.pos.values()) + sum(self.neg.values())


def _clamp(index: int, scale: int) -> int:
    """Indexes past the float range (only hostile input has them) join the outermost buckets
    a float can reach, which keeps every histogram's index range small."""
    k = -scale
    return min(max(index, ((_MIN_EXP - 1) >> k) - 1), ((_MAX_EXP + 1) >> k) + 1)


def _fold(dest: dict[int, int], offset: int, counts: Iterable[int], shift: int, scale: int) -> None:
    for i, count in enumerate(counts):
        if count:
            index = _clamp((offset + i) >> shift, scale)
            dest[index] = dest.get(index, 0) + count


def _downscale(buckets: dict[int, int], by: int, scale: int) -> dict[int, int]:
    if by <= 0:
        return buckets
    out: dict[int, int] = {}
    for index, count in buckets.items():
        key = _clamp(index >> by, scale)
        out[key] = out.get(key, 0) + count
    return out


def _span(buckets: dict[int, int]) -> int:
    return max(buckets) - min(buckets) + 1 if buckets else 0


def rescale(hist: ExpBuckets, scale: int) -> None:
    """Lower `hist` to `scale` (never raises it: finer detail is gone)."""
    by = hist.scale - scale
    if by > 0:
        hist.pos = _downscale(hist.pos, by, scale)
        hist.neg = _downscale(hist.neg, by, scale)
        hist.scale = scale


def limit_range(hist: ExpBuckets, max_buckets: int) -> None:
    while hist.scale > MIN_SCALE and max(_span(hist.pos), _span(hist.neg)) > max_buckets:
        rescale(hist, hist.scale - 1)


def from_point(
    scale: int,
    zero_threshold: float,
    zero_count: int,
    positive: tuple[int, Iterable[int]],
    negative: tuple[int, Iterable[int]],
    max_buckets: int,
) -> ExpBuckets:
    target = min(scale, 0)
    hist = ExpBuckets(target, zero_threshold, zero_count)
    _fold(hist.pos, positive[0], positive[1], scale - target, target)
    _fold(hist.neg, negative[0], negative[1], scale - target, target)
    limit_range(hist, max_buckets)
    return hist


def merge(into: ExpBuckets, other: ExpBuckets, max_buckets: int) -> None:
    """Add `other`'s counts to `into` (delta temporality), at the coarser of the two scales."""
    scale = min(into.scale, other.scale)
    rescale(into, scale)
    rescale(other, scale)
    for dest, src in ((into.pos, other.pos), (into.neg, other.neg)):
        for index, count in src.items():
            dest[index] = dest.get(index, 0) + count
    into.zero_count += other.zero_count
    into.zero_threshold = max(into.zero_threshold, other.zero_threshold)
    limit_range(into, max_buckets)


def _power_of_two(exponent: int) -> float:
    if exponent > _MAX_EXP:
        return float("inf")
    return 2.0 ** max(exponent, _MIN_EXP)


def _dense(buckets: dict[int, int]) -> list[tuple[int, int]]:
    """Every index from the lowest to the highest populated one, so that the set of `le`
    values only grows at its ends."""
    if not buckets:
        return []
    return [(i, buckets.get(i, 0)) for i in range(min(buckets), max(buckets) + 1)]


def classic_buckets(hist: ExpBuckets) -> list[tuple[float, int]]:
    """Finite upper bounds, ascending, each with the count of its own bucket (not cumulative).
    Counts whose bound overflows a float belong to `+Inf` only."""
    shift = -hist.scale
    pairs: list[tuple[float, int]] = []
    for index, count in _dense(hist.pos):
        bound = _power_of_two((index + 1) << shift)
        if bound != float("inf"):
            pairs.append((bound, count))
    for index, count in _dense(hist.neg):
        bound = -_power_of_two(index << shift)
        pairs.append((max(bound, _MOST_NEGATIVE), count))
    if hist.zero_count or hist.neg:
        pairs.append((hist.zero_threshold, hist.zero_count))
    pairs.sort()
    merged: list[tuple[float, int]] = []
    for bound, count in pairs:
        if merged and merged[-1][0] == bound:
            merged[-1] = (bound, merged[-1][1] + count)
        else:
            merged.append((bound, count))
    return merged
