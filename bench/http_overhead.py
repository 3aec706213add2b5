"""Time per request added by HTTP server instrumentation on a trivial Starlette route: ours beside
starlette-exporter, prometheus-fastapi-instrumentator and opentelemetry-instrumentation-asgi, in
one run.

    .venv/bin/python bench/http_overhead.py [--rounds 100] [--requests 1000]
    .venv/bin/python bench/http_overhead.py --breakdown  # where our middleware's time goes
    .venv/bin/python bench/http_overhead.py --footprint  # ours on routes doing more work

Each app is driven in process: `await app(scope, receive, send)` with a fixed synthetic `http`
scope (GET /trades/42, copied per request because the router writes into it), a `receive` that
returns an empty body and a `send` that drops the messages. No server, no network, so what differs
between variants is the middleware. The route, `/trades/{trade_id}`, is an `async` endpoint
returning `PlainTextResponse("ok")`.

Variants, each its own app: Starlette without instrumentation (the baseline), with ours
(`instrument(app=app, metric_exporter=...)`: our MeterProvider, local aggregation), with
starlette-exporter's `PrometheusMiddleware`, with OpenTelemetry's ASGI middleware recording
metrics only (an SDK MeterProvider, a no-op tracer provider) and with tracing as well (an SDK
TracerProvider, always sampled, a BatchSpanProcessor whose exporter discards); FastAPI without
instrumentation (the baseline of its family), with prometheus-fastapi-instrumentator and with ours.
Every exporter discards what it gets (metrics every 10 s, as ours); nothing leaves the process.

In each round every variant serves one batch of requests, in an order shuffled per round. The
garbage collector runs once per round, outside the timed batches, and is off during them. Per
batch the process CPU time (all threads, so the SDK's background threads count; time given to
other processes does not) and the wall time per request are taken. "added" is the median over
rounds of (variant's batch - the same round's batch of its family's baseline); the spread is the
25th to 75th percentile of those differences. After the run every instrumentation's own count of
requests is checked against the number of requests sent.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import gc
import inspect
import json
import os
import random
import statistics
import time
import timeit
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette_exporter import PrometheusMiddleware

from exporter import semconv
from exporter.instrument import instrument
from exporter.instrument.http_asgi import HttpMetricsMiddleware, _Status
from exporter.instrument.http_server import scheme_of

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/trades/42",
    "raw_path": b"/trades/42",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench/1.0"), (b"accept", b"*/*")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}
REQUEST = {"type": "http.request", "body": b"", "more_body": False}
EXPORT_MILLIS = 10_000
STARLETTE_BASE, FASTAPI_BASE = "Starlette, no instrumentation", "FastAPI, no instrumentation"
OURS, OURS_FASTAPI = "exporter.instrument", "exporter.instrument (FastAPI)"


async def receive() -> dict[str, Any]:
    return REQUEST


async def discard(message: Any) -> None:
    pass


async def bare_asgi(scope: Scope, receive: Any, send: Any) -> None:
    pass


class KeepMetrics(MetricExporter):
    """Discards, but keeps the last export so the run can check what was counted."""

    def __init__(self) -> None:
        super().__init__()
        self.last: Any = None

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
        self.last = metrics_data
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass

    def count(self, *names: str) -> int:
        """Sum of the `count` of the histogram points of `names` in the last export."""
        total = 0
        for resource in getattr(self.last, "resource_metrics", ()):
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name in names:
                        total += sum(p.count for p in metric.data.data_points)
        return total


class CountSpans(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0
        self.server_spans = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.spans += len(spans)
        self.server_spans += sum(1 for s in spans if s.kind is trace.SpanKind.SERVER)
        return SpanExportResult.SUCCESS


async def trade(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/trades/{trade_id}", trade)])


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/trades/{trade_id}", response_class=PlainTextResponse)
    async def fastapi_trade(trade_id: str) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return app


@dataclass
class Variant:
    name: str
    base: str
    app: Any
    counted: Callable[[], int] | None = None
    samples: list[tuple[float, float]] = field(default_factory=list)


def variants() -> dict[str, Variant]:
    """Every variant, each on its own app; `counted` reads the instrumentation's request count."""
    found: list[Variant] = []

    found.append(Variant(STARLETTE_BASE, STARLETTE_BASE, starlette_app()))

    ours_app, ours_export = starlette_app(), KeepMetrics()
    ours = instrument(app=ours_app, metric_exporter=ours_export, span_exporter=CountSpans())
    found.append(Variant(OURS, STARLETTE_BASE, ours_app,
                         lambda: ours.force_flush() and ours_export.count(
                             "http.server.request.duration")))

    exporter_app = starlette_app()
    exporter_app.add_middleware(PrometheusMiddleware)
    found.append(Variant("starlette-exporter", STARLETTE_BASE, exporter_app,
                         lambda: int(_sample_sum(REGISTRY, "starlette_requests_total"))))

    for tracing in (False, True):
        otel_app, otel_export = starlette_app(), KeepMetrics()
        meters = MeterProvider(
            metric_readers=[PeriodicExportingMetricReader(otel_export, EXPORT_MILLIS)]
        )
        tracer: trace.TracerProvider = trace.NoOpTracerProvider()
        spans = CountSpans()
        if tracing:
            tracer = TracerProvider()
            tracer.add_span_processor(BatchSpanProcessor(spans))
        otel_app.add_middleware(OpenTelemetryMiddleware, meter_provider=meters,
                                tracer_provider=tracer)

        def otel_counted(meters: MeterProvider = meters, export: KeepMetrics = otel_export,
                         tracer: Any = tracer, spans: CountSpans = spans,
                         tracing: bool = tracing) -> int:
            meters.force_flush()
            counted = export.count("http.server.duration", "http.server.request.duration")
            if tracing:
                tracer.force_flush()
                if spans.server_spans != counted:
                    raise SystemExit(f"{spans.server_spans} server spans, {counted} requests")
            return counted

        name = "otel-instrumentation-asgi " + ("metrics + tracing" if tracing else "metrics only")
        found.append(Variant(name, STARLETTE_BASE, otel_app, otel_counted))

    found.append(Variant(FASTAPI_BASE, FASTAPI_BASE, fastapi_app()))

    pfi_app, pfi_registry = fastapi_app(), CollectorRegistry()
    Instrumentator(registry=pfi_registry).instrument(pfi_app)
    found.append(Variant("prometheus-fastapi-instrumentator", FASTAPI_BASE, pfi_app,
                         lambda: int(_sample_sum(pfi_registry, "http_requests_total"))))

    ours_fastapi_app, ours_fastapi_export = fastapi_app(), KeepMetrics()
    ours_fastapi = instrument(app=ours_fastapi_app, metric_exporter=ours_fastapi_export,
                              span_exporter=CountSpans())
    found.append(Variant(OURS_FASTAPI, FASTAPI_BASE, ours_fastapi_app,
                         lambda: ours_fastapi.force_flush() and ours_fastapi_export.count(
                             "http.server.request.duration")))
    return {v.name: v for v in found}


def _sample_sum(registry: CollectorRegistry, sample_name: str) -> float:
    return sum(
        s.value for family in registry.collect() for s in family.samples if s.name == sample_name
    )


async def drive(app: ASGIApp, requests: int) -> None:
    scope, receive_, send_ = SCOPE, receive, discard
    for _ in range(requests):
        await app(dict(scope), receive_, send_)


async def check(app: ASGIApp) -> None:
    """One request with a recording `send`: the route answers 200 "ok"."""
    sent: list[Any] = []

    async def keep(message: Any) -> None:
        sent.append(message)

    await app(dict(SCOPE), receive, keep)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if (status, body) != (200, b"ok"):
        raise SystemExit(f"unexpected response {status} {body!r}")


def batch(loop: asyncio.AbstractEventLoop, app: ASGIApp, requests: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per request."""
    cpu, wall = time.process_time(), time.perf_counter()
    loop.run_until_complete(drive(app, requests))
    return (time.process_time() - cpu) / requests, (time.perf_counter() - wall) / requests


def run(found: dict[str, Variant], rounds: int, requests: int) -> tuple[dict[str, Variant], int]:
    loop = asyncio.new_event_loop()
    sent = 0
    for variant in found.values():
        loop.run_until_complete(check(variant.app))
        batch(loop, variant.app, requests)  # warm up
    sent += 1 + requests
    order = list(found)
    shuffle = random.Random(7).shuffle
    try:
        for _ in range(rounds):
            shuffle(order)
            gc.collect()
            gc.disable()
            for name in order:
                found[name].samples.append(batch(loop, found[name].app, requests))
            gc.enable()
            sent += requests
    finally:
        gc.enable()
    loop.close()
    return found, sent


def quantiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


def report(found: dict[str, Variant], sent: int, rounds: int, requests: int) -> None:
    print(f"{rounds} rounds x {requests} requests per variant; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    mode = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "") or "default (old names)"
    print(f"OTEL_SEMCONV_STABILITY_OPT_IN: {mode}")
    added: dict[str, float] = {}
    header = (f"{'variant':42} {'cpu us':>7} {'added':>7} {'p25..p75 added':>16} "
              f"{'wall us':>8} {'added':>7}")
    print(header)
    for variant in found.values():
        base = found[variant.base].samples
        cpu = statistics.median(c for c, _ in variant.samples)
        wall = statistics.median(w for _, w in variant.samples)
        diffs = [c - b for (c, _), (b, _) in zip(variant.samples, base, strict=True)]
        wall_diffs = [w - b for (_, w), (_, b) in zip(variant.samples, base, strict=True)]
        low, mid, high = quantiles(diffs)
        added[variant.name] = mid
        spread = f"{low * 1e6:.2f}..{high * 1e6:.2f}"
        print(f"{variant.name:42} {cpu * 1e6:7.2f} {mid * 1e6:7.2f} {spread:>16} "
              f"{wall * 1e6:8.2f} {statistics.median(wall_diffs) * 1e6:7.2f}")
    print("ratio of added time, peer / ours (same framework):")
    for variant in found.values():
        if variant.name in (STARLETTE_BASE, FASTAPI_BASE, OURS, OURS_FASTAPI):
            continue
        ours = added[OURS if variant.base == STARLETTE_BASE else OURS_FASTAPI]
        ratio = f"{added[variant.name] / ours:.1f}x" if ours > 0 else "n/a"
        print(f"  {variant.name:40} {ratio}")
    counts = []
    for variant in found.values():
        if variant.counted is not None:
            counted = variant.counted()
            counts.append(f"{variant.name} {counted}")
            if counted != sent:
                raise SystemExit(f"{variant.name} counted {counted} requests of {sent} sent")
    print(f"requests counted by each instrumentation = {sent} sent: " + ", ".join(counts))


class PassThrough:
    """Breakdown stage 1: an ASGI layer that only awaits the app."""

    def __init__(self, app: ASGIApp, recorder: Any) -> None:
        self.app, self._recorder = app, recorder

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class WithStatus(PassThrough):
    """Stage 2: + our `_Status` wrapper around `send` (reads the status of the response)."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        response = _Status(send)
        await self.app(scope, receive, response.send)


class WithTiming(PassThrough):
    """Stage 3: + the type and `active` checks, two `perf_counter()` and try/except/finally."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        recorder = self._recorder
        if scope["type"] != "http" or not recorder.active:
            await self.app(scope, receive, send)
            return
        response = _Status(send)
        error: BaseException | None = None
        start = perf_counter()
        try:
            await self.app(scope, receive, response.send)
        except BaseException as failure:
            error = failure
            raise
        finally:
            seconds = perf_counter() - start
        del error, seconds


class WithActive(PassThrough):
    """Stage 4: + method and scheme, `recorder.started()` and `active.decrement()`."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        recorder = self._recorder
        if scope["type"] != "http" or not recorder.active:
            await self.app(scope, receive, send)
            return
        method = semconv.http_method(scope["method"])
        scheme = scheme_of(scope.get("scheme"))
        active = recorder.started(method, scheme)
        response = _Status(send)
        error: BaseException | None = None
        start = perf_counter()
        try:
            await self.app(scope, receive, response.send)
        except BaseException as failure:
            error = failure
            raise
        finally:
            seconds = perf_counter() - start
            active.decrement()
        del error, seconds


STAGES: list[tuple[str, type[PassThrough]]] = [
    ("1 pass-through ASGI layer", PassThrough),
    ("2 + _Status send wrapper", WithStatus),
    ("3 + checks, perf_counter x2, try/finally", WithTiming),
    ("4 + method, scheme, started(), decrement()", WithActive),
]
FULL = "5 + route template, finished(): the real middleware"


def breakdown_variants() -> dict[str, Variant]:
    """The bare app, replicas of our middleware built up stage by stage from its own pieces (the
    real recorder and `_Status`), and the real middleware; each on its own app."""
    ours_app = starlette_app()
    instrument(app=ours_app, metric_exporter=KeepMetrics(), span_exporter=CountSpans())
    ours_app.middleware_stack = ours_app.build_middleware_stack()
    real = ours_app.middleware_stack
    assert isinstance(real, HttpMetricsMiddleware)
    found = [Variant(STARLETTE_BASE, STARLETTE_BASE, starlette_app())]
    for name, stage in STAGES:
        app = starlette_app()
        app.middleware_stack = stage(app.build_middleware_stack(), real._recorder)
        found.append(Variant(name, STARLETTE_BASE, app))
    found.append(Variant(FULL, STARLETTE_BASE, ours_app))
    return {v.name: v for v in found}


def per_call(calls: int = 200_000) -> dict[str, float]:
    """CPU seconds per call of the pieces our middleware runs per request, in isolation: `timeit`
    (garbage collector off), median of 5 repeats, minus the same loop running `pass`."""
    app = starlette_app()
    instrument(app=app, metric_exporter=KeepMetrics(), span_exporter=CountSpans())
    app.middleware_stack = app.build_middleware_stack()
    middleware = app.middleware_stack
    assert isinstance(middleware, HttpMetricsMiddleware)
    scope = dict(SCOPE)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(app(scope, receive, discard))  # sets scope["route"]
    loop.close()

    def complete(coroutine: Any) -> None:
        try:  # noqa: SIM105 (contextlib.suppress costs more than what it measures)
            coroutine.send(None)
        except StopIteration:
            pass

    names = {
        "recorder": middleware._recorder, "templates": middleware._templates, "scope": scope,
        "semconv": semconv, "scheme_of": scheme_of, "perf_counter": perf_counter,
        "_Status": _Status, "discard": discard, "complete": complete,
        "status": _Status(discard), "message": {"type": "http.response.start", "status": 200},
        "bare": bare_asgi, "passthrough": PassThrough(bare_asgi, None),
    }
    statements = {
        "pass": "pass",
        "semconv.http_method() + scheme_of()": (
            "semconv.http_method('GET'); scheme_of('http')"),
        "perf_counter() x2": "perf_counter(); perf_counter()",
        "recorder.started() + active.decrement()": "recorder.started('GET', 'http').decrement()",
        "templates.of(scope)": "templates.of(scope)",
        "recorder.finished(...)": (
            "recorder.finished('GET', 'http', '/trades/{trade_id}', 200, None, 0.001)"),
        "_Status(send)": "_Status(discard)",
        "await send(message), direct": "complete(discard(message))",
        "await _Status.send(message)": "complete(status.send(message))",
        "await an ASGI app that returns, direct": "complete(bare(scope, None, None))",
        "await it through a pass-through layer": "complete(passthrough(scope, None, None))",
    }
    timings = {
        name: statistics.median(timeit.repeat(statement, timer=time.process_time, number=calls,
                                              repeat=5, globals=names)) / calls
        for name, statement in statements.items()
    }
    empty = timings.pop("pass")
    return {name: seconds - empty for name, seconds in timings.items()}


def breakdown(rounds: int, requests: int) -> None:
    found, _ = run(breakdown_variants(), rounds, requests)
    print(f"Breakdown of our middleware: {rounds} rounds x {requests} requests per stage")
    previous = 0.0
    print(f"{'stage':44} {'added us':>9} {'p25..p75':>13} {'this stage':>11}")
    base = found[STARLETTE_BASE].samples
    for variant in list(found.values())[1:]:
        diffs = [c - b for (c, _), (b, _) in zip(variant.samples, base, strict=True)]
        low, mid, high = quantiles(diffs)
        print(f"{variant.name:44} {mid * 1e6:9.2f} {f'{low * 1e6:.2f}..{high * 1e6:.2f}':>13} "
              f"{(mid - previous) * 1e6:11.2f}")
        previous = mid
    print("Per call, in isolation (CPU us, minus an empty timeit loop):")
    for name, seconds in per_call().items():
        print(f"  {name:40} {seconds * 1e6:6.3f}")


async def spin(request: Request) -> PlainTextResponse:
    """About as long as FastAPI's own work per request, in a few lines of code."""
    total = 0
    for i in range(1500):
        total += i
    return PlainTextResponse("ok")


PAYLOAD = {"trades": [{"id": i, "symbol": "ABC", "price": 1.5 * i} for i in range(20)]}


async def broad(request: Request) -> PlainTextResponse:
    """About as long, through many different functions of the standard library."""
    json.loads(json.dumps(PAYLOAD))
    urllib.parse.urlsplit("http://example.com/trades/42?side=buy#top")
    email.utils.formatdate(usegmt=True)
    inspect.signature(spin)
    return PlainTextResponse("ok")


def footprint(rounds: int, requests: int) -> None:
    """Our middleware's added time by what the app does per request: the trivial route, a
    route that loops on a few lines for about as long as FastAPI's own work, a route that goes
    through as much code of many functions, and the trivial route on FastAPI."""
    makers: dict[str, Callable[[], Any]] = {
        "Starlette, trivial route": starlette_app,
        "Starlette, tight loop": lambda: Starlette(routes=[Route("/trades/{trade_id}", spin)]),
        "Starlette, broad code": lambda: Starlette(routes=[Route("/trades/{trade_id}", broad)]),
        "FastAPI, trivial route": fastapi_app,
    }
    found: dict[str, Variant] = {}
    for name, make in makers.items():
        found[name] = Variant(name, name, make())
        app = make()
        instrument(app=app, metric_exporter=KeepMetrics(), span_exporter=CountSpans())
        found[name + " + ours"] = Variant(name + " + ours", name, app)
    found, _ = run(found, rounds, requests)
    print(f"Our added time by app: {rounds} rounds x {requests} requests per variant")
    print(f"{'app':28} {'cpu us bare':>11} {'added us':>9} {'p25..p75':>13}")
    for name in makers:
        variant = found[name + " + ours"]
        base = found[name].samples
        diffs = [c - b for (c, _), (b, _) in zip(variant.samples, base, strict=True)]
        low, mid, high = quantiles(diffs)
        print(f"{name:28} {statistics.median(c for c, _ in base) * 1e6:11.2f} {mid * 1e6:9.2f} "
              f"{f'{low * 1e6:.2f}..{high * 1e6:.2f}':>13}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1000, help="requests per batch")
    parser.add_argument("--breakdown", action="store_true",
                        help="where our middleware's time goes, stage by stage, instead")
    parser.add_argument("--footprint", action="store_true",
                        help="our added time on routes that do more per request, instead")
    args = parser.parse_args()
    if args.footprint:
        footprint(args.rounds, args.requests)
        return
    if args.breakdown:
        breakdown(args.rounds, args.requests)
        return
    found, sent = run(variants(), args.rounds, args.requests)
    report(found, sent, args.rounds, args.requests)


if __name__ == "__main__":
    main()
