"""App-side instrumentation: pool metrics, query durations and slow-query spans over OTLP.

    from exporter.instrument import instrument
    handle = instrument(engine=engine, redis_client=redis)
    ...
    handle.uninstrument()
"""

from exporter.instrument.instrumentation import Instrumentation, instrument

__all__ = ["Instrumentation", "instrument"]
