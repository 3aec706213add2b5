"""The Server section's identity: redis_instance_info and redis_start_time_seconds.

Forks say who they are in their own fields: Valkey 8 writes `server_name:valkey`,
`valkey_version` and `server_mode` (no `redis_mode`), with `redis_version` frozen at the Redis
version it is compatible with; Dragonfly adds `dragonfly_version`; KeyDB has no version field of
its own but fields no other server prints (`server_threads`, `mvcc_depth`). `server_name` and
`server_version` say which server and which of its versions; `redis_version` stays the INFO field,
as in redis_exporter.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter.exposition import Family
from exporter.redis.metric_table import FAMILIES
from exporter.redis.parse import Fields, Info

INSTANCE_INFO = FAMILIES["redis_instance_info"]
START_TIME = FAMILIES["redis_start_time_seconds"]

# Each label is the INFO field of the same name, in this section. A sentinel has no role nor
# maxmemory_policy: those labels are then "", as in redis_exporter.
_LABEL_SECTIONS = {"role": "replication", "maxmemory_policy": "memory"}
_DERIVED = frozenset({"redis_mode", "server_name", "server_version"})
_LABELS = tuple((label, _LABEL_SECTIONS.get(label, "server")) for label in INSTANCE_INFO.labels
                if label not in _DERIVED)

# A fork's own version field, and the server it names.
_VERSION_FIELDS = (("valkey_version", "valkey"), ("dragonfly_version", "dragonfly"),
                   ("keydb_version", "keydb"))
# Fields only KeyDB prints, in whichever section.
_KEYDB_MARKS = ("server_threads", "mvcc_depth")

_EMPTY: Fields = {}


def server_mode(info: Info) -> str:
    """`standalone`, `cluster` or `sentinel`: Redis's `redis_mode`, or Valkey 8's `server_mode`."""
    server = info.get("server", _EMPTY)
    return server.get("redis_mode") or server.get("server_mode", "")


def server_flavour(info: Info) -> tuple[str, str]:
    """(server_name, server_version): ("valkey", "8.0.1"), ("redis", "7.0.15"), ..."""
    server = info.get("server", _EMPTY)
    for field, name in _VERSION_FIELDS:
        version = server.get(field)
        if version:
            return server.get("server_name") or name, version
    version = server.get("redis_version", "")
    if server.get("server_name"):
        return server["server_name"], version
    if any(field in fields for fields in info.values() for field in _KEYDB_MARKS):
        return "keydb", version
    return "redis", version


def instance_families(info: Info, target: str = "") -> list[Family]:
    """`target` (the scraped address) keeps the start time of servers that do not report their
    clock apart; without it, the server's own identity fields do (see `StartClock`)."""
    fam = INSTANCE_INFO.family()
    name, version = server_flavour(info)
    values = {label: info.get(section, _EMPTY).get(label, "") for label, section in _LABELS}
    values.update(redis_mode=server_mode(info), server_name=name, server_version=version)
    fam.add(1.0, tuple((label, values[label]) for label in INSTANCE_INFO.labels))
    out = [fam]
    start = START_CLOCK.start_time(info.get("server", _EMPTY), target)
    if start is not None:
        started = START_TIME.family()
        started.add(start)
        out.append(started)
    return out


def start_time(server: Fields, now: float | None = None) -> float | None:
    """Redis's own start time: its clock (`server_time_usec`, whole seconds) minus its uptime.
    Without `server_time_usec` (Redis < 5, Dragonfly), the local clock `now` minus the uptime:
    that jitters by a second between calls; `StartClock` steadies it."""
    try:
        uptime = int(server["uptime_in_seconds"])
    except (KeyError, ValueError):
        return None
    try:
        server_now = int(server["server_time_usec"]) // 1_000_000
    except (KeyError, ValueError):
        server_now = int(time.time() if now is None else now)
    return float(server_now - uptime)


class StartClock:
    """The start time of servers whose INFO has no `server_time_usec`, kept steady per server.

    The first start time computed for a server (the target and its `run_id`, or where there is
    no run_id its port, pid and version) is remembered and reported until the server restarts:
    its run_id changes, its uptime goes backwards, or the local clock says it started more than
    `tolerance` seconds away (a clock step, or another server behind the same identity). At
    most `max_servers` are remembered, the least recently seen forgotten first.
    """

    def __init__(self, clock: Callable[[], float] = time.time, tolerance: float = 2.0,
                 max_servers: int = 4096) -> None:
        self._clock = clock
        self._tolerance = tolerance
        self._max = max_servers
        self._known: dict[tuple[str, ...], tuple[float, int]] = {}

    def start_time(self, server: Fields, target: str = "") -> float | None:
        if "server_time_usec" in server:
            return start_time(server)
        computed = start_time(server, self._clock())
        if computed is None:
            return None
        uptime = int(server["uptime_in_seconds"])
        key = (target, server.get("run_id", ""), server.get("tcp_port", ""),
               server.get("process_id", ""), server.get("redis_version", ""),
               server.get("dragonfly_version", ""))
        known = self._known.pop(key, None)
        start = computed
        if known is not None:
            remembered, last_uptime = known
            if uptime >= last_uptime and abs(computed - remembered) <= self._tolerance:
                start = remembered
        self._known[key] = (start, uptime)
        if len(self._known) > self._max:
            del self._known[next(iter(self._known))]
        return start


START_CLOCK = StartClock()
