"""Figures as people read them: rounded, with their unit; times as ISO 8601 (UTC) and ages."""

from __future__ import annotations

import math
from datetime import UTC, datetime

_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _sig(value: float, digits: int = 3) -> str:
    """`value` to `digits` significant digits, without an exponent or trailing zeros."""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_or_none(t: float) -> str | None:
    return iso(t) if t > 0 else None


def span(seconds: float) -> str:
    """A length of time to the second: `12 s`, `4 min 3 s`, `2 h 5 min`, `3 d 4 h`."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def age(now: float, t: float) -> str:
    if t <= 0:
        return "never"
    if t > now:
        return "just now"
    return f"{span(now - t)} ago"


def duration(seconds: float) -> str:
    """A measured duration: `0.4 ms`, `12 ms`, `1.24 s`."""
    if seconds < 1:
        return f"{_sig(seconds * 1000)} ms"
    return f"{_sig(seconds)} s"


def size(n: float) -> str:
    unit = 0
    while abs(n) >= 1024 and unit < len(_BINARY) - 1:
        n /= 1024
        unit += 1
    return f"{_sig(n)} {_BINARY[unit]}" if unit else f"{round(n)} B"


def per_second(value: float) -> str:
    return f"{_sig(value)} /s"


def percent(ratio: float) -> str:
    if 0 < ratio < 0.001:
        return "< 0.1 %"
    if 0.999 < ratio < 1:
        return "> 99.9 %"
    return f"{ratio * 100:.1f} %".replace(".0 %", " %")


def count(n: float) -> str:
    return f"{round(n):,}"


def rounded(value: float | None, digits: int = 6) -> float | None:
    """For JSON: base units, `digits` significant digits."""
    if value is None or not math.isfinite(value):
        return None
    if value == 0:
        return 0.0
    return round(value, max(0, digits - 1 - math.floor(math.log10(abs(value)))))
