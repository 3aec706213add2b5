"""Reaching Redis: TLS with a client certificate, ACL users, unix sockets, precise errors; one
retry on a fresh connection when a reused one was closed; replies bounded in size."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.limits import RedisLimits
from exporter.redis.connection import RedisConnection
from exporter.redis.errors import ScrapeError
from exporter.redis.target import RedisTarget, TLSOptions, parse_address
from tests.support.fake_redis import MiB, huge_reply_server
from tests.support.redis_servers import (
    ACL_USER,
    RedisServer,
    start_acl_server,
    start_redis,
    start_tls_server,
    wait_for,
)


def run(conn: RedisConnection, *commands: tuple[str, ...]) -> list[object]:
    async def go() -> list[object]:
        try:
            return await conn.execute(list(commands))
        finally:
            await conn.close()

    return asyncio.run(go())


def with_tls(url: str, tls: TLSOptions) -> RedisTarget:
    t = parse_address(url)
    return RedisTarget(t.address, t.scheme, t.host, t.port, t.path, t.db, t.username,
                       t.password, tls)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = start_tls_server(tmp_path_factory.mktemp("tls"))
    yield srv
    srv.stop()


def test_tls_with_client_certificate(tls_server: RedisServer) -> None:
    files = tls_server.tls
    assert files is not None
    tls = TLSOptions(ca_file=str(files.ca_cert), cert_file=str(files.client_cert),
                     key_file=str(files.client_key))
    conn = RedisConnection(with_tls(tls_server.url, tls), 3)
    assert run(conn, ("PING",)) == ["PONG"]


def test_tls_failures_are_named(tls_server: RedisServer, tmp_path: Path) -> None:
    files = tls_server.tls
    assert files is not None
    no_ca = RedisConnection(with_tls(tls_server.url, TLSOptions(
        cert_file=str(files.client_cert), key_file=str(files.client_key))), 3)
    with pytest.raises(ScrapeError, match="TLS failure: certificate verify failed"):
        run(no_ca, ("PING",))
    no_client_cert = RedisConnection(with_tls(tls_server.url, TLSOptions(
        ca_file=str(files.ca_cert))), 3)
    with pytest.raises(ScrapeError, match="TLS failure|connection closed|connection reset"):
        run(no_client_cert, ("PING",))
    plain = RedisConnection(parse_address(f"redis://127.0.0.1:{tls_server.port}"), 1)
    with pytest.raises(ScrapeError):
        run(plain, ("PING",))


def test_acl_user_scrapes_with_least_privilege(tmp_path: Path) -> None:
    srv = start_acl_server(tmp_path / "acl", user_password="exporter-pw")
    try:
        good = RedisConnection(parse_address(
            f"redis://{ACL_USER}:exporter-pw@127.0.0.1:{srv.port}"), 3)
        info, denied = run(good, ("INFO", "server"), ("KEYS", "*"))
        assert isinstance(info, str) and "redis_version" in info
        assert isinstance(denied, Exception) and "no permissions" in str(denied)
        bad = RedisConnection(parse_address(
            f"redis://{ACL_USER}:nope@127.0.0.1:{srv.port}"), 3)
        with pytest.raises(ScrapeError, match="^authentication failed$"):
            run(bad, ("PING",))
        anonymous = RedisConnection(parse_address(f"redis://127.0.0.1:{srv.port}"), 3)
        with pytest.raises(ScrapeError, match="^authentication failed$"):
            run(anonymous, ("INFO",))
    finally:
        srv.stop()


def test_unix_socket(tmp_path: Path) -> None:
    srv = start_redis(tmp_path / "unix", unix_socket=True)
    try:
        conn = RedisConnection(parse_address(f"unix://{srv.unix_socket}"), 3)
        assert run(conn, ("PING",)) == ["PONG"]
        missing = RedisConnection(parse_address(f"unix://{tmp_path}/none.sock"), 3)
        with pytest.raises(ScrapeError, match="unix socket not found"):
            run(missing, ("PING",))
    finally:
        srv.stop()


def test_error_replies_stay_in_their_slot() -> None:
    conn = RedisConnection(parse_address("redis://127.0.0.1:6379"), 3)
    pong, err, echo = run(conn, ("PING",), ("NO-SUCH-COMMAND",), ("ECHO", "x"))
    assert (pong, echo) == ("PONG", "x")
    assert isinstance(err, Exception)


def test_handshake_needs_no_rights_and_counts_no_errors(tmp_path: Path) -> None:
    srv = start_redis(tmp_path / "lean")
    try:
        with srv.admin() as admin:
            admin.execute_command("ACL", "SETUSER", "lean", "on", ">lean-pw", "-@all", "+info")
            errors_before = admin.info("errorstats")
            conn = RedisConnection(parse_address(f"redis://lean:lean-pw@127.0.0.1:{srv.port}"), 3)
            (info,) = run(conn, ("INFO", "server"))
            assert isinstance(info, str) and "redis_version" in info
            assert admin.info("errorstats") == errors_before
    finally:
        srv.stop()


# --- a reused connection that the server closed: retried once on a fresh one ----------------

def test_connection_closed_by_a_restart_is_retried_once(tmp_path: Path) -> None:
    srv = start_redis(tmp_path / "restart")

    async def go() -> list[list[object]]:
        conn = RedisConnection(parse_address(srv.url), 3)
        try:
            first = await conn.execute([("PING",)])
            srv.restart()
            second = await conn.execute([("PING",)])
            assert conn.last_connect_seconds > 0  # the retry dialled anew
            return [first, second, [conn.stats.reconnects]]
        finally:
            await conn.close()

    try:
        assert asyncio.run(go()) == [["PONG"], ["PONG"], [1]]
    finally:
        srv.stop()


def test_idle_timeout_closes_are_retried(tmp_path: Path) -> None:
    srv = start_redis(tmp_path / "idle", ["timeout 1"])

    async def go() -> tuple[list[object], int]:
        conn = RedisConnection(parse_address(srv.url), 3)
        replies: list[object] = []
        try:
            for _ in range(3):
                replies += await conn.execute([("PING",)])
                # Past the server's idle timeout it closes ours (the info call's own
                # connection is then the only client); however long a loaded machine takes.
                await asyncio.sleep(1.5)
                await asyncio.to_thread(wait_for, lambda: int(
                    srv.info("clients")["connected_clients"]) == 1, "the idle close", 30)
            return replies, conn.stats.reconnects
        finally:
            await conn.close()

    try:
        replies, reconnects = asyncio.run(go())
    finally:
        srv.stop()
    assert replies == ["PONG"] * 3
    assert reconnects == 2  # the first scrape dialled; each later one found ours closed


def test_a_server_that_is_really_down_fails_at_once(tmp_path: Path) -> None:
    srv = start_redis(tmp_path / "down")

    async def go() -> float:
        conn = RedisConnection(parse_address(srv.url), 3)
        try:
            await conn.execute([("PING",)])
            srv.stop()
            started = time.monotonic()
            with pytest.raises(ScrapeError, match="^connection refused$"):
                await conn.execute([("PING",)])
            assert conn.stats.reconnects == 1
            with pytest.raises(ScrapeError, match="^connection refused$"):
                await conn.execute([("PING",)])
            assert conn.stats.reconnects == 1  # a fresh dial that fails is not retried
            return time.monotonic() - started
        finally:
            await conn.close()

    assert asyncio.run(go()) < 1.0


def test_failure_after_part_of_a_reply_is_not_retried() -> None:
    # Sends half a reply, then hangs up: the commands may have run, so it is not retried.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            peer, _ = listener.accept()
            with peer:
                peer.recv(65536)
                peer.sendall(b"+PONG\r\n")
                peer.recv(65536)
                peer.sendall(b"$10\r\nhal")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def go() -> int:
        conn = RedisConnection(parse_address(f"redis://127.0.0.1:{port}"), 3)
        try:
            assert await conn.execute([("PING",)]) == ["PONG"]
            with pytest.raises(ScrapeError, match="connection closed by server"):
                await conn.execute([("INFO",)])
            return conn.stats.reconnects
        finally:
            await conn.close()

    try:
        assert asyncio.run(go()) == 0
    finally:
        listener.close()


# --- replies over redis.max_reply_bytes: refused before they are buffered -------------------

@pytest.mark.parametrize("kind", ["bulk", "array", "line"])
def test_huge_reply_is_refused_before_it_is_buffered(kind: str) -> None:
    limits = RedisLimits(max_reply_bytes=1 * MiB)
    with huge_reply_server(kind, size=400 * MiB) as fake:
        async def go() -> tuple[float, int]:
            conn = RedisConnection(parse_address(fake.url), 5, limits)
            try:
                started = time.monotonic()
                with pytest.raises(ScrapeError, match="^reply too large"):
                    await conn.execute([("INFO", "ALL")])
                return time.monotonic() - started, conn.stats.replies_too_large
            finally:
                await conn.close()

        elapsed, refused = asyncio.run(go())
        deadline = time.monotonic() + 5
        while not fake.sent and time.monotonic() < deadline:
            time.sleep(0.01)
    assert refused == 1
    assert elapsed < 2.0
    # The server got to write the cap, the stream reader's window and the socket buffers,
    # not the 400 MiB it meant to.
    assert fake.sent and fake.sent[0] < 40 * MiB


def test_budget_is_per_round_trip(tmp_path: Path) -> None:
    srv = start_redis(tmp_path / "budget")
    limits = RedisLimits(max_reply_bytes=64 * 1024)

    async def go() -> None:
        conn = RedisConnection(parse_address(srv.url), 3, limits)
        try:
            for _ in range(20):  # each INFO ALL fits; twenty of them together would not
                (info,) = await conn.execute([("INFO", "ALL")])
                assert isinstance(info, str) and "redis_version" in info
            with pytest.raises(ScrapeError, match="reply too large"):
                await conn.execute([("INFO", "ALL")] * 20)
        finally:
            await conn.close()

    try:
        asyncio.run(go())
    finally:
        srv.stop()


def test_tls_server_name_is_the_name_verified(tls_server: RedisServer) -> None:
    """The certificate names 127.0.0.1 and localhost: a target reached at 127.0.0.1 with
    `tls.server_name` localhost connects, and with another name fails verification."""
    files = tls_server.tls
    assert files is not None

    def options(name: str) -> TLSOptions:
        return TLSOptions(ca_file=str(files.ca_cert), cert_file=str(files.client_cert),
                          key_file=str(files.client_key), server_name=name)

    named = RedisConnection(with_tls(tls_server.url, options("localhost")), 3)
    assert run(named, ("PING",)) == ["PONG"]
    other = RedisConnection(with_tls(tls_server.url, options("redis.example.com")), 3)
    with pytest.raises(ScrapeError, match="TLS failure: certificate verify failed"):
        run(other, ("PING",))
