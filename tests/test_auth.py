"""exporter/auth.py: constant-cost user lookup, the bounded check queue, the cache of verified
credentials and the bearer token, on the Authenticator itself (the HTTP side is in
tests/abuse/test_auth.py and tests/test_otlp_security.py)."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import statistics
import threading
import time
from pathlib import Path

import bcrypt
import pytest

from exporter.app import _warn_if_open
from exporter.auth import Authenticator, auth_families, checkpw, hash_cost
from exporter.exposition import render
from exporter.limits import AuthLimits
from exporter.webconfig import WebConfig, WebConfigError, load_web_config

TOKEN = b"0123456789abcdef-token"


def _basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def _hash(password: str, cost: int) -> bytes:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost))


@pytest.mark.parametrize("costs", [(10,), (5, 7), (6, 6, 6)])
def test_dummy_hash_costs_what_the_configured_hashes_cost(costs: tuple[int, ...]) -> None:
    users = {f"u{i}": _hash("pw", cost) for i, cost in enumerate(costs)}
    auth = Authenticator(users, workers=1)
    assert hash_cost(auth._dummy) == max(costs)
    auth.close()


def test_mixed_costs_are_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "exporter.auth"):
        Authenticator({"a": _hash("pw", 4), "b": _hash("pw", 5)}, workers=1).close()
        Authenticator({"a": _hash("pw", 4), "b": _hash("pw", 4)}, workers=1).close()
    assert len(caplog.records) == 1 and "different bcrypt costs" in caplog.text


def test_unknown_and_known_users_take_the_same_time() -> None:
    """Medians over interleaved attempts, compared with each other (never with a clock value):
    before the fix the dummy had cost 12 against the users' 10, a ratio of about 4."""
    auth = Authenticator({"alice": _hash("right", 8)}, workers=1)

    async def timed(header: bytes) -> float:
        started = time.perf_counter()
        assert await auth.verify(header) == "unauthorized"
        return time.perf_counter() - started

    async def measure() -> tuple[float, float]:
        known, unknown = [], []
        for _ in range(15):
            known.append(await timed(_basic("alice", "wrong")))
            unknown.append(await timed(_basic("mallory", "wrong")))
        return statistics.median(known), statistics.median(unknown)

    known, unknown = asyncio.run(measure())
    auth.close()
    assert 0.6 < unknown / known < 1.6, (known, unknown)


class _Gate:
    """A password check that waits until the test opens it: deliberate, controlled slowness."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.calls = 0

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls += 1
        self.open.wait(10)
        return checkpw(password, hashed)


def test_checks_past_the_bound_are_refused_at_once_and_cached_logins_skip_the_queue() -> None:
    gate = _Gate()
    auth = Authenticator({"alice": _hash("right", 4)}, limits=AuthLimits(max_pending_checks=4),
                         check=gate, workers=1)

    async def scenario() -> None:
        gate.open.set()
        assert await auth.verify(_basic("alice", "right")) == "ok"  # first login: checked
        gate.open.clear()
        storm = [asyncio.create_task(auth.verify(_basic(f"x{i}", "guess"))) for i in range(10)]
        await asyncio.sleep(0.05)
        assert auth.pending == 4
        refused = [t.result() for t in storm if t.done()]
        assert refused == ["overloaded"] * 6
        started = time.perf_counter()
        assert await auth.verify(_basic("alice", "right")) == "ok"  # from the cache
        assert time.perf_counter() - started < 0.05
        assert await auth.verify(_basic("alice", "wrong")) == "overloaded"  # not cached
        gate.open.set()
        assert await asyncio.gather(*storm) == ["unauthorized"] * 4 + ["overloaded"] * 6
        assert auth.pending == 0

    asyncio.run(scenario())
    auth.close()
    assert gate.calls == 1 + 4
    assert auth.cache_hits == 1


def test_one_client_cannot_hold_every_pending_check() -> None:
    gate = _Gate()
    limits = AuthLimits(max_pending_checks=8, max_pending_checks_per_client=3)
    auth = Authenticator({"alice": _hash("right", 4)}, limits=limits, check=gate, workers=1)

    async def scenario() -> None:
        noisy = [asyncio.create_task(auth.verify(_basic(f"x{i}", "guess"), "10.0.0.66"))
                 for i in range(6)]
        await asyncio.sleep(0.05)
        assert [t.result() for t in noisy if t.done()] == ["overloaded"] * 3
        first = asyncio.create_task(auth.verify(_basic("alice", "right"), "10.0.0.1"))
        await asyncio.sleep(0.05)
        assert not first.done() and auth.pending == 4
        gate.open.set()
        assert await first == "ok"
        await asyncio.gather(*noisy)
        assert auth.pending == 0 and not auth._pending_by_client

    asyncio.run(scenario())
    auth.close()


def test_cache_is_bounded_and_never_holds_failures() -> None:
    users = {f"u{i}": _hash(f"pw{i}", 4) for i in range(3)}
    auth = Authenticator(users, cache_entries=2, workers=1)

    async def scenario() -> None:
        for i in range(3):
            assert await auth.verify(_basic(f"u{i}", f"pw{i}")) == "ok"
        assert await auth.verify(_basic("u0", "nope")) == "unauthorized"
        assert await auth.verify(_basic("ghost", "pw0")) == "unauthorized"

    asyncio.run(scenario())
    auth.close()
    assert len(auth._verified) == 2
    assert all(len(key) == 32 for key in auth._verified)


@pytest.mark.parametrize(
    ("header", "verdict"),
    [
        (b"Bearer " + TOKEN, "ok"),
        (b"bearer " + TOKEN + b" ", "ok"),
        (b"Bearer " + TOKEN[:-1], "unauthorized"),
        (b"Bearer " + TOKEN + b"x", "unauthorized"),
        (b"Bearer ", "unauthorized"),
        (b"", "unauthorized"),
        (b"Basic " + base64.b64encode(b"tok:" + TOKEN), "unauthorized"),
        (b"Basic !!!", "unauthorized"),
    ],
)
def test_bearer_token(header: bytes, verdict: str) -> None:
    auth = Authenticator({}, bearer_token=TOKEN, workers=1)
    assert asyncio.run(auth.verify(header)) == verdict
    auth.close()


def test_either_basic_or_bearer_when_both_are_configured() -> None:
    auth = Authenticator({"app": _hash("pw", 4)}, bearer_token=TOKEN, workers=1)

    async def scenario() -> list[str]:
        return [await auth.verify(h) for h in (b"Bearer " + TOKEN, _basic("app", "pw"),
                                               _basic("app", "no"))]

    assert asyncio.run(scenario()) == ["ok", "ok", "unauthorized"]
    auth.close()


def test_families() -> None:
    auth = Authenticator({}, bearer_token=TOKEN, workers=1)
    auth.rejected["unauthorized"] += 2
    text = render(auth_families([("otlp", auth)])).decode()
    auth.close()
    assert ('tradesense_exporter_auth_rejected_total{listener="otlp",reason="unauthorized"} 2'
            in text)
    assert 'tradesense_exporter_auth_pending_checks{listener="otlp"} 0' in text


def test_bearer_token_file_only_in_the_otlp_config(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN.decode() + "\n")
    path = tmp_path / "otlp.yml"
    path.write_text("bearer_token_file: token\n")
    assert load_web_config(str(path), bearer=True).bearer_token == TOKEN
    with pytest.raises(WebConfigError, match="top-level keys"):
        load_web_config(str(path))
    (tmp_path / "token").write_text("short\n")
    with pytest.raises(WebConfigError, match="16 bytes or more"):
        load_web_config(str(path), bearer=True)
    path.write_text("bearer_token_file: missing\n")
    with pytest.raises(WebConfigError, match="cannot read"):
        load_web_config(str(path), bearer=True)


def test_malformed_bcrypt_hash_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  u: $2b$99$" + "a" * 53 + "\n")
    with pytest.raises(WebConfigError, match="not bcrypt"):
        load_web_config(str(path))


@pytest.mark.parametrize(
    ("address", "authenticated", "tls", "warning"),
    [
        ("127.0.0.1:4318", False, False, None),
        ("localhost:4318", False, False, None),
        ("[::1]:4318", False, False, None),
        ("0.0.0.0:4318", False, False, "from anyone"),
        (":4318", False, False, "from anyone"),
        ("0.0.0.0:4318", True, False, "clear text"),
        ("0.0.0.0:4318", True, True, None),
    ],
)
def test_warns_once_when_otlp_leaves_loopback_open(
    caplog: pytest.LogCaptureFixture, address: str, authenticated: bool, tls: bool,
    warning: str | None,
) -> None:
    config = WebConfig(tls=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER) if tls else None)
    with caplog.at_level(logging.WARNING, "exporter"):
        _warn_if_open(address, config, authenticated)
    if warning is None:
        assert not caplog.records
    else:
        assert len(caplog.records) == 1 and warning in caplog.text
