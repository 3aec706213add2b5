"""Metric families and their rendering in the Prometheus text and OpenMetrics formats.

Every collector in the sidecar (Redis, OTLP, the sidecar's own) yields `Family` objects built fresh
on each collection; `render` turns them into the bytes of one scrape.
"""

from __future__ import annotations

import logging
import math
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

Labels = tuple[tuple[str, str], ...]
log = logging.getLogger("exporter.exposition")


@dataclass(slots=True)
class Sample:
    """One line: `suffix` is appended to the family name (`""`, `_sum`, `_bucket`, ...)."""

    suffix: str
    labels: Labels
    value: float


class Row(Protocol):
    """One series that writes its own lines (the OTLP store's, whose label text is made once
    per series, not per line and scrape)."""

    def write(self, base: str, plain: str, append: Callable[[str], None]) -> None:
        """Append its lines; `plain` is the suffix of an unsuffixed sample ("_total" for an
        OpenMetrics counter, else "")."""

    def samples(self) -> list[Sample]:
        """The same lines as `Sample`s."""


@dataclass(slots=True)
class Family:
    """A metric family. `name` is the full name as the text format shows it (counters keep
    `_total`). `type` is one of gauge, counter, summary, histogram, untyped. Its lines are
    `samples`, then those of `rows`."""

    name: str
    type: str
    help: str
    samples: list[Sample] = field(default_factory=list)
    rows: Sequence[Row] = ()

    def add(self, value: float, labels: Labels = (), suffix: str = "") -> None:
        self.samples.append(Sample(suffix, labels, value))

    def all_samples(self) -> list[Sample]:
        """`samples` and those of `rows`, in the order they render."""
        return [*self.samples, *(s for row in self.rows for s in row.samples())]


def gauge(name: str, help: str, value: float | None = None, labels: Labels = ()) -> Family:
    fam = Family(name, "gauge", help)
    if value is not None:
        fam.add(value, labels)
    return fam


def counter(name: str, help: str, value: float | None = None, labels: Labels = ()) -> Family:
    fam = Family(name, "counter", help)
    if value is not None:
        fam.add(value, labels)
    return fam


def format_value(value: float) -> str:
    if type(value) is int:
        return str(value)
    if value.is_integer() and -1e15 < value < 1e15:
        return str(int(value))
    if value != value:
        return "NaN"
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    return repr(float(value))


def escape_label_value(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def label_text(labels: Labels) -> str:
    """`a="1",b="2"`: the label pairs as they appear between the braces."""
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels)


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _openmetrics_type(fam: Family) -> tuple[str, str]:
    """OpenMetrics names a counter family without `_total`; a compatibility counter that lacks
    the suffix cannot be expressed as an OpenMetrics counter and is exposed as unknown."""
    if fam.type == "counter":
        if fam.name.endswith("_total"):
            return fam.name[: -len("_total")], "counter"
        return fam.name, "unknown"
    if fam.type == "untyped":
        return fam.name, "unknown"
    return fam.name, fam.type


def _header(fam: Family, openmetrics: bool) -> tuple[str, str, str]:
    """(header lines, sample name base, exposed type)."""
    if openmetrics:
        header_name, type_name = _openmetrics_type(fam)
        base = header_name if type_name == "counter" else fam.name
    else:
        header_name, type_name, base = fam.name, fam.type, fam.name
    text = f"# HELP {header_name} {escape_help(fam.help)}\n# TYPE {header_name} {type_name}\n"
    return text, base, type_name


class DuplicateFamilies:
    """Families `render` left out because an earlier one had the same name (the formats allow
    one family per name). Each name is logged once (the first 100 names), all are counted."""

    MAX_LOGGED = 100

    def __init__(self) -> None:
        self.count = 0
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def dropped(self, name: str) -> None:
        with self._lock:
            self.count += 1
            first = name not in self._logged and len(self._logged) < self.MAX_LOGGED
            if first:
                self._logged.add(name)
        if first:
            log.warning("a second metric family with one name was left out of /metrics",
                        extra={"family": name[:256]})


DUPLICATES = DuplicateFamilies()


def render(families: Iterable[Family], openmetrics: bool = False) -> bytes:
    return "".join(_render(families, openmetrics, None)).encode()


def render_gzip(families: Iterable[Family], openmetrics: bool = False) -> bytes:
    """`render`, gzipped (level 1) as it is made: the text is never held whole, so a 42 MB
    exposition costs its 1.2 MB of gzip and a few hundred kilobytes of lines at a time."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    chunks: list[bytes] = []

    def spill(lines: list[str]) -> None:
        chunks.append(compressor.compress("".join(lines).encode()))

    spill(_render(families, openmetrics, spill))
    chunks.append(compressor.flush())
    return b"".join(chunks)


_SPILL_LINES = 4096


def _render(families: Iterable[Family], openmetrics: bool,
            spill: Callable[[list[str]], None] | None) -> list[str]:
    """The exposition's lines; with `spill`, handed over (and dropped) every _SPILL_LINES."""
    out: list[str] = []
    append = out.append
    seen: set[str] = set()
    fmt = format_value
    # A series' label pairs repeat on each of its lines (a histogram's buckets, _sum, _count):
    # each pair is escaped once per render (a 42 MB body of 14,200 series: 0.44 s -> 0.31 s,
    # docs/benchmarks.md "Rendering /metrics").
    pair_texts: dict[tuple[str, str], str] = {}
    pair_text = pair_texts.get
    for fam in families:
        if fam.name in seen:
            DUPLICATES.dropped(fam.name)
            continue
        seen.add(fam.name)
        header, base, type_name = _header(fam, openmetrics)
        append(header)
        om_counter = openmetrics and type_name == "counter"
        for s in fam.samples:
            suffix = "_total" if om_counter and not s.suffix else s.suffix
            labels = s.labels
            if labels:
                parts = []
                for pair in labels:
                    text = pair_text(pair)
                    if text is None:
                        text = pair_texts[pair] = f'{pair[0]}="{escape_label_value(pair[1])}"'
                    parts.append(text)
                append(f"{base}{suffix}{{{','.join(parts)}}} {fmt(s.value)}\n")
            else:
                append(f"{base}{suffix} {fmt(s.value)}\n")
            if spill is not None and len(out) >= _SPILL_LINES:
                spill(out)
                out.clear()
        plain = "_total" if om_counter else ""
        for row in fam.rows:
            row.write(base, plain, append)
            if spill is not None and len(out) >= _SPILL_LINES:
                spill(out)
                out.clear()
    if openmetrics:
        append("# EOF\n")
    return out


def wants_openmetrics(accept: str | None) -> bool:
    return bool(accept) and "application/openmetrics-text" in accept  # type: ignore[operator]


def merge(groups: Sequence[Iterable[Family]]) -> list[Family]:
    """Concatenate families from several targets, merging samples of the same name so that a
    family appears once in the output, as the exposition formats require."""
    if len(groups) == 1:
        return list(groups[0])
    by_name: dict[str, Family] = {}
    order: list[Family] = []
    for group in groups:
        for fam in group:
            existing = by_name.get(fam.name)
            if existing is None:
                copy = Family(fam.name, fam.type, fam.help, list(fam.samples), list(fam.rows))
                by_name[fam.name] = copy
                order.append(copy)
            else:
                existing.samples.extend(fam.samples)
                existing.rows = [*existing.rows, *fam.rows]
    return order
