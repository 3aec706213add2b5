"""A small trading-journal API shaped like TradeSense, instrumented with exporter.instrument.

    python -m examples.tradesense_app            # serve on 127.0.0.1:8000
    python -m examples.tradesense_app.traffic    # and drive it

Settings come from the environment (see settings.py): DATABASE_URL (default SQLite in the temp
directory; postgresql://... works), REDIS_URL (default redis://127.0.0.1:6379/0), the TRADESENSE_*
knobs (rate limit, cache sizes, fault injection), and the standard OTEL_* variables for the export.
"""
