"""A small inline SVG line of recent values: no script, no external asset, fine under CSP."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

WIDTH, HEIGHT = 96, 22


def sparkline(values: Sequence[float | None], label: str,
              show: Callable[[float], str], floor_zero: bool = True) -> str:
    """`label` says what the line is ("hit ratio, last 10 min"); `show` formats the first,
    last and highest values for its accessible name. Gaps (None) break the line."""
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return ""
    low = 0.0 if floor_zero else min(known)
    high = max(known)
    spread = (high - low) or 1.0
    step = WIDTH / (len(values) - 1)
    runs: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            if runs[-1]:
                runs.append([])
            continue
        y = HEIGHT - 2 - (v - low) / spread * (HEIGHT - 4)
        runs[-1].append(f"{i * step:.0f},{y:.0f}")
    lines = "".join(f'<polyline points="{" ".join(run)}"/>' for run in runs if len(run) > 1)
    name = escape(f"{label}: from {show(known[0])} to {show(known[-1])}, "
                  f"highest {show(high)}")
    return (f'<svg class="spark" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
            f'height="{HEIGHT}" role="img"><title>{name}</title>{lines}</svg>')
