"""`instrument()` and the handle it returns."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace.export import SpanExporter

from exporter import semconv
from exporter.bounded import BoundedNames
from exporter.instrument import http_asgi, http_wsgi
from exporter.instrument.cache import CacheMetrics
from exporter.instrument.http_server import HttpServerMetrics
from exporter.instrument.providers import ExportSettings
from exporter.instrument.queries import Bounds, EngineQueries
from exporter.instrument.redis_pool import RedisPool
from exporter.instrument.sqlalchemy_pool import SqlAlchemyPool
from exporter.instrument.telemetry import MAX_ERROR_TYPES, Telemetry, resolve

log = logging.getLogger(__name__)

DEFAULT_MAX_COLLECTIONS = 100
MAX_OPERATIONS = 32

_OWNERS: weakref.WeakKeyDictionary[Any, Instrumentation] = weakref.WeakKeyDictionary()
_OWNERS_LOCK = threading.RLock()


class Instrumentation:
    """What one `instrument()` call instrumented; `uninstrument()` undoes exactly that."""

    def __init__(self, telemetry: Telemetry, bounds: Bounds, slow_threshold: float | None) -> None:
        self.telemetry = telemetry
        self._bounds, self._slow_threshold = bounds, slow_threshold
        self._queries: list[EngineQueries] = []
        self._sql_pools: list[SqlAlchemyPool] = []
        self._redis_pools: list[RedisPool] = []
        self._apps: list[tuple[Any, Callable[[], None]]] = []
        self._caches: list[CacheMetrics] = []

    @property
    def engines(self) -> list[Any]:
        return [q.engine for q in self._queries]

    @property
    def redis_pools(self) -> list[Any]:
        return [p.pool for p in self._redis_pools]

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export everything recorded so far, now."""
        return self.telemetry.force_flush(timeout_millis)

    def uninstrument(self) -> None:
        """Remove every listener, wrapper and pool probe this handle added. Safe to repeat."""
        pools = self.telemetry.meters.pools
        with _OWNERS_LOCK:
            for queries in self._queries:
                queries.remove()
                _OWNERS.pop(queries.engine.dialect, None)
            for sql_pool in self._sql_pools:
                sql_pool.remove()
                pools.unregister(sql_pool)
            for redis_pool in self._redis_pools:
                redis_pool.remove()
                pools.unregister(redis_pool)
                _OWNERS.pop(redis_pool.pool, None)
            for app, remove in self._apps:
                remove()
                _OWNERS.pop(app, None)
            for cache in self._caches:
                cache.active = False
            self._queries, self._sql_pools, self._redis_pools = [], [], []
            self._apps, self._caches = [], []

    def cache(self, name: str) -> CacheMetrics:
        """The recorder a cache named `name` calls on each lookup (see exporter.instrument.cache).
        At most 100 distinct names are recorded, later ones as "_other"."""
        recorder = CacheMetrics(self.telemetry.meters.cache, name)
        with _OWNERS_LOCK:
            self._caches.append(recorder)
        return recorder

    def add_app(self, app: Any) -> bool:
        """Time every HTTP request of a Starlette/FastAPI (ASGI) or Flask (WSGI) app."""
        if http_asgi.is_asgi_app(app):
            installer = http_asgi.install
        elif http_wsgi.is_flask_app(app):
            installer = http_wsgi.install
        else:
            raise TypeError(f"not a Starlette, FastAPI or Flask application: {type(app).__name__}")
        with _OWNERS_LOCK:
            if app in _OWNERS:
                log.debug("app %r is already instrumented", app)
                return False
            _OWNERS[app] = self
            recorder = HttpServerMetrics(self.telemetry.meters.http)
            self._apps.append((app, installer(app, recorder)))
            return True

    def add_engine(self, engine: Any) -> bool:
        engine = getattr(engine, "sync_engine", engine)
        dialect = getattr(engine, "dialect", None)
        if dialect is None or not hasattr(engine, "pool"):
            raise TypeError(f"not a SQLAlchemy Engine or AsyncEngine: {type(engine).__name__}")
        with _OWNERS_LOCK:
            if dialect in _OWNERS:
                log.debug("engine %r is already instrumented", engine)
                return False
            _OWNERS[dialect] = self
            system = semconv.db_system_name(dialect.name, bool(getattr(dialect, "is_mariadb", 0)))
            meters = self.telemetry.meters
            self._queries.append(
                EngineQueries(
                    engine, system, meters.duration, self.telemetry.tracer, self._bounds,
                    self._slow_threshold,
                )
            )
            sql_pool = SqlAlchemyPool(engine, meters.pools, system)
            meters.pools.register(sql_pool)
            self._sql_pools.append(sql_pool)
            return True

    def add_redis(self, client: Any) -> bool:
        pool = getattr(client, "connection_pool", client)
        if not hasattr(pool, "get_connection") or not hasattr(pool, "connection_kwargs"):
            raise TypeError(f"not a redis-py client or connection pool: {type(client).__name__}")
        with _OWNERS_LOCK:
            if pool in _OWNERS:
                log.debug("redis pool %r is already instrumented", pool)
                return False
            _OWNERS[pool] = self
            probe = RedisPool(pool, self.telemetry.meters.pools)
            self.telemetry.meters.pools.register(probe)
            self._redis_pools.append(probe)
            return True


def instrument(
    engine: Any = None,
    redis_client: Any = None,
    *,
    app: Any = None,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    slow_query_threshold: float | None = 0.5,
    max_collections: int = DEFAULT_MAX_COLLECTIONS,
    service_name: str | None = None,
    otlp_endpoint: str | None = None,
    metric_exporter: MetricExporter | None = None,
    span_exporter: SpanExporter | None = None,
) -> Instrumentation:
    """Record pool metrics, query durations and slow-query spans for engines and redis clients.

    `engine`: a SQLAlchemy Engine or AsyncEngine, or a list of them. `redis_client`: a redis-py
    client or connection pool (sync or asyncio), or a list. Already instrumented ones are skipped.
    Providers: the ones given, else global SDK providers, else our own exporting OTLP/HTTP to
    `app`: a Starlette or FastAPI (ASGI) or Flask (WSGI) application, whose requests are timed
    from then on (in place: no wrapping needed). `handle.cache(name)` gives a cache its recorder.
    `otlp_endpoint` (default from `OTEL_EXPORTER_OTLP_ENDPOINT`, else http://127.0.0.1:4318),
    or to `metric_exporter` / `span_exporter` when given. A statement slower than
    `slow_query_threshold` seconds (None: never) becomes a span; at most `max_collections`
    distinct `db.collection.name` values are recorded, later ones as "_other".
    """
    settings = ExportSettings(service_name, otlp_endpoint, metric_exporter, span_exporter)
    telemetry = resolve(tracer_provider, meter_provider, settings)
    bounds = Bounds(
        operations=BoundedNames(MAX_OPERATIONS, semconv.OTHER),
        collections=BoundedNames(max_collections, semconv.OTHER),
        errors=BoundedNames(MAX_ERROR_TYPES, semconv.OTHER_ERROR),
    )
    handle = Instrumentation(telemetry, bounds, slow_query_threshold)
    for each in _as_list(engine):
        handle.add_engine(each)
    for each in _as_list(redis_client):
        handle.add_redis(each)
    for each in _as_list(app):
        handle.add_app(each)
    return handle


def _as_list(value: Any) -> Iterable[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return value
    return [value]
