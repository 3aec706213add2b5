"""The status page's state: the boards, the receiver's recent trouble, and the one scrape of
its own the page may trigger when no scrape passed recently.

When nobody opens the page, the only work is a glance at the Redis families of each `/metrics`
and `/scrape` (for 50 targets, a fraction of a millisecond: bench/status_page.py). The OTLP
store is sampled only when the page or `/api/status` is requested, at most every
`app_board.SPACING_SECONDS`: app rates and trends cover the time since the page was opened, up
to the window."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence

from exporter import __version__
from exporter.config import Config
from exporter.connections import ConnectionStats
from exporter.exposition import Family
from exporter.otlp.state import OtlpState
from exporter.redis.collector import RedisCollector
from exporter.redis.target import RedisTarget
from exporter.status import snapshot
from exporter.status.app_board import FAMILIES, AppBoard, ProducerSeen
from exporter.status.redis_board import RedisBoard
from exporter.status.ring import Ring, rate, step_rate, trend
from exporter.status.views import CountView, ReceiverView, Status

STALE_AFTER_SECONDS = 10.0  # no scrape of a target for this long: the page scrapes it
OWN_SCRAPE_EVERY_SECONDS = 10.0  # at most one scrape of the page's own this often
OWN_SCRAPE_WAIT_SECONDS = 1.5  # how long a view waits for it before showing what it has
SLOW_QUERIES_SHOWN = 10
# A receiver point: (time, requests rejected, data points dropped)
Trouble = tuple[float, float, float]


class StatusState:
    def __init__(self, config: Config, redis: RedisCollector, otlp: OtlpState,
                 connections: ConnectionStats | None = None,
                 clock: Callable[[], float] = time.time,
                 stale_after: float = STALE_AFTER_SECONDS,
                 own_scrape_every: float = OWN_SCRAPE_EVERY_SECONDS) -> None:
        self.config, self.redis, self.otlp = config, redis, otlp
        self.connections = connections
        self.clock = clock
        self.stale_after, self.own_scrape_every = stale_after, own_scrape_every
        self.redis_board = RedisBoard(clock)
        self.app_board = AppBoard(clock)
        self.trouble: Ring[Trouble] = Ring(60, 5.0)
        self._trouble_lock = threading.Lock()  # added to in a worker thread, read on the loop
        self.started = clock()
        self.own_scrapes = 0
        self._own_scrape_at = 0.0
        self._own_scrape: asyncio.Task[None] | None = None

    # --- fed by /metrics and /scrape, and by views ------------------------------------------

    def observe_redis(self, families: Sequence[Family], targets: Sequence[RedisTarget],
                      labelled: bool) -> None:
        self.redis_board.observe(families, [t.address for t in targets], labelled)

    def sample_apps(self) -> None:
        series, producers = self.otlp.status_view(FAMILIES)
        self.app_board.observe(series, [ProducerSeen(*p) for p in producers])
        counters = self.otlp.counters
        point = (self.clock(), float(sum(counters.rejected.values())),
                 float(sum(counters.points_dropped.values())))
        with self._trouble_lock:
            self.trouble.add(point)

    # --- before a view -----------------------------------------------------------------------

    def targets(self) -> list[RedisTarget]:
        found = {t.address: t for t in self.config.targets}
        for address, target in self.config.scrape_targets.items():
            found.setdefault(address, target)
        return list(found.values())

    async def freshen(self) -> None:
        if self.app_board.due():
            await asyncio.to_thread(self.sample_apps)
        task = self._start_own_scrape()
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), OWN_SCRAPE_WAIT_SECONDS)

    def _start_own_scrape(self) -> asyncio.Task[None] | None:
        if self._own_scrape is not None and not self._own_scrape.done():
            return self._own_scrape
        now = self.clock()
        if now - self._own_scrape_at < self.own_scrape_every:
            return None
        stale = [t for t in self.targets() if now - self._last_scrape(t.address)
                 >= self.stale_after]
        if not stale:
            return None
        self._own_scrape_at = now
        self.own_scrapes += 1
        self._own_scrape = asyncio.create_task(self._scrape(stale))
        return self._own_scrape

    def _last_scrape(self, address: str) -> float:
        status = self.redis.status.get(address)
        return status.last_scrape if status is not None else 0.0

    async def _scrape(self, targets: Sequence[RedisTarget]) -> None:
        async def one(target: RedisTarget) -> None:
            families = await self.redis.collect([target], self.config.scrape_timeout)
            self.observe_redis(families, [target], False)
        await asyncio.gather(*(one(t) for t in targets))

    # --- the view ----------------------------------------------------------------------------

    def receiver(self, now: float) -> ReceiverView:
        otlp, counters, store = self.otlp, self.otlp.counters, self.otlp.store
        view = ReceiverView(True)
        listener = next((x for x in (self.connections.listeners if self.connections else ())
                         if x.name == "otlp"), None)
        if listener is None:
            view.accepting = False
            view.reasons.append("the OTLP listener is not serving")
        elif listener.open >= listener.limits.max_connections:
            view.accepting = False
            view.reasons.append(f"at its connection limit ({listener.limits.max_connections}):"
                                " new connections are refused")
        if otlp.applying >= otlp.limits.max_inflight_requests:
            view.accepting = False
            view.reasons.append(f"{otlp.applying} pushes being applied, its limit: more are "
                                "refused as overloaded")
        if store.series_count >= store.max_series_total:
            view.reasons.append(f"series limit reached ({store.max_series_total}): points of "
                                "new series are dropped")
        if store.bytes >= 0.95 * store.max_bytes:
            view.reasons.append("the /metrics size budget is nearly spent: points of new "
                                "series are dropped")
        with self._trouble_lock:
            everything = self.trouble.window(0.0)
        recent = [p for p in everything if p[0] >= now - snapshot.WINDOW_SECONDS]
        view.requests = sum(counters.requests.values())
        view.points_accepted, view.spans_accepted = (counters.points_accepted,
                                                    counters.spans_accepted)
        window = len(recent) > 1
        view.rejected = [CountView(f"{signal}: {reason}", n, None)
                         for (signal, reason), n in counters.rejected.items() if n]
        view.dropped = [CountView(reason, n, None)
                        for reason, n in counters.points_dropped.items() if n]
        if window:
            rejected_rate, dropped_rate = rate(recent, 1), rate(recent, 2)
            seconds = recent[-1][0] - recent[0][0]
            view.reasons += _recent("requests rejected", rejected_rate, seconds)
            view.reasons += _recent("data points dropped", dropped_rate, seconds)
        view.series, view.series_limit = store.series_count, store.max_series_total
        view.series_bytes, view.series_bytes_limit = store.bytes, store.max_bytes
        view.producers = len(store.producers)
        view.trouble_trend = [
            (a or 0.0) + (b or 0.0) if a is not None or b is not None else None
            for a, b in zip(trend(everything, step_rate(1)), trend(everything, step_rate(2)),
                            strict=True)]
        return view

    def build(self) -> Status:
        now = self.clock()
        readings = {r.address: r for r in self.redis_board.readings()}
        addresses = [t.address for t in self.targets()]
        addresses += [a for a in readings if a not in addresses]
        targets = [snapshot.target_view(a, self.redis.status.get(a), readings.get(a), now)
                   for a in addresses]
        targets.sort(key=lambda t: (t.state == "up", t.address))
        trends = len(self.app_board.producers) <= snapshot.SPARKLINE_ROWS
        apps = self.app_board.views(lambda reading: snapshot.app_view(reading, now, trends))
        apps.sort(key=lambda a: (a.state == "pushing", a.service, a.instance))
        slow = [snapshot.slow_view(e) for e in self.otlp.slow_queries.top(SLOW_QUERIES_SHOWN)]
        receiver = self.receiver(now)
        return Status(now, __version__, self.started, snapshot.WINDOW_SECONDS,
                      receiver.accepting, targets, apps, slow, len(self.otlp.slow_queries),
                      receiver, snapshot.service_views(apps))


def _recent(what: str, per_second: float | None, seconds: float) -> list[str]:
    if not per_second or per_second <= 0:
        return []
    return [f"{round(per_second * seconds)} {what} in the last {round(seconds)} s"]
