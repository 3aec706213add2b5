import gzip
import json
import tracemalloc
import zlib

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from exporter.otlp.decode import (
    BodyTooLarge,
    Inflater,
    MalformedBody,
    UnsupportedMediaType,
    body_format,
    parse_metrics,
    parse_traces,
)

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"


def inflate(body: bytes, content_encoding: str | None, cap: int) -> bytes:
    """A whole body through the receiver's streaming inflater, as one chunk."""
    inflater = Inflater(content_encoding, cap)
    inflater.feed(body)
    return inflater.finish()


def test_content_types() -> None:
    assert body_format("application/x-protobuf") == "protobuf"
    assert body_format("Application/JSON; charset=utf-8") == "json"
    for bad in (None, "", "text/plain", "application/grpc"):
        with pytest.raises(UnsupportedMediaType):
            body_format(bad)


def test_encodings() -> None:
    data = b"x" * 1000
    assert inflate(data, None, 2000) == data
    assert inflate(data, "identity", 2000) == data
    assert inflate(gzip.compress(data), "gzip", 2000) == data
    assert inflate(zlib.compress(data), "deflate", 2000) == data
    assert inflate(gzip.compress(b"ab") + gzip.compress(b"cd"), "GZIP", 100) == b"abcd"
    with pytest.raises(UnsupportedMediaType):
        Inflater("br", 10)


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (gzip.compress(b"x" * 100)[:-5], "gzip"),  # truncated
        (b"not gzip at all", "gzip"),
        (zlib.compress(b"x") + b"junk", "deflate"),
        (gzip.compress(b"x") + b"junk", "gzip"),
    ],
)
def test_broken_compression_is_malformed(body: bytes, encoding: str) -> None:
    with pytest.raises(MalformedBody):
        inflate(body, encoding, 10_000)


def test_compressed_size_is_capped_as_it_arrives() -> None:
    inflater = Inflater(None, 100)
    inflater.feed(b"x" * 60)
    with pytest.raises(BodyTooLarge):
        inflater.feed(b"x" * 60)


def _bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush()


def test_a_gzip_bomb_never_inflates_past_the_cap() -> None:
    bomb = _bomb(64 << 20)  # 64 MiB of zeros in about 64 KiB
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        inflater = Inflater("gzip", 1 << 20)
        with pytest.raises(BodyTooLarge):
            for i in range(0, len(bomb), 16384):  # as the network hands it over
                inflater.feed(bomb[i : i + 16384])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_protobuf_round_trip() -> None:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.name = "SELECT"
    span.trace_id = bytes.fromhex(TRACE_ID)
    assert parse_traces(request.SerializeToString(), "protobuf") == request
    with pytest.raises(MalformedBody):
        parse_traces(b"\x0a\xff\xff", "protobuf")


def _traces_json(**span: object) -> bytes:
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [span], "extra": 1}]}], "unknown": {}}
    return json.dumps(doc).encode()


def test_otlp_json_ids_are_hex_and_enums_may_be_numbers_or_names() -> None:
    request = parse_traces(
        _traces_json(
            traceId=TRACE_ID,
            spanId=SPAN_ID,
            parentSpanId="",
            kind=3,
            startTimeUnixNano="1700000000000000000",
            endTimeUnixNano=1700000000500000000,
            links=[{"traceId": TRACE_ID, "spanId": SPAN_ID}],
            status={"code": "STATUS_CODE_ERROR"},
            futureField=True,
        ),
        "json",
    )
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == TRACE_ID and span.span_id.hex() == SPAN_ID
    assert span.links[0].trace_id.hex() == TRACE_ID
    assert span.kind == Span.SPAN_KIND_CLIENT
    assert span.end_time_unix_nano - span.start_time_unix_nano == 500_000_000
    assert span.status.code == 2


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"resourceSpans": 3}',
        _traces_json(traceId="zz"),
        _traces_json(traceId=7),
        b"[" * 100_000,
        b'{"resourceSpans": [{"resource": {"\\udfc1": 1}}]}',  # a lone surrogate as a key
        b'{"resourceSpans": [{"resource": {"attributes": [{"key": "\\udfc1"}]}}]}',
    ],
)
def test_bad_otlp_json_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBody):
        parse_traces(body, "json")


def _metrics_json(**point: object) -> bytes:
    metric = {"name": "c", "gauge": {"dataPoints": [{"asInt": "1", **point}]}}
    return json.dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": [metric]}]}]}).encode()


def _resource_json(resource: object) -> bytes:
    return json.dumps({"resourceSpans": [{"resource": resource}]}).encode()


# What the OTLP/JSON specification calls invalid, and protobuf's ParseDict let through: a
# string or an array where a message is required, ids of the wrong length, enums that are not
# numbers or known names, bytes that are not base64.
INVALID_BY_SPEC = {
    "trace id of 4 hex digits": _traces_json(traceId="abcd", spanId=SPAN_ID),
    "trace id of 34 hex digits": _traces_json(traceId=TRACE_ID + "ab", spanId=SPAN_ID),
    "trace id with a space": _traces_json(traceId=TRACE_ID[:30] + " a"),
    "span id of 32 hex digits": _traces_json(traceId=TRACE_ID, spanId=TRACE_ID),
    "span id not hex": _traces_json(traceId=TRACE_ID, spanId="eee19b7ec3c1b17g"),
    "parent span id of 2": _traces_json(traceId=TRACE_ID, spanId=SPAN_ID, parentSpanId="ab"),
    "link span id of 4": _traces_json(links=[{"traceId": TRACE_ID, "spanId": "abcd"}]),
    "status a string": _traces_json(status="error"),
    "status an array": _traces_json(status=[]),
    "event a string": _traces_json(events=["x"]),
    "link an array": _traces_json(links=[[]]),
    "kind a float": _traces_json(kind=1.5),
    "kind a boolean": _traces_json(kind=True),
    "kind an unknown name": _traces_json(kind="SPAN_KIND_NOPE"),
    "kind past int32": _traces_json(kind=2**40),
    "status code an object": _traces_json(status={"code": {}}),
    "resource a string": _resource_json("x"),
    "resource an array": _resource_json([]),
    "bytes not base64": _resource_json(
        {"attributes": [{"key": "k", "value": {"bytesValue": "!!"}}]}),
    "attribute value a string": _resource_json({"attributes": [{"key": "k", "value": "v"}]}),
}
INVALID_METRICS_BY_SPEC = {
    "resourceMetrics a number": b'{"resourceMetrics": 5}',
    "scopeMetrics an object": b'{"resourceMetrics": [{"scopeMetrics": {}}]}',
    "metric a string": b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": ["c"]}]}]}',
    "exemplars a number": _metrics_json(exemplars=5),
    "exemplar trace id not hex": _metrics_json(exemplars=[{"traceId": "zz", "asInt": "1"}]),
    "exemplar span id of 4": _metrics_json(exemplars=[{"spanId": "abcd", "asInt": "1"}]),
    "temporality a string": json.dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "c", "sum": {"aggregationTemporality": "x", "dataPoints": []}}]}]}]}).encode(),
}


@pytest.mark.parametrize("body", INVALID_BY_SPEC.values(), ids=INVALID_BY_SPEC.keys())
def test_traces_the_specification_calls_invalid_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBody):
        parse_traces(body, "json")


@pytest.mark.parametrize("body", INVALID_METRICS_BY_SPEC.values(),
                         ids=INVALID_METRICS_BY_SPEC.keys())
def test_metrics_the_specification_calls_invalid_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBody):
        parse_metrics(body, "json")


def test_the_message_names_the_field_never_the_body() -> None:
    with pytest.raises(MalformedBody) as caught:
        parse_traces(_traces_json(traceId="deadbeef"), "json")
    message = str(caught.value)
    assert "opentelemetry.proto.trace.v1.Span.trace_id must be 32 hex digits" in message
    assert "deadbeef" not in message


def test_what_the_specification_allows_stays_accepted() -> None:
    request = parse_traces(
        _traces_json(traceId=TRACE_ID.upper(), spanId="", parentSpanId="", kind="SPAN_KIND_SERVER",
                     status=None, attributes=[{"key": "k", "value": {"bytesValue": "AAE="}}],
                     somethingNew={"nested": [1, "x"]}),
        "json",
    )
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == TRACE_ID and span.span_id == b"" and span.kind == 2
    assert span.attributes[0].value.bytes_value == b"\x00\x01"
    snake = parse_traces(_traces_json(trace_id=TRACE_ID, span_id=SPAN_ID), "json")
    assert snake.resource_spans[0].scope_spans[0].spans[0].span_id.hex() == SPAN_ID


def test_otlp_json_metrics_with_exemplars() -> None:
    doc = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "c",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {
                                            "asInt": "5",
                                            "exemplars": [{"traceId": TRACE_ID, "asInt": "1"}],
                                        }
                                    ],
                                },
                            }
                        ]
                    }
                ]
            }
        ]
    }
    request = parse_metrics(json.dumps(doc).encode(), "json")
    metric = request.resource_metrics[0].scope_metrics[0].metrics[0]
    assert metric.sum.data_points[0].as_int == 5
    assert metric.sum.aggregation_temporality == 2
    assert metric.sum.data_points[0].exemplars[0].trace_id.hex() == TRACE_ID
