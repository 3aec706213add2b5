"""An instrumented app whose sidecar may be away, run in its own process and driven over stdin:

    python -m tests.instrument.away_app http://127.0.0.1:PORT
      query   run QUERIES slow statements        flush   force_flush, print {"flushed": ...}
      (end of input: exit, through the SDK's own shutdown at exit)

It logs to stderr at INFO, as an app with logging configured would.
"""

from __future__ import annotations

import json
import logging
import sys

from sqlalchemy import create_engine, text

from exporter.instrument import instrument

QUERIES = 5


def main(endpoint: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s %(message)s")
    engine = create_engine("sqlite://")
    handle = instrument(engine, slow_query_threshold=0.0, service_name="away",
                        otlp_endpoint=endpoint)
    for line in sys.stdin:
        command = line.strip()
        if command == "query":
            with engine.connect() as connection:
                for number in range(QUERIES):
                    connection.execute(text("SELECT :n AS away_probe"), {"n": number}).all()
            print(json.dumps({"queried": QUERIES}), flush=True)
        elif command == "flush":
            print(json.dumps({"flushed": handle.force_flush(5_000)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
