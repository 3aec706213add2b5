import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.metrics import Meter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from exporter.exposition import render
from exporter.limits import OtlpLimits
from exporter.otlp import OtlpState, otlp_app

from .sdk import metrics_request

PB = {"content-type": "application/x-protobuf"}
JS = {"content-type": "application/json"}


def _counter_body(points: int = 1) -> bytes:
    def record(meter: Meter) -> None:
        counter = meter.create_counter("orders", unit="{order}")
        for i in range(points):
            counter.add(1, {"shard": str(i)})

    request, _ = metrics_request(record)
    return request.SerializeToString()


async def _post(
    state: OtlpState, path: str, content: object, headers: dict[str, str]
) -> httpx.Response:
    transport = httpx.ASGITransport(app=otlp_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://otlp") as client:
        return await client.post(path, content=content, headers=headers)  # type: ignore[arg-type]


def post(state: OtlpState, path: str, content: object, headers: dict[str, str]) -> httpx.Response:
    return asyncio.run(_post(state, path, content, headers))


def _text(state: OtlpState) -> str:
    return render(state.collect()).decode()


def test_protobuf_metrics_are_accepted() -> None:
    state = OtlpState()
    response = post(state, "/v1/metrics", _counter_body(), PB)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    assert not ExportMetricsServiceResponse.FromString(response.content).HasField("partial_success")
    text = _text(state)
    assert 'orders_total{otel_scope_name="exporter.instrument"' in text
    assert 'tradesense_exporter_otlp_requests_total{signal="metrics"} 1\n' in text
    assert "tradesense_exporter_otlp_data_points_accepted_total 1\n" in text


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies(encoding: str) -> None:
    compress = gzip.compress if encoding == "gzip" else zlib.compress
    state = OtlpState()
    response = post(
        state, "/v1/metrics", compress(_counter_body()), {**PB, "content-encoding": encoding}
    )
    assert response.status_code == 200
    assert "orders_total{" in _text(state)


def test_partial_success_reports_what_the_series_limit_dropped() -> None:
    state = OtlpState(OtlpLimits(max_series_per_metric=2))
    response = post(state, "/v1/metrics", _counter_body(5), PB)
    assert response.status_code == 200
    partial = ExportMetricsServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_data_points == 3
    assert "series limit" in partial.error_message
    assert 'tradesense_exporter_otlp_data_points_dropped_total{reason="series_limit"} 3' in _text(
        state
    )


def test_json_metrics_and_json_partial_success() -> None:
    doc = {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]
                },
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "queue.depth",
                                "unit": "{item}",
                                "gauge": {
                                    "dataPoints": [
                                        {
                                            "asDouble": 3,
                                            "attributes": [
                                                {"key": "q", "value": {"stringValue": "a"}}
                                            ],
                                        },
                                        {
                                            "asDouble": 4,
                                            "attributes": [
                                                {"key": "q", "value": {"stringValue": "b"}}
                                            ],
                                        },
                                    ]
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    }
    state = OtlpState(OtlpLimits(max_series_per_metric=1))
    response = post(state, "/v1/metrics", json.dumps(doc).encode(), JS)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["partialSuccess"]["rejectedDataPoints"] == "1"
    assert 'queue_depth{q="a",service_instance_id="sha256-' in _text(state)


def test_traces_feed_the_slow_query_store() -> None:
    doc = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "SELECT",
                                "kind": 3,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000002000000000",
                                "attributes": [
                                    {
                                        "key": "db.query.text",
                                        "value": {"stringValue": "SELECT * FROM t WHERE k = 'x1'"},
                                    }
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    state = OtlpState()
    response = post(state, "/v1/traces", json.dumps(doc).encode(), JS)
    assert response.status_code == 200 and response.json() == {}
    (entry,) = state.slow_queries.top(5)
    assert entry.fingerprint == "SELECT * FROM t WHERE k = ?"
    assert entry.example_trace_id == "5b8efff798038103d269b633813fc60c"
    response = post(state, "/v1/traces", ExportTraceServiceRequest().SerializeToString(), PB)
    assert response.status_code == 200
    assert ExportTraceServiceResponse.FromString(response.content) == ExportTraceServiceResponse()
    text = _text(state)
    assert "tradesense_exporter_otlp_spans_accepted_total 1\n" in text
    assert (
        'tradesense_slow_queries_total{service_name="unknown_service",db_operation_name="SELECT",'
        'db_collection_name=""} 1' in text
    )


def _status(response: httpx.Response) -> Status:
    if response.headers["content-type"] == "application/json":
        doc = response.json()
        return Status(code=doc["code"], message=doc["message"])
    return Status.FromString(response.content)


@pytest.mark.parametrize(
    ("content", "headers", "status", "reason"),
    [
        (b"\x0a\xff\xff\xff", PB, 400, "malformed"),
        (b"{not json", JS, 400, "malformed"),
        (b"\x1f\x8b garbage", {**PB, "content-encoding": "gzip"}, 400, "malformed"),
        (b"x" * 2048, PB, 413, "too_large"),
        (gzip.compress(bytes(1 << 20)), {**PB, "content-encoding": "gzip"}, 413, "too_large"),
        (b"", {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        (b"", {}, 415, "unsupported_media_type"),
        (b"", {**PB, "content-encoding": "br"}, 415, "unsupported_media_type"),
    ],
)
def test_rejections_are_answered_and_counted(
    content: bytes, headers: dict[str, str], status: int, reason: str
) -> None:
    state = OtlpState(OtlpLimits(max_body_bytes=1024))
    response = post(state, "/v1/traces", content, headers)
    assert response.status_code == status
    assert _status(response).message
    text = _text(state)
    assert f'requests_rejected_total{{signal="traces",reason="{reason}"}} 1\n' in text


def test_a_streamed_body_is_cut_off_at_the_cap() -> None:
    chunks_sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        for _ in range(1000):
            chunks_sent += 1
            yield b"x" * 512

    state = OtlpState(OtlpLimits(max_body_bytes=4096))
    response = post(state, "/v1/metrics", body(), PB)
    assert response.status_code == 413
    assert chunks_sent < 20


def test_other_methods_are_refused() -> None:
    state = OtlpState()

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=otlp_app(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://otlp") as client:
            return await client.get("/v1/metrics")

    response = asyncio.run(go())
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert 'requests_rejected_total{signal="metrics",reason="method_not_allowed"} 1' in _text(state)


def _held_body(first: bytes, release: asyncio.Event) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        yield first
        await release.wait()
        yield b""

    return body()


def test_bodies_past_the_inflight_byte_budget_get_503_with_retry_after() -> None:
    state = OtlpState(OtlpLimits(max_inflight_requests=1, max_body_bytes=1000))
    release = asyncio.Event()

    async def go() -> tuple[httpx.Response, httpx.Response]:
        first = asyncio.create_task(
            _post(state, "/v1/metrics", _held_body(b"x" * 800, release), PB)
        )
        while state.inflight_bytes == 0:
            await asyncio.sleep(0.001)
        second = await _post(state, "/v1/metrics", b"y" * 800, PB)
        release.set()
        return await first, second

    first, second = asyncio.run(go())
    assert first.status_code != 503  # it was read whole (unknown fields, so accepted)
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
    assert (state.inflight, state.inflight_bytes, state.applying) == (0, 0, 0)
    assert 'requests_rejected_total{signal="metrics",reason="overloaded"} 1' in _text(state)


def test_trickling_bodies_hold_no_slot_a_real_push_needs() -> None:
    state = OtlpState(OtlpLimits(max_inflight_requests=2))
    release = asyncio.Event()

    async def go() -> tuple[int, httpx.Response]:
        slow = [
            asyncio.create_task(_post(state, "/v1/metrics", _held_body(b"\x0a", release), PB))
            for _ in range(5)
        ]
        while state.inflight < 5:
            await asyncio.sleep(0.001)
        in_flight = state.inflight
        real = await _post(state, "/v1/metrics", _counter_body(), PB)
        release.set()
        await asyncio.gather(*slow)
        return in_flight, real

    in_flight, real = asyncio.run(go())
    assert in_flight == 5 and real.status_code == 200
    assert state.inflight == 0


def test_a_body_that_does_not_arrive_in_time_gets_408_and_frees_its_slot() -> None:
    state = OtlpState(OtlpLimits(body_timeout_seconds=0.2))
    release = asyncio.Event()

    async def go() -> httpx.Response:
        response = await _post(state, "/v1/metrics", _held_body(b"\x0a", release), PB)
        release.set()
        return response

    response = asyncio.run(go())
    assert response.status_code == 408
    assert (state.inflight, state.inflight_bytes) == (0, 0)
    assert 'requests_rejected_total{signal="metrics",reason="timeout"} 1' in _text(state)


def test_too_many_bodies_being_applied_get_503() -> None:
    state = OtlpState(OtlpLimits(max_inflight_requests=1))
    state.applying = 1
    response = post(state, "/v1/metrics", _counter_body(), PB)
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    state.applying = 0
    assert post(state, "/v1/metrics", _counter_body(), PB).status_code == 200
