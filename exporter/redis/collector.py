"""Scrapes every Redis target concurrently, each bounded by the scrape timeout, and reports
`redis_up`, the scrape's duration and whether it failed. A target that is down or hung costs at
most the timeout and yields `redis_up 0`; it never fails the scrape.

Scrapes of one target are single-flight: a scrape that arrives while a round trip to its target
is in flight waits for that round trip's result (within its own deadline) instead of sending
another. Round trips to one target start at least `redis.min_round_trip_interval` apart: one that
would start sooner is held back (by at most half its deadline), and the scrapes arriving
meanwhile join it. Nothing is cached: every result comes from a round trip that was in flight or
not yet started when the scrape arrived, and is never served once that round trip has ended. So
50 clients looping `/metrics` cost Redis a few round trips a second, not one per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.exposition import Family, Labels, Sample, counter, gauge, merge
from exporter.limits import RedisLimits
from exporter.redis.connection import ConnectionStats, RedisConnection
from exporter.redis.errors import ScrapeError
from exporter.redis.scrape import degradations, scrape_redis
from exporter.redis.target import RedisTarget

log = logging.getLogger("exporter.redis")
TARGET_LABEL = "target"


@dataclass(slots=True)
class TargetStatus:
    up: bool = False
    error: str = ""
    last_scrape: float = 0.0
    duration: float = 0.0
    degraded: tuple[str, ...] = ()  # what the target refused and what is left out (/healthz)


@dataclass(slots=True)
class RoundTrip:
    """One scrape of one target as every scrape that joined it sees it."""

    families: list[Family] = field(default_factory=list)
    error: str = ""
    duration: float = 0.0
    connect: float = 0.0


class RedisCollector:
    """Owns one persistent connection per target it has been asked to scrape."""

    def __init__(self, timeout: float, limits: RedisLimits | None = None) -> None:
        self.timeout = timeout
        self.limits = limits or RedisLimits()
        self.status: dict[str, TargetStatus] = {}
        self.stats: dict[str, ConnectionStats] = {}
        self.round_trips: dict[str, int] = {}
        self.joined: dict[str, int] = {}
        self.delayed: dict[str, int] = {}
        self._next_start: dict[str, float] = {}
        self._logged_degradations: dict[str, set[str]] = {}
        self._connections: dict[str, RedisConnection] = {}
        self._in_flight: dict[str, tuple[RedisTarget, asyncio.Task[RoundTrip]]] = {}

    def connection(self, target: RedisTarget) -> RedisConnection:
        conn = self._connections.get(target.address)
        if conn is None or conn.target != target:
            stats = self.stats.setdefault(target.address, ConnectionStats())
            conn = RedisConnection(target, self.timeout, self.limits, stats)
            self._connections[target.address] = conn
        return conn

    async def collect(self, targets: Iterable[RedisTarget], timeout: float | None = None,
                      label_targets: bool = False) -> list[Family]:
        bound = min(timeout or self.timeout, self.timeout)
        targets = list(targets)
        results = await asyncio.gather(*(self._scrape(t, bound) for t in targets))
        if label_targets:
            results = [_with_target(fams, t.address) for fams, t in zip(results, targets,
                                                                          strict=True)]
        return merge(results)

    async def _scrape(self, target: RedisTarget, timeout: float) -> list[Family]:
        result = await self._shared(target, timeout)
        return [*result.families, *_scrape_families(not result.error, result.error,
                                                    result.duration, result.connect)]

    async def _shared(self, target: RedisTarget, timeout: float) -> RoundTrip:
        """Start a round trip, or join the one in flight; either way it is shielded from this
        scrape's cancellation, as others may be waiting for it too."""
        task = self._joinable(target)
        if task is None:
            delay = self._pace(target.address, timeout)
            task = asyncio.create_task(self._round_trip(target, timeout, delay))
            self._in_flight[target.address] = (target, task)
            task.add_done_callback(lambda done: self._landed(target.address, done))
            return await asyncio.shield(task)  # bounded by the round trip's own deadline
        self.joined[target.address] = self.joined.get(target.address, 0) + 1
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(task)
        except TimeoutError:  # the round trip goes on for whoever started it
            return RoundTrip(error=f"timeout after {timeout:g}s",
                             duration=time.perf_counter() - started)

    def _joinable(self, target: RedisTarget) -> asyncio.Task[RoundTrip] | None:
        started, task = self._in_flight.get(target.address, (None, None))
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            return None
        return task if started == target else None

    def _pace(self, address: str, timeout: float) -> float:
        """How long the next round trip to `address` waits, so that two start at least the
        minimum interval apart; never more than half the deadline."""
        now = time.monotonic()
        delay = min(max(0.0, self._next_start.get(address, now) - now), timeout / 2)
        self._next_start[address] = now + delay + self.limits.min_round_trip_interval_seconds
        if delay > 0:
            self.delayed[address] = self.delayed.get(address, 0) + 1
        return delay

    def _landed(self, address: str, task: asyncio.Task[RoundTrip]) -> None:
        if self._in_flight.get(address, (None, None))[1] is task:
            del self._in_flight[address]

    async def _round_trip(self, target: RedisTarget, timeout: float,
                          delay: float = 0.0) -> RoundTrip:
        conn = self.connection(target)
        self.round_trips[target.address] = self.round_trips.get(target.address, 0) + 1
        if delay:
            await asyncio.sleep(delay)
            timeout -= delay
        started = time.perf_counter()
        conn.reset_connect_time()
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
        self._record(target.address, error, duration, self._degraded(target.address, conn))
        return RoundTrip(families, error, duration, conn.last_connect_seconds)

    def _degraded(self, address: str, conn: RedisConnection) -> tuple[str, ...]:
        """What the target refuses; each reason logged once per target (a reconnect finds the
        same refusals again and logs nothing)."""
        reasons = tuple(degradations(conn))
        logged = self._logged_degradations.setdefault(address, set())
        for reason in reasons:
            if reason not in logged:
                logged.add(reason)
                log.warning("redis target refuses a command", extra={"target": address,
                                                                      "reason": reason})
        return reasons

    def _record(self, address: str, error: str, duration: float,
                degraded: tuple[str, ...] = ()) -> None:
        previous = self.status.get(address)
        if error and (previous is None or previous.error != error):
            log.warning("redis scrape failed", extra={"target": address, "err": error})
        elif not error and previous is not None and previous.error:
            log.info("redis scrape recovered", extra={"target": address})
        self.status[address] = TargetStatus(not error, error, time.time(), duration, degraded)

    def counters(self) -> list[Family]:
        """The sidecar's own counters of its Redis connections, labelled by redacted address."""
        reconnects = counter(
            "tradesense_exporter_redis_reconnects_total",
            "Round trips retried once on a fresh connection because the reused one failed "
            "before any reply (server restarted, or its idle timeout closed it)")
        too_large = counter(
            "tradesense_exporter_redis_replies_too_large_total",
            "Scrapes refused because the target's replies exceeded redis.max_reply_bytes "
            "(the connection was dropped)")
        round_trips = counter(
            "tradesense_exporter_redis_round_trips_total",
            "Scrapes of a target that sent their own round trip to Redis")
        joined = counter(
            "tradesense_exporter_redis_scrapes_joined_total",
            "Scrapes of a target that shared a round trip in flight or about to start instead "
            "of sending their own")
        delayed = counter(
            "tradesense_exporter_redis_round_trips_delayed_total",
            "Round trips held back to start redis.min_round_trip_interval after the previous "
            "one to the same target")
        for address, stats in sorted(self.stats.items()):
            label = target_labels(address)
            reconnects.add(stats.reconnects, label)
            too_large.add(stats.replies_too_large, label)
        for address, count in sorted(self.round_trips.items()):
            label = target_labels(address)
            round_trips.add(count, label)
            joined.add(self.joined.get(address, 0), label)
            delayed.add(self.delayed.get(address, 0), label)
        return [reconnects, too_large, round_trips, joined, delayed]

    async def close(self) -> None:
        for _, task in list(self._in_flight.values()):
            task.cancel()
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


def target_labels(address: str) -> Labels:
    """The label that tells targets apart when one exposition holds several."""
    return ((TARGET_LABEL, address),)


def _with_target(families: list[Family], address: str) -> list[Family]:
    label = target_labels(address)
    return [Family(f.name, f.type, f.help, [Sample(s.suffix, label + s.labels, s.value)
                                            for s in f.samples]) for f in families]
