"""Thousands of hostile bodies at the receiver (in process, over ASGI): mutated protobuf and JSON,
random but well-formed OTLP messages, gzip bombs. Each gets a 200 (possibly with partial success)
or a 4xx, never a 5xx or an error in the log; the output stays valid Prometheus text and memory
stays within the limits."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import tracemalloc
import zlib
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.metrics import Meter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from prometheus_client.parser import text_string_to_metric_families

from exporter.exposition import render
from exporter.limits import OtlpLimits, SlowQueryLimits
from exporter.otlp import OtlpState, otlp_app

from .sdk import metrics_request

pytestmark = pytest.mark.slow

PB = {"content-type": "application/x-protobuf"}
JS = {"content-type": "application/json"}
LIMITS = OtlpLimits(
    max_body_bytes=256 * 1024, max_series_per_metric=50, max_series_total=500, max_metrics=40
)
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


class _Collect(logging.Handler):
    """Keeps every error record it is handed."""

    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


class Harness:
    """One receiver, one event loop, one client for a whole property run; collects any error
    the exporter logs."""

    def __init__(self) -> None:
        self.state = OtlpState(LIMITS, SlowQueryLimits(max_fingerprints=20))
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=otlp_app(self.state))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://otlp")
        self.errors: list[logging.LogRecord] = []
        self.handler = _Collect(self.errors)
        logging.getLogger("exporter").addHandler(self.handler)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        response = self.loop.run_until_complete(
            self.client.post(path, content=body, headers=headers)
        )
        assert response.status_code in (200, 400, 413, 415), response.status_code
        assert not self.errors, self.errors[0].getMessage()
        return response

    def check_output(self) -> None:
        text = render(self.state.collect()).decode()
        list(text_string_to_metric_families(text))
        assert self.state.store.series_count <= LIMITS.max_series_total
        assert len(self.state.store.families) <= LIMITS.max_metrics
        assert len(self.state.slow_queries) <= 20

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()
        logging.getLogger("exporter").removeHandler(self.handler)


def _sdk_metrics() -> bytes:
    def record(meter: Meter) -> None:
        meter.create_histogram("db.client.operation.duration", unit="s").record(
            0.2, {"db.system.name": "postgresql", "db.operation.name": "SELECT"}
        )
        meter.create_histogram("latency", unit="ms").record(12.5, {"route": "/trades"})
        meter.create_counter("jobs", unit="{job}").add(3, {"queue": "default"})
        meter.create_up_down_counter("db.client.connection.count").add(2, {"state": "idle"})

    view = View(instrument_name="latency", aggregation=ExponentialBucketHistogramAggregation())
    request, _ = metrics_request(record, views=[view])
    return request.SerializeToString()


def _sdk_traces() -> bytes:
    span = Span(
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        name="SELECT",
        start_time_unix_nano=1,
        end_time_unix_nano=2_000_000_000,
        attributes=[
            KeyValue(
                key="db.query.text", value=AnyValue(string_value="SELECT * FROM t WHERE a = 'x'")
            ),
            KeyValue(key="db.operation.name", value=AnyValue(string_value="SELECT")),
            KeyValue(key="tradesense.slow_query", value=AnyValue(bool_value=True)),
        ],
    )
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    ).SerializeToString()


SEEDS = {"/v1/metrics": _sdk_metrics(), "/v1/traces": _sdk_traces()}


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            data.extend(draw(st.binary(min_size=1, max_size=8)))
            continue
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "repeat"]))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[i:]
        else:
            data[i:i] = data[i : i + draw(st.integers(1, 64))]
    return bytes(data)


def test_mutated_protobuf_bodies() -> None:
    harness = Harness()

    @settings(FUZZ, max_examples=2000)
    @given(path=st.sampled_from(sorted(SEEDS)), data=st.data())
    def run(path: str, data: st.DataObject) -> None:
        body = data.draw(mutated(SEEDS[path]))
        response = harness.post(path, body, PB)
        if response.status_code == 200 and path == "/v1/metrics":
            ExportMetricsServiceResponse.FromString(response.content)

    try:
        run()
        harness.check_output()
    finally:
        harness.close()


# Well-formed OTLP messages with hostile content.
KEYS = st.text(alphabet='ab.-_:9 é\n"\\{}=', max_size=8)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)
SMALL_COUNTS = st.lists(st.integers(0, 5), max_size=6)


def _any_value(depth: int = 2) -> st.SearchStrategy[AnyValue]:
    scalars = st.one_of(
        KEYS.map(lambda s: AnyValue(string_value=s)),
        st.booleans().map(lambda b: AnyValue(bool_value=b)),
        INT64.map(lambda i: AnyValue(int_value=i)),
        FLOATS.map(lambda f: AnyValue(double_value=f)),
        st.binary(max_size=4).map(lambda b: AnyValue(bytes_value=b)),
        st.just(AnyValue()),
    )
    if depth == 0:
        return scalars
    inner = _any_value(depth - 1)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=3).map(lambda v: AnyValue(array_value=ArrayValue(values=v))),
        st.lists(st.tuples(KEYS, inner), max_size=3).map(
            lambda kv: AnyValue(
                kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kv])
            )
        ),
    )


ATTRS = st.lists(
    st.builds(
        KeyValue,
        key=st.one_of(KEYS, st.sampled_from(["le", "service.name", "quantile"])),
        value=_any_value(),
    ),
    max_size=4,
)
COMMON = {
    "attributes": ATTRS,
    "time_unix_nano": st.one_of(st.just(0), UINT64),
    "flags": st.sampled_from([0, 0, 0, 1]),
}


def _number_points() -> st.SearchStrategy[list[pb.NumberDataPoint]]:
    value: st.SearchStrategy[dict[str, float]] = st.one_of(
        INT64.map(lambda i: {"as_int": i}), FLOATS.map(lambda f: {"as_double": f}), st.just({})
    )
    return st.lists(
        st.builds(lambda v, **kw: pb.NumberDataPoint(**v, **kw), value, **COMMON), max_size=4
    )


def _histogram_point(**kw: Any) -> pb.HistogramDataPoint:
    return pb.HistogramDataPoint(**{k: v for k, v in kw.items() if v is not None})


def _exp_point(pos: tuple[int, list[int]], neg: tuple[int, list[int]], **kw: Any) -> Any:
    point = pb.ExponentialHistogramDataPoint(**{k: v for k, v in kw.items() if v is not None})
    point.positive.offset, point.negative.offset = pos[0], neg[0]
    point.positive.bucket_counts.extend(pos[1])
    point.negative.bucket_counts.extend(neg[1])
    point.count = point.zero_count + sum(pos[1]) + sum(neg[1]) + kw.pop("skew", 0)
    return point


TEMPORALITY = st.sampled_from([0, 1, 2, 2, 5])
BUCKETS = st.tuples(st.integers(-(2**31), 2**31 - 1), SMALL_COUNTS)


def _metric_data() -> st.SearchStrategy[dict[str, Any]]:
    histogram = st.builds(
        _histogram_point,
        count=st.integers(0, 12),
        bucket_counts=SMALL_COUNTS,
        explicit_bounds=st.lists(st.one_of(FLOATS, st.sampled_from([0.1, 1.0, 10.0])), max_size=5),
        sum=st.one_of(st.none(), FLOATS),
        min=st.one_of(st.none(), FLOATS),
        **COMMON,
    )
    exp = st.builds(
        _exp_point,
        BUCKETS,
        BUCKETS,
        scale=st.integers(-12, 22),
        zero_count=st.integers(0, 3),
        zero_threshold=st.one_of(st.just(0.0), FLOATS),
        sum=st.one_of(st.none(), FLOATS),
        **COMMON,
    )
    quantile = st.builds(pb.SummaryDataPoint.ValueAtQuantile, quantile=FLOATS, value=FLOATS)
    summary = st.builds(
        pb.SummaryDataPoint,
        count=UINT64,
        sum=FLOATS,
        quantile_values=st.lists(quantile, max_size=3),
        **COMMON,
    )
    return st.one_of(
        _number_points().map(lambda p: {"gauge": pb.Gauge(data_points=p)}),
        st.builds(
            lambda p, t, m: {
                "sum": pb.Sum(data_points=p, aggregation_temporality=t, is_monotonic=m)
            },
            _number_points(),
            TEMPORALITY,
            st.booleans(),
        ),
        st.builds(
            lambda p, t: {"histogram": pb.Histogram(data_points=p, aggregation_temporality=t)},
            st.lists(histogram, max_size=3),
            TEMPORALITY,
        ),
        st.builds(
            lambda p, t: {
                "exponential_histogram": pb.ExponentialHistogram(
                    data_points=p, aggregation_temporality=t
                )
            },
            st.lists(exp, max_size=3),
            TEMPORALITY,
        ),
        st.lists(summary, max_size=2).map(lambda p: {"summary": pb.Summary(data_points=p)}),
    )


METRIC = st.builds(
    lambda name, unit, data, meta: pb.Metric(name=name, unit=unit, metadata=meta, **data),
    st.one_of(KEYS, st.sampled_from(["db.client.operation.duration", "jobs", "target.info"])),
    st.one_of(KEYS, st.sampled_from(["s", "ms", "By", "1", "{x}", "By/s", "/"])),
    _metric_data(),
    st.lists(
        st.builds(
            KeyValue,
            key=st.just("prometheus.type"),
            value=st.just(AnyValue(string_value="unknown")),
        ),
        max_size=1,
    ),
)
REQUEST = st.builds(
    lambda resources: ExportMetricsServiceRequest(resource_metrics=resources),
    st.lists(
        st.builds(
            lambda attrs, scope, metrics: pb.ResourceMetrics(
                resource=Resource(attributes=attrs),
                scope_metrics=[pb.ScopeMetrics(scope=scope, metrics=metrics)],
            ),
            ATTRS,
            st.builds(InstrumentationScope, name=KEYS, version=KEYS),
            st.lists(METRIC, max_size=4),
        ),
        max_size=2,
    ),
)


def test_well_formed_messages_with_hostile_content() -> None:
    harness = Harness()

    @settings(FUZZ, max_examples=300)
    @given(request=REQUEST)
    def run(request: ExportMetricsServiceRequest) -> None:
        response = harness.post("/v1/metrics", request.SerializeToString(), PB)
        assert response.status_code == 200
        ExportMetricsServiceResponse.FromString(response.content)
        harness.check_output()

    try:
        run()
    finally:
        harness.close()


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=12,
)
OTLP_KEYS = [
    "resourceMetrics",
    "resourceSpans",
    "scopeMetrics",
    "scopeSpans",
    "metrics",
    "spans",
    "dataPoints",
    "traceId",
    "spanId",
    "attributes",
    "gauge",
    "sum",
    "histogram",
    "asInt",
    "asDouble",
    "bucketCounts",
    "explicitBounds",
    "aggregationTemporality",
]


def _json_seed(path: str) -> dict[str, Any]:
    if path == "/v1/traces":
        return {
            "resourceSpans": [
                {
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                    "spanId": "eee19b7ec3c1b174",
                                    "startTimeUnixNano": "1",
                                    "endTimeUnixNano": "2000000000",
                                    "kind": 3,
                                    "attributes": [
                                        {
                                            "key": "db.statement",
                                            "value": {"stringValue": "SELECT 1"},
                                        }
                                    ],
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    return {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "queue.depth",
                                "unit": "{item}",
                                "histogram": {
                                    "aggregationTemporality": 1,
                                    "dataPoints": [
                                        {
                                            "count": "3",
                                            "bucketCounts": ["1", "2"],
                                            "explicitBounds": [0.5],
                                            "exemplars": [{"traceId": "zz"}],
                                            "attributes": [
                                                {"key": "q", "value": {"stringValue": "a"}}
                                            ],
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


def _graft(doc: Any, path: list[int], key: str, value: Any) -> Any:
    """Replace or add `key` in the dict reached by following `path` through nested values."""
    node = doc
    for step in path:
        children = (
            list(node.values())
            if isinstance(node, dict)
            else node
            if isinstance(node, list)
            else []
        )
        children = [c for c in children if isinstance(c, (dict, list))]
        if not children:
            break
        node = children[step % len(children)]
    if isinstance(node, dict):
        node[key] = value
    elif isinstance(node, list) and node:
        node[path[-1] % len(node) if path else 0] = value
    return doc


def test_mutated_json_bodies() -> None:
    harness = Harness()

    @settings(FUZZ, max_examples=1000)
    @given(
        path=st.sampled_from(sorted(SEEDS)),
        grafts=st.lists(
            st.tuples(
                st.lists(st.integers(0, 5), max_size=8), st.sampled_from(OTLP_KEYS), JSON_VALUES
            ),
            max_size=3,
        ),
        data=st.data(),
    )
    def run(path: str, grafts: list[tuple[list[int], str, Any]], data: st.DataObject) -> None:
        doc = _json_seed(path)
        for steps, key, value in grafts:
            doc = _graft(doc, steps, key, value)
        body = json.dumps(doc).encode()
        if data.draw(st.booleans()):
            body = data.draw(mutated(body))
        harness.post(path, body, JS)

    try:
        run()
        harness.check_output()
    finally:
        harness.close()


def _bomb(decompressed: int, encoding: str) -> bytes:
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = bytes(1 << 20)
    whole, rest = divmod(decompressed, 1 << 20)
    parts = [compressor.compress(chunk) for _ in range(whole)]
    return b"".join([*parts, compressor.compress(bytes(rest)), compressor.flush()])


def test_compression_bombs_and_garbage_never_inflate_past_the_cap() -> None:
    harness = Harness()
    bombs = {
        (size, enc): _bomb(size, enc)
        for size in (300_000, 4 << 20, 32 << 20)
        for enc in ("gzip", "deflate")
    }

    @settings(FUZZ, max_examples=120)
    @given(
        which=st.sampled_from(sorted(bombs)),
        path=st.sampled_from(sorted(SEEDS)),
        tail=st.binary(max_size=32),
        garbage=st.booleans(),
        data=st.data(),
    )
    def run(
        which: tuple[int, str], path: str, tail: bytes, garbage: bool, data: st.DataObject
    ) -> None:
        _, encoding = which
        body = bombs[which] + tail
        if garbage:
            body = data.draw(mutated(body[:2048]))
        tracemalloc.start()
        try:
            response = harness.post(path, body, {**PB, "content-encoding": encoding})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert response.status_code in (400, 413)
        assert peak < 4 * LIMITS.max_body_bytes + (1 << 20)

    try:
        run()
        good = gzip.compress(SEEDS["/v1/metrics"])
        assert (
            harness.post("/v1/metrics", good, {**PB, "content-encoding": "gzip"}).status_code == 200
        )
        harness.check_output()
    finally:
        harness.close()
