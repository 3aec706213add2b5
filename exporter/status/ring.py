"""Bounded history: points at least `spacing` seconds apart, at most `size` of them."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise
from typing import Any, Generic, TypeVar

P = TypeVar("P", bound=tuple[Any, ...])


class Ring(Generic[P]):
    """Points are tuples whose first item is their wall-clock time."""

    __slots__ = ("points", "spacing")

    def __init__(self, size: int, spacing: float) -> None:
        self.points: deque[P] = deque(maxlen=size)
        self.spacing = spacing

    def add(self, point: P) -> bool:
        """Kept when it comes `spacing` after the last point kept (or is the first)."""
        if self.points and point[0] - self.points[-1][0] < self.spacing:
            return False
        self.points.append(point)
        return True

    def window(self, start: float, latest: P | None = None) -> list[P]:
        """The points kept since `start`, and `latest` after them when it is newer."""
        kept = [p for p in self.points if p[0] >= start]
        if latest is not None and (not kept or latest[0] > kept[-1][0]):
            kept.append(latest)
        return kept


def rate(points: Sequence[P], index: int) -> float | None:
    """Per second, between the first and last of `points` (the boards start a ring afresh
    when a counter falls, so the points of one ring never cross a reset)."""
    if len(points) < 2 or points[-1][0] <= points[0][0] or points[-1][index] < points[0][index]:
        return None
    return float(points[-1][index] - points[0][index]) / float(points[-1][0] - points[0][0])


def increase(points: Sequence[P], index: int) -> float | None:
    if len(points) < 2 or points[-1][index] < points[0][index]:
        return None
    return float(points[-1][index] - points[0][index])


def ratio(points: Sequence[P], part: int, other: int) -> float | None:
    """part / (part + other) of the increases between the first and last point."""
    a, b = increase(points, part), increase(points, other)
    if a is None or b is None or a + b <= 0:
        return None
    return a / (a + b)


def fell(before: Sequence[float], after: Sequence[float], indexes: Iterable[int]) -> bool:
    """Whether any counter at `indexes` went down (what counts restarted)."""
    return any(after[i] < before[i] for i in indexes)


def trend(points: Sequence[P], value: Callable[[P, P], float | None],
          at_most: int = 24) -> list[float | None]:
    """`value` between neighbouring points, over at most `at_most` evenly spread points."""
    if len(points) > at_most:
        stride = (len(points) - 1) / (at_most - 1)
        points = [points[round(i * stride)] for i in range(at_most)]
    return [value(a, b) for a, b in pairwise(points)]


def levels(points: Sequence[P], index: int, at_most: int = 24) -> list[float | None]:
    if len(points) > at_most:
        stride = (len(points) - 1) / (at_most - 1)
        points = [points[round(i * stride)] for i in range(at_most)]
    return [p[index] for p in points]


def step_rate(index: int) -> Callable[[tuple[float, ...], tuple[float, ...]], float | None]:
    def per_second(a: tuple[float, ...], b: tuple[float, ...]) -> float | None:
        if b[0] <= a[0] or b[index] < a[index]:
            return None
        return (b[index] - a[index]) / (b[0] - a[0])
    return per_second


def step_ratio(part: int, other: int
               ) -> Callable[[tuple[float, ...], tuple[float, ...]], float | None]:
    def share(a: tuple[float, ...], b: tuple[float, ...]) -> float | None:
        x, y = b[part] - a[part], b[other] - a[other]
        if x < 0 or y < 0 or x + y <= 0:
            return None
        return x / (x + y)
    return share
