"""App-side instrumentation over OTLP: pool metrics, query durations, slow-query spans, HTTP
request timings and app cache hits and misses.

    from exporter.instrument import instrument
    handle = instrument(engine=engine, redis_client=redis, app=app)
    trades_cache = handle.cache("trades")
    ...
    handle.uninstrument()
"""

from exporter.instrument.cache import CacheMetrics
from exporter.instrument.instrumentation import Instrumentation, instrument

__all__ = ["CacheMetrics", "Instrumentation", "instrument"]
