"""Where instrument/ reads what a dependency does not publish, in one place.

Each reader prefers a public API where the installed release has one and says which releases
the private fallback is for; tests/instrument/test_private.py checks every reader against the
installed releases, so an upgrade that renames one fails there, not in production.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exporter import semconv


def redis_pool_idle_used(pool: Any) -> tuple[int, int] | None:
    """Idle and in-use connections of a redis-py pool (sync or asyncio, blocking or not), or
    None for a pool of unknown shape."""
    if callable(getattr(pool, "get_connection_count", None)):  # redis-py 7.1 and later
        counts = {attributes.get(semconv.CONNECTION_STATE): count
                  for count, attributes in pool.get_connection_count()}
        if {semconv.STATE_IDLE, semconv.STATE_USED} <= counts.keys():
            return counts[semconv.STATE_IDLE], counts[semconv.STATE_USED]
    if hasattr(pool, "_available_connections"):  # redis-py 5 to 7.0, ConnectionPool
        return len(pool._available_connections), len(pool._in_use_connections)
    if hasattr(pool, "_connections") and hasattr(pool, "pool"):  # ... BlockingConnectionPool
        idle = sum(1 for c in list(pool.pool.queue) if c is not None)
        return idle, len(pool._connections) - idle
    return None


def exporter_preferences(exporter: Any) -> dict[str, Any]:
    """The temporality and aggregation a metric exporter was built with (the SDK keeps them
    private), as keyword arguments for a wrapping exporter's constructor."""
    return {
        "preferred_temporality": getattr(exporter, "_preferred_temporality", None),
        "preferred_aggregation": getattr(exporter, "_preferred_aggregation", None),
    }


def otlp_request_sender(exporter: Any) -> Callable[[Any], Any] | None:
    """The OTLP/HTTP metric exporter's send of an already encoded request (SDK 1.25 to 1.45:
    `_export_batch`), or None: then a wrapper cannot add flags the SDK's points lack."""
    send = getattr(exporter, "_export_batch", None)
    return send if callable(send) else None


def fastapi_telemetry(app: Any) -> dict[str, Any] | None:
    """FastAPI 0.16x's own OpenTelemetry settings (`app._telemetry`), or None before 0.16x."""
    settings = getattr(app, "_telemetry", None)
    return settings if isinstance(settings, dict) else None


def instrumented_by_opentelemetry(app: Any) -> bool:
    """The flag opentelemetry-instrumentation-fastapi and -flask set on an app they instrument."""
    return bool(getattr(app, "_is_instrumented_by_opentelemetry", False))
