"""A process that puts a small PostgreSQL pool in trouble, instrumented with exporter.instrument.

    python -m tests.e2e.stack_worker --database-url postgresql://postgres@127.0.0.1:5432/test

It exports OTLP wherever the standard OTEL_* variables say. Throughout, one thread runs a quick
`SELECT 1` every --calm-pause seconds; with --pool-recycle, connections are replaced now and then,
so connection create times keep being recorded. It prints "ready" once its pool has served a
statement, then obeys stdin, one command a line (each echoed once done):

    trouble   start --threads more threads, each looping: check out a connection (waiting at
              most --pool-timeout), run `SELECT pg_sleep(--sleep)`, check it in. With more
              threads than the pool holds, the pool stays full and the surplus threads time out.
    calm      stop those threads
    EOF       flush the export and exit, printing {"slow": n, "timeouts": n, "quick": n} last

No table is created: the statements need none.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import Counter

from sqlalchemy import Engine, create_engine, text
from sqlalchemy import exc as sa_exc

from exporter.instrument import instrument

SERVICE_NAME = "stack-worker"
POOL_NAME = "stack-worker-pool"


class Loops:
    """Threads running one statement over and over, counting outcomes, until stopped."""

    def __init__(self, engine: Engine, statement: str, parameters: dict[str, float],
                 outcome: str, threads: int, pause: float = 0.0) -> None:
        self.engine, self.outcome, self.pause = engine, outcome, pause
        self.statement, self.parameters = text(statement), parameters
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> Counter[str]:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return self.counts

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.engine.connect() as connection:
                    connection.execute(self.statement, self.parameters)
                outcome = self.outcome
            except sa_exc.TimeoutError:
                outcome = "timeouts"
            with self._lock:
                self.counts[outcome] += 1
            self._stop.wait(self.pause)


def sync_url(url: str) -> str:
    """psycopg2 for a plain postgresql:// URL (SQLAlchemy 2.1 would pick psycopg 3)."""
    scheme, _, rest = url.partition("://")
    return f"postgresql+psycopg2://{rest}" if scheme in ("postgresql", "postgres") else url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--max-overflow", type=int, default=1)
    parser.add_argument("--pool-timeout", type=float, default=0.2)
    parser.add_argument("--pool-recycle", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=5)
    parser.add_argument("--sleep", type=float, default=0.6)
    parser.add_argument("--calm-pause", type=float, default=0.2)
    parser.add_argument("--slow-query-threshold", type=float, default=0.5)
    args = parser.parse_args()

    engine = create_engine(sync_url(args.database_url), pool_size=args.pool_size,
                           max_overflow=args.max_overflow, pool_timeout=args.pool_timeout,
                           pool_recycle=args.pool_recycle, pool_logging_name=POOL_NAME)
    handle = instrument(engine, service_name=SERVICE_NAME,
                        slow_query_threshold=args.slow_query_threshold)
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    calm = Loops(engine, "SELECT 1", {}, "quick", 1, args.calm_pause)
    print("ready", flush=True)

    totals: Counter[str] = Counter()
    trouble: Loops | None = None
    for line in sys.stdin:
        command = line.strip()
        if command == "trouble" and trouble is None:
            trouble = Loops(engine, "SELECT pg_sleep(:seconds)", {"seconds": args.sleep},
                            "slow", args.threads)
        elif command == "calm" and trouble is not None:
            totals.update(trouble.stop())
            trouble = None
        print(command, flush=True)
    if trouble is not None:
        totals.update(trouble.stop())
    totals.update(calm.stop())
    handle.force_flush()
    handle.uninstrument()
    engine.dispose()
    print(json.dumps({key: totals[key] for key in ("slow", "timeouts", "quick")}), flush=True)


if __name__ == "__main__":
    main()
