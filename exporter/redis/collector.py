"""Scrapes every Redis target concurrently, each bounded by the scrape timeout, and reports
`redis_up`, the scrape's duration and whether it failed. A target that is down or hung costs at
most the timeout and yields `redis_up 0`; it never fails the scrape."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.exposition import Family, Labels, Sample, gauge, merge
from exporter.redis.connection import RedisConnection
from exporter.redis.errors import ScrapeError
from exporter.redis.scrape import scrape_redis
from exporter.redis.target import RedisTarget

log = logging.getLogger("exporter.redis")


@dataclass(slots=True)
class TargetStatus:
    up: bool = False
    error: str = ""
    last_scrape: float = 0.0
    duration: float = 0.0


class RedisCollector:
    """Owns one persistent connection per target it has been asked to scrape."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.status: dict[str, TargetStatus] = {}
        self._connections: dict[str, RedisConnection] = {}

    def connection(self, target: RedisTarget) -> RedisConnection:
        conn = self._connections.get(target.address)
        if conn is None or conn.target != target:
            conn = RedisConnection(target, self.timeout)
            self._connections[target.address] = conn
        return conn

    async def collect(self, targets: Iterable[RedisTarget], timeout: float | None = None,
                      label_targets: bool = False) -> list[Family]:
        bound = min(timeout or self.timeout, self.timeout)
        results = await asyncio.gather(*(self._scrape(t, bound) for t in targets))
        if label_targets:
            results = [_with_target(fams, t.address) for fams, t in zip(results, targets,
                                                                          strict=True)]
        return merge(results)

    async def _scrape(self, target: RedisTarget, timeout: float) -> list[Family]:
        conn = self.connection(target)
        started = time.perf_counter()
        families: list[Family] = []
        error = ""
        try:
            async with asyncio.timeout(timeout):
                families = await scrape_redis(conn)
        except TimeoutError:  # the cancelled execute() has dropped the connection already
            error = f"timeout after {timeout:g}s"
        except ScrapeError as exc:
            error = exc.reason
        except Exception as exc:
            log.exception("scrape failed unexpectedly", extra={"target": target.address})
            error = f"unexpected error ({type(exc).__name__})"
            families = []
        duration = time.perf_counter() - started
        self._record(target.address, error, duration)
        return [*families, *_scrape_families(not error, error, duration,
                                             conn.last_connect_seconds)]

    def _record(self, address: str, error: str, duration: float) -> None:
        previous = self.status.get(address)
        if error and (previous is None or previous.error != error):
            log.warning("redis scrape failed", extra={"target": address, "err": error})
        elif not error and previous is not None and previous.error:
            log.info("redis scrape recovered", extra={"target": address})
        self.status[address] = TargetStatus(not error, error, time.time(), duration)

    async def close(self) -> None:
        for conn in self._connections.values():
            await conn.close()


def _scrape_families(up: bool, error: str, duration: float, connect: float) -> list[Family]:
    return [
        gauge("redis_up", "Whether the last scrape of Redis succeeded", 1 if up else 0),
        gauge("redis_exporter_last_scrape_duration_seconds",
              "Duration of the last scrape of this target", duration),
        gauge("redis_exporter_last_scrape_error",
              "Whether the last scrape of this target failed (1) or not (0); the reason is "
              "logged and shown on /healthz", 1 if error else 0),
        gauge("redis_exporter_last_scrape_connect_time_seconds",
              "Time spent (re)connecting during the last scrape; 0 when the persistent "
              "connection was reused", connect),
    ]


def _with_target(families: list[Family], address: str) -> list[Family]:
    label: Labels = (("target", address),)
    return [Family(f.name, f.type, f.help, [Sample(s.suffix, label + s.labels, s.value)
                                            for s in f.samples]) for f in families]
