"""Helpers for the Redis tests: scrape a test server through the real connection, read the
reference files."""

from __future__ import annotations

import asyncio
from pathlib import Path

from exporter.exposition import Family, render
from exporter.redis.connection import RedisConnection
from exporter.redis.parse import Info, parse_info
from exporter.redis.scrape import scrape_redis
from exporter.redis.target import RedisTarget, TLSOptions, parse_address
from tests.support.redis_servers import RedisServer

DATA_DIR = Path(__file__).parent / "data"
REFERENCE_DIR = DATA_DIR / "redis_exporter-1.45"
SCRAPE_TIMEOUT = 5.0


def target_for(server: RedisServer, username: str | None = None,
               password: str | None = None) -> RedisTarget:
    if server.tls:
        tls = TLSOptions(str(server.tls.ca_cert), str(server.tls.client_cert),
                         str(server.tls.client_key))
        return RedisTarget(server.url, "rediss", host=server.host, port=server.port,
                           username=username, password=password, tls=tls)
    target = parse_address(server.url)
    return RedisTarget(target.address, target.scheme, host=target.host, port=target.port,
                       username=username, password=password if password else server.password)


def connection_for(server: RedisServer, **credentials: str) -> RedisConnection:
    return RedisConnection(target_for(server, **credentials), SCRAPE_TIMEOUT)


def scrape(server: RedisServer, times: int = 1, **credentials: str) -> list[Family]:
    """`times` scrapes over one persistent connection; the last one's families."""

    async def run() -> list[Family]:
        conn = connection_for(server, **credentials)
        try:
            families: list[Family] = []
            for _ in range(times):
                families = await scrape_redis(conn)
            return families
        finally:
            await conn.close()

    return asyncio.run(run())


def scrape_text(server: RedisServer, times: int = 1, **credentials: str) -> str:
    return render(scrape(server, times, **credentials)).decode()


def by_name(families: list[Family]) -> dict[str, Family]:
    return {fam.name: fam for fam in families}


def reference(name: str) -> str:
    """A redis_exporter 1.45 output (copied from the shared reference folder; see its README)."""
    return (REFERENCE_DIR / name).read_text()


def reference_info_text() -> str:
    """The reference master's INFO ALL, with Redis's CRLF line ends."""
    return (DATA_DIR / "redis-7.0.15-info-all.txt").read_text().replace("\n", "\r\n")


def reference_info() -> Info:
    return parse_info(reference_info_text())
