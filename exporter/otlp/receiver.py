"""The OTLP/HTTP listener: `POST /v1/metrics` and `POST /v1/traces`.

Responses follow the OTLP/HTTP specification: 200 with an Export*ServiceResponse (carrying
`partial_success` when data points were dropped), 400 for a body that does not decode, 413 past
the size cap (on the bytes received and on the decompressed size, checked as the body streams
in), 415 for a content type other than protobuf or JSON, 503 with `Retry-After` when too many
requests are in flight, 405 for other methods. Error bodies are a `google.rpc.Status`, encoded
like the request (JSON when the request was JSON or its type unknown, else protobuf).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TypeVar

from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from exporter.otlp.decode import (
    JSON,
    PROTOBUF,
    BodyTooLarge,
    Format,
    Inflater,
    MalformedBody,
    UnsupportedMediaType,
    body_format,
)
from exporter.otlp.state import OtlpState
from exporter.otlp.translate import MetricsOutcome

log = logging.getLogger(__name__)

INLINE_MAX_BYTES = 256 * 1024
RETRY_AFTER_SECONDS = "1"
_GRPC_INVALID_ARGUMENT = 3
_GRPC_RESOURCE_EXHAUSTED = 8
_GRPC_UNIMPLEMENTED = 12
_GRPC_UNAVAILABLE = 14

_T = TypeVar("_T")


def _wants_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media != PROTOBUF


def _status(
    request: Request,
    http_status: int,
    grpc_code: int,
    message: str,
    headers: dict[str, str] | None = None,
) -> Response:
    if _wants_json(request):
        body = json.dumps({"code": grpc_code, "message": message}).encode()
        return Response(body, http_status, headers, media_type=JSON)
    payload = Status(code=grpc_code, message=message).SerializeToString()
    return Response(payload, http_status, headers, media_type=PROTOBUF)


def _metrics_response(fmt: Format, outcome: MetricsOutcome) -> Response:
    if fmt == "json":
        doc: dict[str, object] = {}
        if outcome.dropped:
            doc["partialSuccess"] = {
                "rejectedDataPoints": str(outcome.dropped),
                "errorMessage": outcome.message(),
            }
        return Response(json.dumps(doc).encode(), 200, media_type=JSON)
    response = ExportMetricsServiceResponse()
    if outcome.dropped:
        response.partial_success.rejected_data_points = outcome.dropped
        response.partial_success.error_message = outcome.message()
    return Response(response.SerializeToString(), 200, media_type=PROTOBUF)


def _traces_response(fmt: Format) -> Response:
    if fmt == "json":
        return Response(b"{}", 200, media_type=JSON)
    return Response(ExportTraceServiceResponse().SerializeToString(), 200, media_type=PROTOBUF)


class _Receiver:
    def __init__(self, state: OtlpState, signal: str) -> None:
        self.state = state
        self.signal = signal
        self.counters = state.counters

    def reject(
        self,
        request: Request,
        reason: str,
        http_status: int,
        grpc_code: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> Response:
        self.counters.rejected[(self.signal, reason)] += 1
        log.debug("OTLP %s request rejected: %s", self.signal, reason)
        return _status(request, http_status, grpc_code, message, headers)

    async def handle(self, request: Request) -> Response:
        self.counters.requests[self.signal] += 1
        if request.method != "POST":
            return self.reject(
                request,
                "method_not_allowed",
                405,
                _GRPC_UNIMPLEMENTED,
                "only POST is supported",
                {"Allow": "POST"},
            )
        if self.state.inflight >= self.state.limits.max_inflight_requests:
            return self.reject(
                request,
                "overloaded",
                503,
                _GRPC_UNAVAILABLE,
                "too many requests in flight; retry later",
                {"Retry-After": RETRY_AFTER_SECONDS},
            )
        self.state.inflight += 1
        try:
            return await self._export(request)
        finally:
            self.state.inflight -= 1

    async def _export(self, request: Request) -> Response:
        try:
            fmt = body_format(request.headers.get("content-type"))
            inflater = Inflater(
                request.headers.get("content-encoding"), self.state.limits.max_body_bytes
            )
        except UnsupportedMediaType as exc:
            return self.reject(
                request, "unsupported_media_type", 415, _GRPC_INVALID_ARGUMENT, str(exc)
            )
        try:
            body = await self._read(request, inflater)
            return await self._ingest(fmt, body)
        except BodyTooLarge as exc:
            return self.reject(request, "too_large", 413, _GRPC_RESOURCE_EXHAUSTED, str(exc))
        except (MalformedBody, ClientDisconnect) as exc:
            return self.reject(request, "malformed", 400, _GRPC_INVALID_ARGUMENT, str(exc))

    async def _read(self, request: Request, inflater: Inflater) -> bytes:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.state.limits.max_body_bytes:
            raise BodyTooLarge("request body is larger than the configured limit")
        async for chunk in request.stream():
            inflater.feed(chunk)
        return inflater.finish()

    async def _ingest(self, fmt: Format, body: bytes) -> Response:
        if self.signal == "metrics":
            outcome = await self._run(self.state.ingest_metrics, body, fmt)
            self.counters.points_accepted += outcome.accepted
            self.counters.points_dropped["series_limit"] += outcome.series_limit
            self.counters.points_dropped["unsupported"] += outcome.unsupported
            return _metrics_response(fmt, outcome)
        self.counters.spans_accepted += await self._run(self.state.ingest_traces, body, fmt)
        return _traces_response(fmt)

    async def _run(self, ingest: Callable[[bytes, Format], _T], body: bytes, fmt: Format) -> _T:
        try:
            if len(body) > INLINE_MAX_BYTES:
                return await run_in_threadpool(ingest, body, fmt)
            return ingest(body, fmt)
        except MalformedBody:
            raise
        except Exception as exc:
            log.exception("OTLP %s body could not be applied", self.signal)
            raise MalformedBody("body could not be applied") from exc


def otlp_app(state: OtlpState) -> Starlette:
    methods = ["POST", "GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/v1/metrics", _Receiver(state, "metrics").handle, methods=methods),
            Route("/v1/traces", _Receiver(state, "traces").handle, methods=methods),
        ]
    )
