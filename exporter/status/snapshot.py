"""Turns what the boards hold into the views: rates, ratios, p99 and trends over the window."""

from __future__ import annotations

import math
from collections.abc import Sequence

from exporter.otlp.slowqueries import SlowQuery
from exporter.redis.collector import TargetStatus
from exporter.status import app_board as apps
from exporter.status import redis_board as rb
from exporter.status.ring import increase, levels, rate, ratio, step_rate, step_ratio, trend
from exporter.status.views import (
    AppView,
    CacheView,
    PoolView,
    ServiceView,
    SlowQueryView,
    TargetView,
)

WINDOW_SECONDS = 300.0
SPARKLINE_ROWS = 20  # more app instances than this: no trends for them (nor their lines)


def target_view(address: str, status: TargetStatus | None, reading: rb.TargetReading | None,
                now: float) -> TargetView:
    if status is None and reading is None:
        return TargetView(address, "not scraped yet")
    up = status.up if status is not None else bool(reading and reading.up)
    view = TargetView(address, "up" if up else "down")
    if status is not None:
        view.error = status.error
        view.last_scrape_at = status.last_scrape
        view.last_scrape_duration_seconds = status.duration
        view.degraded = list(status.degraded)
    if reading is not None:
        _fill_target(view, reading, now)
    return view


def _fill_target(view: TargetView, reading: rb.TargetReading, now: float) -> None:
    view.changed_at = reading.changed
    info = reading.info
    view.role = info.get("role", "")
    name = info.get("server_name") or "redis"
    version = info.get("server_version") or info.get("redis_version", "")
    view.server = f"{'Redis' if name == 'redis' else name.capitalize()} {version}".strip()
    view.last_scrape_at = view.last_scrape_at or reading.seen
    if view.state != "up":
        return
    values_ = reading.values
    view.uptime_seconds = values_.get("uptime")
    view.connected_clients = values_.get("clients")
    view.memory_used_bytes = values_.get("memory")
    view.memory_max_bytes = values_.get("maxmemory") or None
    recent = reading.history.window(now - WINDOW_SECONDS, reading.latest)
    view.hit_ratio = ratio(recent, rb.HITS, rb.MISSES)
    view.commands_per_second = rate(recent, rb.COMMANDS)
    view.evictions_per_second = rate(recent, rb.EVICTED)
    everything = reading.history.window(0.0, reading.latest)
    view.hit_ratio_trend = trend(everything, step_ratio(rb.HITS, rb.MISSES))
    view.commands_trend = trend(everything, step_rate(rb.COMMANDS))
    view.memory_trend = levels(everything, rb.MEMORY)


def app_view(reading: apps.ProducerReading, now: float, trends: bool = True) -> AppView:
    view = AppView(reading.service, reading.instance,
                   "pushing" if reading.pushing else "stopped pushing", reading.last_push,
                   reading.interval)
    recent = reading.history.window(now - WINDOW_SECONDS, reading.latest)
    oldest = _oldest_mark(reading, now)
    view.pools = [_pool_view(pool, recent) for pool in reading.pools.values()]
    if reading.has_queries:
        view.query_rate_per_second = rate(recent, apps.QUERY_COUNT)
        if oldest is not None:
            p99, above = quantile(0.99, _delta(reading.buckets, oldest[1]))
            view.query_p99_seconds, view.query_p99_above_largest_bucket = p99, above
        if trends:
            view.query_trend = trend(recent, step_rate(apps.QUERY_COUNT))
    if reading.has_http:
        view.sends_http = True
        view.request_rate_per_second = rate(recent, apps.REQUEST_COUNT)
        view.error_ratio = _error_ratio(recent)
        if trends:
            view.request_trend = trend(recent, step_rate(apps.REQUEST_COUNT))
    view.caches = _caches(reading, oldest, now)
    return view


def _pool_view(pool: apps.Pool, recent: Sequence[apps.Point]) -> PoolView:
    timeouts = increase(recent, apps.TIMEOUTS)
    return PoolView(pool.name, pool.system, pool.used, pool.idle, pool.max, pool.pending,
                    timeouts)


def _oldest_mark(reading: apps.ProducerReading, now: float) -> apps.Mark | None:
    """The earliest mark within the window, unless it is the latest sample itself."""
    for mark in reading.marks.points:
        if mark[0] >= now - WINDOW_SECONDS:
            latest = reading.latest
            return mark if latest is None or mark[0] < latest[0] else None
    return None


def _error_ratio(recent: Sequence[apps.Point]) -> float | None:
    requests, errors = increase(recent, apps.REQUEST_COUNT), increase(recent, apps.ERROR_COUNT)
    if not requests or errors is None:
        return None
    return errors / requests


def _delta(now: apps.Buckets, then: apps.Buckets) -> apps.Buckets:
    before = dict(then)
    deltas = tuple((le, n - before.get(le, 0.0)) for le, n in now)
    if any(d < 0 for _, d in deltas):  # the producer restarted: everything since counts
        return now
    return deltas


def quantile(q: float, buckets: apps.Buckets) -> tuple[float | None, bool]:
    """Prometheus's histogram_quantile over cumulative buckets; (bound, True) when the rank
    falls in the +Inf bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None, False
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if math.isinf(le):
                return lower, True
            inside = n - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 1.0), False
        lower, below = le, n
    return lower, True


def _caches(reading: apps.ProducerReading, oldest: apps.Mark | None, now: float
            ) -> list[CacheView]:
    before = {name: (h, m) for name, h, m in oldest[2]} if oldest is not None else {}
    latest = reading.latest[0] if reading.latest is not None else now
    seconds = latest - oldest[0] if oldest is not None else 0.0
    out = []
    for name, hits, misses in reading.caches:
        then = before.get(name)
        if then is None or hits < then[0] or misses < then[1] or seconds <= 0:
            out.append(CacheView(name, None, None))
            continue
        h, m = hits - then[0], misses - then[1]
        out.append(CacheView(name, h / (h + m) if h + m else None, (h + m) / seconds))
    return out


def slow_view(entry: SlowQuery) -> SlowQueryView:
    return SlowQueryView(entry.service_name, entry.fingerprint, entry.calls,
                         entry.total_seconds / entry.calls if entry.calls else 0.0,
                         entry.max_seconds, entry.last_seen)


def service_views(apps: Sequence[AppView]) -> list[ServiceView]:
    services: dict[str, ServiceView] = {}
    for app in apps:
        total = services.get(app.service)
        if total is None:
            total = services[app.service] = ServiceView(app.service)
        if app.state != "pushing":
            total.stopped += 1
            continue
        total.pushing += 1
        for pool in app.pools:
            total.pool_used += pool.used
            total.pool_max += pool.max or 0.0
            total.pending_requests += pool.pending_requests
            total.timeouts_in_window += pool.timeouts_in_window or 0.0
        total.request_rate_per_second = _plus(total.request_rate_per_second,
                                              app.request_rate_per_second)
        if app.request_rate_per_second is not None and app.error_ratio is not None:
            total.error_rate_per_second = _plus(total.error_rate_per_second,
                                                app.error_ratio * app.request_rate_per_second)
        total.query_rate_per_second = _plus(total.query_rate_per_second,
                                            app.query_rate_per_second)
    for total in services.values():
        if total.request_rate_per_second and total.error_rate_per_second is not None:
            total.error_ratio = total.error_rate_per_second / total.request_rate_per_second
    return sorted(services.values(), key=lambda v: v.service)


def _plus(total: float | None, value: float | None) -> float | None:
    if value is None:
        return total
    return value if total is None else total + value
