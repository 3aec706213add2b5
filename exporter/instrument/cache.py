"""App cache metrics: what a cache records on each lookup, and a read-through helper.

No semantic convention covers application caches; the instruments take Micrometer's shape
(`cache.gets` with a hit/miss result, `cache.puts`, `cache.evictions`) with OpenTelemetry attribute
names, plus `cache.layer` for layered caches and `cache.errors` for a layer that failed while
the next one served. A layered lookup records one get: a hit with the layer that served it, a
miss with the last layer tried, so the end-to-end hit ratio is hits over all gets.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from exporter import semconv
from exporter.bounded import BoundedNames
from exporter.instrument.counters import CounterCell, LocalCounter

log = logging.getLogger(__name__)

MAX_CACHE_NAMES = 100
MAX_LAYERS = 8
DEFAULT_LAYER = "default"


class CacheInstruments:
    """The `cache.*` instruments of one meter, and the bounds on their attribute values."""

    def __init__(self, meter: Any, errors: BoundedNames) -> None:
        def counter(name: str, unit: str, description: str) -> LocalCounter:
            return LocalCounter(meter, name, unit, description)

        self.gets = counter(semconv.CACHE_GETS, "{get}",
                            "Cache lookups, by the layer that answered and hit or miss")
        self.puts = counter(semconv.CACHE_PUTS, "{put}", "Entries stored in the cache")
        self.evictions = counter(semconv.CACHE_EVICTIONS, "{eviction}",
                                 "Entries the cache removed to make room or on expiry")
        self.invalidations = counter(semconv.CACHE_INVALIDATIONS, "{invalidation}",
                                     "Entries removed because the data behind them changed")
        self.errors = counter(semconv.CACHE_ERRORS, "{error}",
                              "Cache layer failures; the next layer or the loader served")
        self.names = BoundedNames(MAX_CACHE_NAMES, semconv.OTHER)
        self.layers = BoundedNames(MAX_LAYERS, semconv.OTHER)
        self.error_types = errors


class CacheMetrics:
    """The recorder of one named cache. Every method is safe from any thread or task."""

    def __init__(self, instruments: CacheInstruments, name: str) -> None:
        self._instruments = instruments
        self.name = instruments.names.admit(str(name)[:128])
        self.active = True
        self._cells: dict[tuple[str, str, str], CounterCell] = {}
        self._hits: dict[str, CounterCell] = {}
        self._misses: dict[str, CounterCell] = {}

    def hit(self, layer: str = DEFAULT_LAYER) -> None:
        cell = self._hits.get(layer)
        if cell is None or not self.active:
            cell = self._cell("gets", layer, semconv.HIT)
        cell.increment()

    def miss(self, layer: str = DEFAULT_LAYER) -> None:
        cell = self._misses.get(layer)
        if cell is None or not self.active:
            cell = self._cell("gets", layer, semconv.MISS)
        cell.increment()

    def lookup(self, hit: bool, layer: str = DEFAULT_LAYER) -> None:
        self._cell("gets", layer, semconv.HIT if hit else semconv.MISS).add()

    def put(self, layer: str = DEFAULT_LAYER, count: int = 1) -> None:
        self._cell("puts", layer).add(count)

    def eviction(self, layer: str = DEFAULT_LAYER, count: int = 1) -> None:
        self._cell("evictions", layer).add(count)

    def invalidation(self, layer: str = DEFAULT_LAYER, count: int = 1) -> None:
        self._cell("invalidations", layer).add(count)

    def error(self, layer: str, error: BaseException | str) -> None:
        """A layer failed and the next one (or the loader) served instead."""
        kind = error if isinstance(error, str) else type(error).__qualname__
        self._cell("errors", layer, kind).add()

    def read_through(
        self,
        key: Any,
        load: Callable[[], Any],
        *,
        get: Callable[[Any], Any],
        set: Callable[[Any, Any, float | None], Any],
        ttl: float | None = None,
        layer: str = DEFAULT_LAYER,
    ) -> Any:
        """`get(key)`; on a miss (None) `load()` and `set(key, value, ttl)`. A `get` or `set`
        that raises is recorded as an error of `layer` and costs only the cache."""
        try:
            cached = get(key)
        except Exception as failure:
            self._failed(layer, failure)
            cached = None
        if cached is not None:
            self.hit(layer)
            return cached
        self.miss(layer)
        value = load()
        try:
            set(key, value, ttl)
            self.put(layer)
        except Exception as failure:
            self._failed(layer, failure)
        return value

    async def aread_through(
        self,
        key: Any,
        load: Callable[[], Awaitable[Any]],
        *,
        get: Callable[[Any], Awaitable[Any]],
        set: Callable[[Any, Any, float | None], Awaitable[Any]],
        ttl: float | None = None,
        layer: str = DEFAULT_LAYER,
    ) -> Any:
        """`read_through` for coroutine functions."""
        try:
            cached = await get(key)
        except Exception as failure:
            self._failed(layer, failure)
            cached = None
        if cached is not None:
            self.hit(layer)
            return cached
        self.miss(layer)
        value = await load()
        try:
            await set(key, value, ttl)
            self.put(layer)
        except Exception as failure:
            self._failed(layer, failure)
        return value

    def _failed(self, layer: str, failure: Exception) -> None:
        self.error(layer, failure)
        log.debug("cache %s layer %s failed: %s", self.name, layer, type(failure).__qualname__)

    def _cell(self, kind: str, layer: str, extra: str = "") -> CounterCell:
        cell = self._cells.get((kind, layer, extra))
        if cell is None:
            cell = self._new_cell(kind, layer, extra)
        return cell if self.active else _DISCARD

    def _new_cell(self, kind: str, layer: str, extra: str) -> CounterCell:
        instruments = self._instruments
        admitted = instruments.layers.admit(str(layer)[:64])
        attributes = {semconv.CACHE_NAME: self.name, semconv.CACHE_LAYER: admitted}
        if kind == "gets":
            attributes[semconv.CACHE_RESULT] = extra
        elif kind == "errors":
            attributes[semconv.ERROR_TYPE] = instruments.error_types.admit(extra[:128])
        counter: LocalCounter = getattr(instruments, kind)
        if kind == "gets":  # both results from the first lookup on, so rate() sees every one
            other = semconv.MISS if extra == semconv.HIT else semconv.HIT
            sibling = {**attributes, semconv.CACHE_RESULT: other}
            counter.cell(tuple(sorted(sibling.items())), sibling)
        cell = counter.cell(tuple(sorted(attributes.items())), attributes)
        if len(self._cells) < 4096:
            self._cells[(kind, layer, extra)] = cell
            if kind == "gets":
                (self._hits if extra == semconv.HIT else self._misses)[layer] = cell
        return cell


_DISCARD = CounterCell({})
