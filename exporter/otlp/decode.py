"""OTLP/HTTP request bodies: content negotiation, capped decompression, protobuf and OTLP/JSON.

OTLP/JSON differs from protobuf's canonical JSON mapping: trace and span ids are hex strings
(protobuf's mapping would read them as base64), so ids are rewritten to base64 before
`json_format.ParseDict`, which then ignores unknown fields and accepts enum integers or names.

Before that, the document is checked against the message descriptors, for what `ParseDict`
lets through: a string or an array where a message is required (it iterates either as if it
were an object), an enum that is not an int32 or a known name (a float, a boolean, an unknown
name), a bytes field that is not base64, a trace id that is not 32 hex digits, a span id that is
not 16 (the empty string stays allowed: it means no id, as for a root span's parent). Any of
these makes the whole body malformed (400), as protobuf garbage is. Unknown fields stay ignored,
as the specification requires, and `null` stays the field's default.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import zlib
from typing import Any, Literal, NamedTuple, TypeVar, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
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


def parse_metrics(body: bytes, fmt: Format) -> ExportMetricsServiceRequest:
    if fmt == "protobuf":
        return _parse_protobuf(body, ExportMetricsServiceRequest)
    return _parse_json(body, ExportMetricsServiceRequest())


def parse_traces(body: bytes, fmt: Format) -> ExportTraceServiceRequest:
    if fmt == "protobuf":
        return _parse_protobuf(body, ExportTraceServiceRequest)
    return _parse_json(body, ExportTraceServiceRequest())


def _parse_protobuf(body: bytes, cls: type[_M]) -> _M:
    try:
        return cls.FromString(body)
    except Exception as exc:  # DecodeError, RecursionError on hostile nesting
        raise MalformedBody("body is not a valid OTLP protobuf message") from exc


def _parse_json(body: bytes, msg: _M) -> _M:
    doc = _load_json(body)
    try:
        _check_message(doc, cast(Descriptor, msg.DESCRIPTOR))
    except RecursionError as exc:
        raise MalformedBody("body is not a valid OTLP/JSON message") from exc
    return _parse_dict(doc, msg)


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


# Bytes fields that OTLP/JSON writes as hex, and their size in bytes (Span, Span.Link, Exemplar).
_HEX_IDS = {"trace_id": 16, "span_id": 8, "parent_span_id": 8}
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")
_HEX = re.compile(r"[0-9A-Fa-f]*")


class _Field(NamedTuple):
    field: FieldDescriptor
    repeated: bool
    kind: int
    message: Descriptor | None  # a message field's type; None for a map or a scalar
    enum_names: frozenset[str]
    hex_size: int | None


@functools.cache
def _fields(descriptor: Descriptor) -> dict[str, _Field]:
    """A message's fields by both JSON spellings (`traceId` and `trace_id`)."""
    table: dict[str, _Field] = {}
    for field in descriptor.fields:
        message = field.message_type if field.type == FieldDescriptor.TYPE_MESSAGE else None
        if message is not None and message.GetOptions().map_entry:
            message = None  # none in OTLP; ParseDict checks a map's entries
        entry = _Field(
            field,
            field.is_repeated,
            field.type,
            message,
            frozenset(field.enum_type.values_by_name) if field.enum_type is not None
            else frozenset(),
            _HEX_IDS.get(field.name) if field.type == FieldDescriptor.TYPE_BYTES else None,
        )
        table[field.name] = table[field.json_name] = entry
    return table


def _invalid(entry: _Field, what: str) -> MalformedBody:
    # Names come from the schema, never from the body.
    return MalformedBody(f"invalid OTLP/JSON: {entry.field.full_name} must be {what}")


def _check_message(obj: dict[str, Any], descriptor: Descriptor) -> None:
    fields = _fields(descriptor)
    for key, value in obj.items():
        entry = fields.get(key)
        if entry is None or value is None:
            continue  # unknown fields are ignored; null is the default value
        if not entry.repeated:
            obj[key] = _check_value(value, entry)
        elif not isinstance(value, list):
            raise _invalid(entry, "an array")
        else:
            for i, item in enumerate(value):
                value[i] = _check_value(item, entry)


def _check_value(value: Any, entry: _Field) -> Any:
    kind = entry.kind
    if kind == FieldDescriptor.TYPE_MESSAGE:
        if not isinstance(value, dict):
            raise _invalid(entry, "an object")
        if entry.message is not None:
            _check_message(value, entry.message)
    elif kind == FieldDescriptor.TYPE_ENUM:
        if isinstance(value, str):
            if value not in entry.enum_names:
                raise _invalid(entry, "an enum number or name")
        elif (isinstance(value, bool) or not isinstance(value, int)
              or not _INT32_MIN <= value <= _INT32_MAX):
            raise _invalid(entry, "an enum number or name")
    elif kind == FieldDescriptor.TYPE_BYTES:
        if not isinstance(value, str):
            raise _invalid(entry, "a string")
        if entry.hex_size is not None:
            return _hex_id(value, entry)
        if not _BASE64.fullmatch(value) or len(value.rstrip("=")) % 4 == 1:
            raise _invalid(entry, "base64")
    return value


def _hex_id(value: str, entry: _Field) -> str:
    """OTLP/JSON's hex id as the base64 that ParseDict reads; "" is no id."""
    if not value:
        return value
    size = entry.hex_size or 0
    if len(value) != 2 * size or not _HEX.fullmatch(value):
        raise _invalid(entry, f"{2 * size} hex digits")
    return base64.b64encode(bytes.fromhex(value)).decode()
