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


def since_reset(points: Sequence[P], index: int) -> list[P]:
    """The points after the last fall of counter `index` (a restart of what counts)."""
    start = 0
    for i, (a, b) in enumerate(pairwise(points), 1):
        if b[index] < a[index]:
            start = i
    return list(points[start:])


def rate(points: Sequence[P], index: int) -> float | None:
    """Per second, between the first and last of `points` after the last reset."""
    run = since_reset(points, index)
    if len(run) < 2 or run[-1][0] <= run[0][0]:
        return None
    return (run[-1][index] - run[0][index]) / (run[-1][0] - run[0][0])


def ratio(points: Sequence[P], part: int, other: int) -> float | None:
    """part / (part + other) of the increases between the first and last point."""
    run = since_reset(since_reset(points, part), other)
    if len(run) < 2:
        return None
    a = run[-1][part] - run[0][part]
    b = run[-1][other] - run[0][other]
    return a / (a + b) if a + b > 0 else None


def steps(points: Sequence[P], value: Callable[[P, P], float | None]) -> list[float | None]:
    """`value` of each pair of neighbouring points (for a sparkline of rates)."""
    return [value(a, b) for a, b in pairwise(points)]


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


def values(points: Iterable[tuple[float, ...]], index: int) -> list[float | None]:
    return [p[index] for p in points]
