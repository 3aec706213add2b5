from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.instrument.helpers import PG_ASYNC_URL, PG_URL, REDIS_HOST, REDIS_PORT, Telemetry


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    state = Telemetry()
    yield state
    for handle in state.handles:
        handle.uninstrument()
    for handle in state.handles[:1]:
        handle.telemetry.meter_provider.shutdown()  # type: ignore[attr-defined]
        handle.telemetry.tracer_provider.shutdown()  # type: ignore[attr-defined]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres() -> str:
    if not _reachable("127.0.0.1", 5432):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    return PG_URL


@pytest.fixture(scope="session")
def postgres_async() -> str:
    if not _reachable("127.0.0.1", 5432):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    return PG_ASYNC_URL


@pytest.fixture(scope="session")
def redis_address() -> tuple[str, int]:
    if not _reachable(REDIS_HOST, REDIS_PORT):
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return REDIS_HOST, REDIS_PORT
