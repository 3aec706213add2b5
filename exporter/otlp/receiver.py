"""The OTLP/HTTP listener: `POST /v1/metrics` and `POST /v1/traces`.

Responses follow the OTLP/HTTP specification: 200 with an Export*ServiceResponse (carrying
`partial_success` when data points were dropped), 400 for a body that does not decode, 413 past
the size cap (on the bytes received and on the decompressed size, checked as the body streams
in), 408 when the body does not arrive within the body timeout, 415 for a content type other
than protobuf or JSON, 503 with `Retry-After` when too many requests are in flight, 405 for
other methods. Error bodies are a `google.rpc.Status`, encoded like the request (JSON when the
request was JSON or its type unknown, else protobuf).

A request is in flight from its first body byte. While its body arrives it holds only the bytes
it has sent, against a budget of `max_inflight_requests * max_body_bytes` for all of them, so
connections that trickle a body hold no slot a real push needs; once complete, at most
`max_inflight_requests` bodies are decoded and applied at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

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
    parse_metrics,
    parse_traces,
)
from exporter.otlp.state import OtlpState
from exporter.otlp.translate import MetricsOutcome

log = logging.getLogger(__name__)

INLINE_MAX_BYTES = 256 * 1024
RETRY_AFTER_SECONDS = "1"
_GRPC_INVALID_ARGUMENT = 3
_GRPC_DEADLINE_EXCEEDED = 4
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


class _Overloaded(Exception):
    pass


class _Arrival:
    """One request's share of the in-flight accounting, from its first body byte."""

    def __init__(self, state: OtlpState) -> None:
        self.state = state
        self.started = False
        self.held = 0

    def grow(self, size: int) -> None:
        state = self.state
        if not self.started:
            self.started = True
            state.inflight += 1
        budget = state.limits.max_inflight_requests * state.limits.max_body_bytes
        if size > self.held and state.inflight_bytes + size - self.held > budget:
            raise _Overloaded
        state.inflight_bytes += size - self.held
        self.held = size

    def release_bytes(self) -> None:
        self.state.inflight_bytes -= self.held
        self.held = 0

    def end(self) -> None:
        self.release_bytes()
        if self.started:
            self.state.inflight -= 1


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
        arrival = _Arrival(self.state)
        try:
            return await self._export(request, arrival)
        finally:
            arrival.end()

    def overloaded(self, request: Request) -> Response:
        return self.reject(
            request,
            "overloaded",
            503,
            _GRPC_UNAVAILABLE,
            "too many requests in flight; retry later",
            {"Retry-After": RETRY_AFTER_SECONDS},
        )

    async def _export(self, request: Request, arrival: _Arrival) -> Response:
        try:
            fmt = body_format(request.headers.get("content-type"))
            inflater = Inflater(
                request.headers.get("content-encoding"), self.state.limits.max_body_bytes
            )
        except UnsupportedMediaType as exc:
            return self.reject(
                request, "unsupported_media_type", 415, _GRPC_INVALID_ARGUMENT, str(exc)
            )
        state = self.state
        try:
            try:
                async with asyncio.timeout(state.limits.body_timeout_seconds):
                    body = await self._read(request, inflater, arrival)
            except TimeoutError:
                return self.reject(
                    request,
                    "timeout",
                    408,
                    _GRPC_DEADLINE_EXCEEDED,
                    "request body did not arrive within the body timeout",
                )
            arrival.release_bytes()
            if state.applying >= state.limits.max_inflight_requests:
                return self.overloaded(request)
            state.applying += 1
            try:
                return await self._ingest(fmt, body)
            finally:
                state.applying -= 1
        except _Overloaded:
            return self.overloaded(request)
        except BodyTooLarge as exc:
            return self.reject(request, "too_large", 413, _GRPC_RESOURCE_EXHAUSTED, str(exc))
        except (MalformedBody, ClientDisconnect) as exc:
            return self.reject(request, "malformed", 400, _GRPC_INVALID_ARGUMENT, str(exc))

    async def _read(self, request: Request, inflater: Inflater, arrival: _Arrival) -> bytes:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.state.limits.max_body_bytes:
            raise BodyTooLarge("request body is larger than the configured limit")
        async for chunk in request.stream():
            if chunk:
                inflater.feed(chunk)
                arrival.grow(max(inflater.size, 1))
        return inflater.finish()

    async def _ingest(self, fmt: Format, body: bytes) -> Response:
        counters = self.counters
        if self.signal == "metrics":
            outcome = await self._run(parse_metrics, self.state.apply_metrics, body, fmt)
            counters.points_accepted += outcome.accepted
            for reason in counters.points_dropped:
                counters.points_dropped[reason] += getattr(outcome, reason)
            counters.attributes_dropped += outcome.attributes_dropped
            return _metrics_response(fmt, outcome)
        counters.spans_accepted += await self._run(parse_traces, self.state.apply_traces, body, fmt)
        return _traces_response(fmt)

    async def _run(
        self,
        parse: Callable[[bytes, Format], Any],
        apply: Callable[[Any, bool], _T | None],
        body: bytes,
        fmt: Format,
    ) -> _T:
        """Small bodies are decoded on the event loop and applied there when the store is free;
        large ones, and any that would wait for the store (held by a /metrics collection), go
        to a worker thread."""
        try:
            if len(body) > INLINE_MAX_BYTES:
                result = await run_in_threadpool(lambda: apply(parse(body, fmt), True))
            else:
                request = parse(body, fmt)
                result = apply(request, False)
                if result is None:
                    result = await run_in_threadpool(apply, request, True)
            assert result is not None
            return result
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
