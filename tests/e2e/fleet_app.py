"""The app of one "pod" of tests/e2e/test_fleet.py: a Flask app under gunicorn's sync workers.

Each request reads one key from Redis (a miss is filled, so later reads of it hit) and runs one
SQL statement on the pod's SQLite file through a SQLAlchemy pool of 2 + 3 (capacity 5 per
worker). Every worker instruments itself after the fork:

    gunicorn --workers 3 'tests.e2e.fleet_app:create()'                   # imported per worker
    gunicorn --workers 3 --preload -c python:tests.e2e.fleet_app 'tests.e2e.fleet_app:create(False)'
        # imported once in the master; post_fork instruments each worker

Environment: FLEET_REDIS_URL, FLEET_DATABASE (a file path), and the OTEL_* variables.
"""

from __future__ import annotations

import os
from typing import Any

POOL_SIZE, MAX_OVERFLOW = 2, 3
KEYS = 40

_app: Any = None
_engine: Any = None
_redis: Any = None


def create(instrument_now: bool = True) -> Any:
    """The WSGI app; instrumented at once unless the master preloads it (see post_fork)."""
    global _app, _engine, _redis
    import redis
    import sqlalchemy
    from flask import Flask

    _engine = sqlalchemy.create_engine(f"sqlite:///{os.environ['FLEET_DATABASE']}",
                                       pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW)
    _redis = redis.Redis.from_url(os.environ["FLEET_REDIS_URL"])
    app = Flask(__name__)

    @app.get("/quote/<int:n>")
    def quote(n: int) -> dict[str, Any]:
        key = f"fleet:{n % KEYS}"
        value = _redis.get(key)
        if value is None:
            _redis.set(key, str(n))
        with _engine.connect() as conn:
            row = conn.execute(sqlalchemy.text("SELECT :n + 1"), {"n": n}).scalar_one()
        return {"n": n, "row": row, "hit": value is not None}

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    _app = app
    if instrument_now:
        _instrument()
    return app


def _instrument() -> None:
    from exporter.instrument import instrument

    _engine.dispose(close=False)  # connections made before a fork belong to the master
    instrument(engine=_engine, redis_client=_redis, app=_app)


def post_fork(server: Any, worker: Any) -> None:
    """gunicorn's hook (with --preload the app was built in the master): each worker
    instruments itself, so that it gets its own resource and service.instance.id."""
    if _app is not None:
        _instrument()
