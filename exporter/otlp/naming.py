"""OpenTelemetry to Prometheus names, written from the OpenTelemetry specification
"Prometheus and OpenMetrics Compatibility", section "OTLP Metric points to Prometheus".

Metric names: invalid characters become `_`, runs of `_` collapse, the unit (abbreviation to
full word, `{...}` annotations dropped, `foo/bar` to `foo_per_bar`, `1` to `ratio` on gauges)
is appended unless the name already holds it, and monotonic sums end in `_total`. Colons are
replaced as well: in this project they are reserved for recording rules.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from exporter.exposition import format_value
from exporter.memo import Memo

_UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tebibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "bit": "bits",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "%": "percent",
    "1": "",
}
_PER_UNITS = {
    "s": "second",
    "m": "minute",
    "min": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}

_INVALID = re.compile(r"[^a-zA-Z0-9]+")
_ANNOTATION = re.compile(r"\{[^}]*\}")
_CACHE_MAX = 4096
_CACHE_BYTES = 1024 * 1024

GAUGE = "gauge"
COUNTER = "counter"
OTHER = "other"


def _words(text: str) -> list[str]:
    return [w for w in _INVALID.split(text) if w]


def unit_words(unit: str, kind: str) -> list[str]:
    """The unit as name tokens: `ms` -> [milliseconds], `By/s` -> [bytes, per, second]."""
    if unit == "1" and kind == GAUGE:
        return ["ratio"]
    main, _, per = _ANNOTATION.sub("", unit).partition("/")
    main, per = main.strip(), per.strip()
    words = _words(_UNITS.get(main, main))
    if per:
        words += ["per", *_words(_PER_UNITS.get(per, per))]
    return words


def _build_metric_name(name: str, unit: str, kind: str) -> str:
    tokens = _words(name)
    if not tokens:
        return ""
    if kind == COUNTER and tokens[-1] == "total":
        tokens.pop()
    suffix = unit_words(unit, kind)
    if suffix and not _holds(tokens, suffix):
        tokens += suffix
    if kind == COUNTER:
        tokens.append("total")
    joined = "_".join(tokens)
    return "_" + joined if joined[0].isdigit() else joined


def _holds(tokens: list[str], words: list[str]) -> bool:
    n = len(words)
    return any(tokens[i : i + n] == words for i in range(len(tokens) - n + 1))


# Names repeat on every push: memoised, applying a push takes 1.6x to 2.4x less time
# (bench/memo_caches.py, docs/benchmarks.md "What each memo is worth").
_metric_names: Memo[tuple[str, str, str], str] = Memo(_CACHE_MAX, _CACHE_BYTES)


def metric_name(name: str, unit: str, kind: str) -> str:
    """Prometheus family name for an OTel metric; `kind` is GAUGE (an OTel Gauge), COUNTER (a
    monotonic sum) or OTHER. Empty when nothing valid is left of the name."""
    key = (name, unit, kind)
    cached = _metric_names.get(key)
    if cached is None:
        cached = _build_metric_name(name, unit, kind)
        _metric_names.put(key, cached, len(name) + len(unit) + len(cached))
    return cached


_label_names: Memo[str, str] = Memo(_CACHE_MAX, _CACHE_BYTES)


def _build_label_name(key: str) -> str:
    name = re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9_]", "_", key))
    if not name:
        return ""
    if name[0].isdigit():
        return "key_" + name
    if name[0] == "_":
        return "key" + name
    return name


def label_name(key: str) -> str:
    """Prometheus label name for an attribute key; empty for an empty key."""
    cached = _label_names.get(key)
    if cached is None:
        cached = _label_names.put(key, _build_label_name(key), 2 * len(key))
    return cached


def _plain(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which is None:
        return None
    return getattr(value, which)


def value_text(value: AnyValue) -> str:
    """An attribute value as label text, per the attribute specification: strings as they are,
    booleans `true`/`false`, numbers in decimal, arrays and maps as JSON, bytes as base64."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return str(value.int_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "double_value":
        return _double_text(value.double_value)
    if which is None:
        return ""
    return json.dumps(_plain(value), separators=(",", ":"), default=str, allow_nan=True)


def _double_text(number: float) -> str:
    return repr(number) if math.isfinite(number) else format_value(number)


def bound_text(bound: float) -> str:
    """`le` and `quantile` label values, as Go's client and the collector print them:
    `1`, `0.005`, `+Inf`."""
    return format_value(float(bound))


MAX_LABEL_VALUE_LENGTH = 1024
MAX_LABEL_NAME_LENGTH = 128


def short_keys(
    attributes: Sequence[KeyValue], max_length: int = MAX_LABEL_NAME_LENGTH
) -> tuple[Sequence[KeyValue], int]:
    """The attributes whose key is at most `max_length` characters, and how many were dropped:
    a longer key is dropped whole, not cut (cut keys would collide and join values)."""
    if all(len(kv.key) <= max_length for kv in attributes):
        return attributes, 0
    kept = [kv for kv in attributes if len(kv.key) <= max_length]
    return kept, len(attributes) - len(kept)


def attribute_labels(attributes: Sequence[KeyValue]) -> dict[str, str]:
    """Attributes as labels. Keys that sanitize to the same name have their values joined with
    `;` in the lexicographical order of the original keys; values are cut at
    MAX_LABEL_VALUE_LENGTH characters; attributes with an empty key are skipped. Callers drop
    long keys first (`short_keys`)."""
    out: dict[str, str] = {}
    collided = False
    for kv in attributes:
        name = label_name(kv.key)
        if not name:
            continue
        if name in out:
            collided = True
            break
        out[name] = value_text(kv.value)[:MAX_LABEL_VALUE_LENGTH]
    if collided:
        return _joined(attributes)
    return out


def _joined(attributes: Sequence[KeyValue]) -> dict[str, str]:
    out: dict[str, str] = {}
    for kv in sorted(attributes, key=lambda kv: kv.key):
        name = label_name(kv.key)
        if not name:
            continue
        text = value_text(kv.value)
        out[name] = f"{out[name]};{text}" if name in out else text
    return {k: v[:MAX_LABEL_VALUE_LENGTH] for k, v in out.items()}
