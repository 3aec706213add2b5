"""One scrape of one Redis: which commands to send, and their replies as metric families.

The common case is one pipelined round trip: INFO ALL (which includes commandstats, errorstats,
latencystats and keyspace), CONFIG GET, SLOWLOG LEN, SLOWLOG GET 1 and LATENCY LATEST. A cluster
node adds CLUSTER INFO; a sentinel answers only INFO, then the per-master SENTINEL commands in a
second round trip. The server's mode is remembered per connection, so from the second scrape on a
cluster node needs one round trip and a sentinel is not sent the commands it would refuse (each
refusal would count in its own error statistics). An error reply to any command but INFO only
omits that command's families.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

from exporter.exposition import Family
from exporter.redis.cluster import cluster_families
from exporter.redis.commandstats import command_families, error_families
from exporter.redis.config_metrics import PARAMETERS, config_families
from exporter.redis.errors import ScrapeError
from exporter.redis.info import Info, error_code, parse_info
from exporter.redis.info_metrics import info_families
from exporter.redis.instance_info import instance_families
from exporter.redis.keyspace import keyspace_families
from exporter.redis.latency import latency_families
from exporter.redis.replication import replication_families
from exporter.redis.sentinel import (
    sentinel_commands,
    sentinel_detail_families,
    sentinel_info_families,
    watched_masters,
)
from exporter.redis.slowlog import slowlog_families


class Commander(Protocol):
    async def execute(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        """One pipelined round trip; an error reply is a ResponseError instance in its slot."""
        ...


Command = tuple[str, ...]

INFO_ALL: Command = ("INFO", "ALL")
CONFIG_GET: Command = ("CONFIG", "GET", *PARAMETERS)
SLOWLOG_LEN: Command = ("SLOWLOG", "LEN")
SLOWLOG_GET: Command = ("SLOWLOG", "GET", "1")
LATENCY_LATEST: Command = ("LATENCY", "LATEST")
CLUSTER_INFO: Command = ("CLUSTER", "INFO")

STANDALONE, CLUSTER, SENTINEL = "standalone", "cluster", "sentinel"

PLANS: dict[str, tuple[Command, ...]] = {
    STANDALONE: (INFO_ALL, CONFIG_GET, SLOWLOG_LEN, SLOWLOG_GET, LATENCY_LATEST),
    CLUSTER: (INFO_ALL, CONFIG_GET, SLOWLOG_LEN, SLOWLOG_GET, LATENCY_LATEST, CLUSTER_INFO),
    SENTINEL: (INFO_ALL,),
}

_modes: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def mode_of(info: Info) -> str:
    if info.get("server", {}).get("redis_mode") == SENTINEL:
        return SENTINEL
    if info.get("cluster", {}).get("cluster_enabled") == "1":
        return CLUSTER
    return STANDALONE


async def scrape_redis(conn: Commander) -> list[Family]:
    """Raises ScrapeError when INFO itself fails (e.g. an ACL user without +info); connection
    failures propagate from `conn` as they are."""
    first = PLANS[_remembered(conn)]
    replies: dict[Command, Any] = dict(zip(first, await conn.execute(first), strict=True))
    info = _info(replies[INFO_ALL])
    mode = mode_of(info)
    _remember(conn, mode)
    masters = watched_masters(info) if mode == SENTINEL else []
    missing = [command for command in PLANS[mode] if command not in replies]
    extra = sentinel_commands(masters)
    second = await conn.execute([*missing, *extra]) if missing or extra else []
    replies.update(zip(missing, second, strict=False))
    families = translate(info, mode, replies)
    if masters:
        families += sentinel_detail_families(masters, second[len(missing):])
    return families


def translate(info: Info, mode: str, replies: dict[Command, Any]) -> list[Family]:
    families = info_families(info)
    families += instance_families(info)
    families += keyspace_families(info)
    families += command_families(info)
    families += error_families(info)
    families += replication_families(info)
    if mode == SENTINEL:
        families += sentinel_info_families(info)
        return families
    families += config_families(replies.get(CONFIG_GET))
    families += slowlog_families(replies.get(SLOWLOG_LEN), replies.get(SLOWLOG_GET))
    families += latency_families(replies.get(LATENCY_LATEST))
    if mode == CLUSTER:
        families += cluster_families(replies.get(CLUSTER_INFO))
    return families


def _info(reply: Any) -> Info:
    if isinstance(reply, Exception):
        raise ScrapeError(f"INFO refused by the server ({error_code(reply) or 'error'})")
    if not isinstance(reply, str):
        raise ScrapeError("INFO returned no text")
    return parse_info(reply)


def _remembered(conn: Commander) -> str:
    try:
        return _modes.get(conn, STANDALONE)
    except TypeError:  # not weak-referenceable: plan every scrape as for a standalone server
        return STANDALONE


def _remember(conn: Commander, mode: str) -> None:
    with contextlib.suppress(TypeError):
        _modes[conn] = mode
