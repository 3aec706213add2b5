"""OTLP/HTTP request bodies: content negotiation, capped decompression, protobuf and OTLP/JSON.

OTLP/JSON differs from protobuf's canonical JSON mapping: trace and span ids are hex strings
(protobuf's mapping would read them as base64), so ids are rewritten to base64 before
`json_format.ParseDict`, which then ignores unknown fields and accepts enum integers or names.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any, Literal, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

Format = Literal["protobuf", "json"]
PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_M = TypeVar("_M", bound=Message)


class MalformedBody(ValueError):
    """The body cannot be decoded. The message is fixed text: it never echoes the body."""


class BodyTooLarge(ValueError):
    """The body, compressed or decompressed, is past the configured cap."""


class UnsupportedMediaType(ValueError):
    """Neither protobuf nor JSON, or a content encoding other than gzip, deflate or identity."""


def body_format(content_type: str | None) -> Format:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == PROTOBUF:
        return "protobuf"
    if media == JSON:
        return "json"
    raise UnsupportedMediaType("content type must be application/x-protobuf or application/json")


class Inflater:
    """Accumulates a request body chunk by chunk, decompressing as it goes, and raises
    `BodyTooLarge` as soon as either the compressed or the decompressed size passes `cap`:
    a small gzip bomb never inflates more than `cap + 1` bytes."""

    def __init__(self, content_encoding: str | None, cap: int) -> None:
        encoding = (content_encoding or "identity").strip().lower()
        self._gzip = encoding == "gzip"
        if encoding in ("", "identity"):
            self._zlib: Any = None
        elif encoding == "gzip":
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            raise UnsupportedMediaType("content encoding must be gzip, deflate or identity")
        self._cap = cap
        self._received = 0
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._received > self._cap:
            raise BodyTooLarge("request body is larger than the configured limit")
        if self._zlib is None:
            self._append(chunk)
            return
        self._inflate(chunk)

    def _inflate(self, data: bytes) -> None:
        while data:
            try:
                out = self._zlib.decompress(data, self._cap - self._size + 1)
            except zlib.error as exc:
                raise MalformedBody("body is not valid compressed data") from exc
            self._append(out)
            data = self._zlib.unconsumed_tail
            if not data and self._zlib.eof and self._zlib.unused_data:
                data = self._next_member()

    def _next_member(self) -> bytes:
        # gzip allows concatenated members; anything else after the end is an error.
        rest: bytes = self._zlib.unused_data
        if not self._gzip:
            raise MalformedBody("trailing data after the compressed body")
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return rest

    def _append(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        if self._size > self._cap:
            raise BodyTooLarge("decompressed body is larger than the configured limit")
        self._parts.append(data)

    @property
    def size(self) -> int:
        """Decompressed bytes held so far."""
        return self._size

    def finish(self) -> bytes:
        if self._zlib is not None and not self._zlib.eof:
            raise MalformedBody("compressed body is truncated")
        return b"".join(self._parts)


def inflate(body: bytes, content_encoding: str | None, cap: int) -> bytes:
    inflater = Inflater(content_encoding, cap)
    inflater.feed(body)
    return inflater.finish()


def parse_metrics(body: bytes, fmt: Format) -> ExportMetricsServiceRequest:
    if fmt == "protobuf":
        return _parse_protobuf(body, ExportMetricsServiceRequest)
    doc = _load_json(body)
    _drop_exemplars(doc)
    return _parse_dict(doc, ExportMetricsServiceRequest())


def parse_traces(body: bytes, fmt: Format) -> ExportTraceServiceRequest:
    if fmt == "protobuf":
        return _parse_protobuf(body, ExportTraceServiceRequest)
    doc = _load_json(body)
    _hex_ids_to_base64(doc)
    return _parse_dict(doc, ExportTraceServiceRequest())


def _parse_protobuf(body: bytes, cls: type[_M]) -> _M:
    try:
        return cls.FromString(body)
    except Exception as exc:  # DecodeError, RecursionError on hostile nesting
        raise MalformedBody("body is not a valid OTLP protobuf message") from exc


def _load_json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedBody("body is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise MalformedBody("OTLP/JSON body must be an object")
    return doc


def _parse_dict(doc: dict[str, Any], msg: _M) -> _M:
    try:
        json_format.ParseDict(doc, msg, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError,
            SystemError) as exc:  # SystemError: upb on a key with a lone surrogate ("\udfc1")
        raise MalformedBody("body is not a valid OTLP/JSON message") from exc
    return msg


def _objects(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _each(doc: dict[str, Any], *path: tuple[str, ...]) -> list[dict[str, Any]]:
    """The objects reached by following, level by level, any of the alternative keys."""
    level = [doc]
    for keys in path:
        level = [child for obj in level for key in keys for child in _objects(obj.get(key))]
    return level


def _drop_exemplars(doc: dict[str, Any]) -> None:
    # Exemplars cannot be shown in the text format; dropping them also spares their hex ids.
    metrics = _each(
        doc,
        ("resourceMetrics", "resource_metrics"),
        ("scopeMetrics", "scope_metrics"),
        ("metrics",),
    )
    for metric in metrics:
        for data in metric.values():
            if isinstance(data, dict):
                for point in _objects(data.get("dataPoints", data.get("data_points"))):
                    point.pop("exemplars", None)


_SPAN_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


def _hex_ids_to_base64(doc: dict[str, Any]) -> None:
    spans = _each(
        doc,
        ("resourceSpans", "resource_spans"),
        ("scopeSpans", "scope_spans"),
        ("spans",),
    )
    for span in spans:
        _fix_ids(span)
        for link in _objects(span.get("links")):
            _fix_ids(link)


def _fix_ids(obj: dict[str, Any]) -> None:
    for key in _SPAN_ID_KEYS:
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise MalformedBody("trace and span ids must be hex strings")
        try:
            obj[key] = base64.b64encode(bytes.fromhex(value)).decode()
        except (ValueError, binascii.Error) as exc:
            raise MalformedBody("trace and span ids must be hex strings") from exc
