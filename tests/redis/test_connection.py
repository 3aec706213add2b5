"""Reaching Redis: TLS with a client certificate, ACL users, unix sockets, precise errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.redis.connection import RedisConnection
from exporter.redis.errors import ScrapeError
from exporter.redis.target import RedisTarget, TLSOptions, parse_address
from tests.support.redis_servers import (
    ACL_USER,
    RedisServer,
    start_acl_server,
    start_redis,
    start_tls_server,
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
