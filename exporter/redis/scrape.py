"""One scrape of one Redis: which commands to send, and their replies as metric families.

The common case is one pipelined round trip: INFO ALL (which includes commandstats, errorstats,
latencystats and keyspace), CONFIG GET, SLOWLOG LEN, SLOWLOG GET 1 and LATENCY LATEST. A cluster
node adds CLUSTER INFO; a sentinel (`redis_mode:sentinel`, or Valkey's `server_mode:sentinel`)
answers only INFO, then the per-master SENTINEL commands in a second round trip. The server's
mode is remembered per connection. The first scrape on a connection sends INFO alone and the
rest once INFO has told the mode, so a sentinel is never sent the commands it would refuse (each
refusal would count in its own error statistics); from the second scrape on, a standalone server
or cluster node needs one round trip.

Servers that refuse commands (old Redis, proxies, managed services that rename CONFIG, ACLs) are
scraped for what they do answer, and a refused command is remembered per connection and not
sent again until the connection is replaced (then it is tried once more):
- `INFO ALL` refused: plain `INFO`, then `INFO commandstats` and `INFO latencystats` (each one
  the server refuses is left out too). `INFO` itself refused fails the scrape.
- `CONFIG GET` with several parameters refused (Redis before 7): one parameter at a time.
- `CONFIG`, `SLOWLOG`, `LATENCY` or `CLUSTER INFO` refused: their families are absent.
`degradations(conn)` names what is left out and why, for the log and /healthz.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from exporter.exposition import Family
from exporter.redis.cluster import cluster_families
from exporter.redis.commandstats import command_families, error_families
from exporter.redis.config_metrics import PARAMETERS, config_families
from exporter.redis.errors import ScrapeError
from exporter.redis.fields import info_families
from exporter.redis.identity import instance_families
from exporter.redis.keyspace import keyspace_families
from exporter.redis.latency import latency_families
from exporter.redis.parse import Info, error_code, parse_info
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
INFO_PLAIN: Command = ("INFO",)
INFO_SECTIONS: tuple[Command, ...] = (("INFO", "commandstats"), ("INFO", "latencystats"))
CONFIG_GET: Command = ("CONFIG", "GET", *PARAMETERS)
CONFIG_GET_ONE: tuple[Command, ...] = tuple(("CONFIG", "GET", p) for p in PARAMETERS)
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

# Error codes that say "not now" rather than "never": such a reply is not remembered.
TRANSIENT = frozenset({"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"})

# What a refusal leaves out, for the log and /healthz.
CONSEQUENCES: dict[Command, str] = {
    INFO_ALL: "INFO ALL refused: plain INFO and its sections scraped instead",
    INFO_SECTIONS[0]: "INFO commandstats refused: command families not exported",
    INFO_SECTIONS[1]: "INFO latencystats refused: latency percentile families not exported",
    CONFIG_GET: "CONFIG GET with several parameters refused: one parameter at a time",
    SLOWLOG_LEN: "SLOWLOG LEN refused: redis_slowlog_length not exported",
    SLOWLOG_GET: "SLOWLOG GET refused: slowlog last id and duration not exported",
    LATENCY_LATEST: "LATENCY refused: latency spike families not exported",
    CLUSTER_INFO: "CLUSTER INFO refused: cluster families not exported",
}
SLOWLOG_REFUSED = "SLOWLOG refused: slowlog families not exported"
CONFIG_REFUSED = "CONFIG refused: config families not exported"


@dataclass(slots=True)
class Degradation:
    """What one connection's server has refused, and which connection that was (a replaced
    connection tries everything again)."""

    mode: str | None = None  # unknown until this connection's first INFO
    generation: int = -1
    refused: dict[Command, str] = field(default_factory=dict)  # command -> error code

    def sync(self, generation: int) -> None:
        if generation != self.generation:
            self.generation = generation
            self.mode = None
            self.refused.clear()

    def info_plan(self) -> tuple[Command, ...]:
        if INFO_ALL not in self.refused:
            return (INFO_ALL,)
        return (INFO_PLAIN, *(c for c in INFO_SECTIONS if c not in self.refused))

    def plan(self, mode: str) -> list[Command]:
        out = list(self.info_plan())
        for command in PLANS[mode][1:]:
            if command == CONFIG_GET and command in self.refused:
                out += [c for c in CONFIG_GET_ONE if c not in self.refused]
            elif command not in self.refused:
                out.append(command)
        return out

    def learn(self, replies: dict[Command, Any]) -> None:
        """Remember the optional commands the server refused."""
        for command, reply in replies.items():
            if not isinstance(reply, Exception) or command in (INFO_ALL, INFO_PLAIN):
                continue
            code = error_code(reply)
            if code in TRANSIENT:
                continue
            self.refused[command] = code
            if command == CONFIG_GET and _whole_command_refused(reply):
                for one in CONFIG_GET_ONE:  # no point asking for one parameter at a time
                    self.refused[one] = code

    def reasons(self) -> list[str]:
        refused = self.refused
        out = [CONSEQUENCES[INFO_ALL]] if INFO_ALL in refused else []
        out += [CONSEQUENCES[c] for c in INFO_SECTIONS if c in refused]
        if all(c in refused for c in (CONFIG_GET, *CONFIG_GET_ONE)):
            out.append(CONFIG_REFUSED)
        elif CONFIG_GET in refused:
            out.append(CONSEQUENCES[CONFIG_GET])
            out += [f"CONFIG GET {c[2]} refused: its config family not exported"
                    for c in CONFIG_GET_ONE if c in refused]
        if SLOWLOG_LEN in refused and SLOWLOG_GET in refused:
            out.append(SLOWLOG_REFUSED)
        else:
            out += [CONSEQUENCES[c] for c in (SLOWLOG_LEN, SLOWLOG_GET) if c in refused]
        out += [CONSEQUENCES[c] for c in (LATENCY_LATEST, CLUSTER_INFO) if c in refused]
        return out


_states: weakref.WeakKeyDictionary[Any, Degradation] = weakref.WeakKeyDictionary()


def mode_of(info: Info) -> str:
    server = info.get("server", {})
    if SENTINEL in (server.get("redis_mode"), server.get("server_mode")):
        return SENTINEL
    if info.get("cluster", {}).get("cluster_enabled") == "1":
        return CLUSTER
    return STANDALONE


def degradations(conn: Commander) -> list[str]:
    """What the server behind `conn` refused and what is therefore left out (empty for a
    sentinel: it is never sent those commands once known)."""
    state = _peek(conn)
    if state is None or state.mode == SENTINEL:
        return []
    return state.reasons()


async def scrape_redis(conn: Commander) -> list[Family]:
    """Raises ScrapeError when INFO itself fails (e.g. an ACL user without +info); connection
    failures propagate from `conn` as they are."""
    state = _state(conn)
    state.sync(_generation(conn))
    first = list(state.info_plan()) if state.mode is None else state.plan(state.mode)
    replies: dict[Command, Any] = dict(zip(first, await conn.execute(first), strict=True))
    state.sync(_generation(conn))  # replaced during the round trip: the refused are tried again
    info_sent = [command for command in first if command[0] == "INFO"]
    if _info_all_refused(replies.get(INFO_ALL)):
        state.refused[INFO_ALL] = error_code(replies[INFO_ALL])
        info_sent = list(state.info_plan())
        replies.update(zip(info_sent, await conn.execute(info_sent), strict=True))
    info = _info(replies, info_sent)
    mode = state.mode = mode_of(info)
    if mode != SENTINEL:
        state.learn(replies)
    masters = watched_masters(info) if mode == SENTINEL else []
    missing = _unsent(state, mode, replies)
    extra = sentinel_commands(masters)
    second = await conn.execute([*missing, *extra]) if missing or extra else []
    more = dict(zip(missing, second, strict=False))
    if mode != SENTINEL:
        state.learn(more)
        replies.update(more)
        # What the replies just made necessary: one CONFIG GET per parameter after the
        # multi-parameter form was refused on this connection's first scrape.
        fallback = _unsent(state, mode, replies)
        if fallback:
            more = dict(zip(fallback, await conn.execute(fallback), strict=True))
            state.learn(more)
            replies.update(more)
    families = translate(info, mode, replies, _address(conn))
    if masters:
        families += sentinel_detail_families(masters, second[len(missing):])
    return families


def _unsent(state: Degradation, mode: str, replies: dict[Command, Any]) -> list[Command]:
    return [command for command in state.plan(mode)
            if command not in replies and command[0] != "INFO"]


def translate(info: Info, mode: str, replies: dict[Command, Any],
              target: str = "") -> list[Family]:
    """`target`: the scraped address, which keeps apart the start times of servers that do not
    report their clock nor a run_id (see `instance_families`)."""
    families = info_families(info)
    families += instance_families(info, target)
    families += keyspace_families(info)
    families += command_families(info)
    families += error_families(info)
    families += replication_families(info)
    if mode == SENTINEL:
        families += sentinel_info_families(info)
        return families
    families += config_families(_config_reply(replies))
    families += slowlog_families(replies.get(SLOWLOG_LEN), replies.get(SLOWLOG_GET))
    families += latency_families(replies.get(LATENCY_LATEST))
    if mode == CLUSTER:
        families += cluster_families(replies.get(CLUSTER_INFO))
    return families


def _config_reply(replies: dict[Command, Any]) -> Any:
    """The multi-parameter reply, or the one-parameter replies joined into one."""
    whole = replies.get(CONFIG_GET)
    if whole is not None and not isinstance(whole, Exception):
        return whole
    joined: list[Any] = []
    for command in CONFIG_GET_ONE:
        reply = replies.get(command)
        if isinstance(reply, list):
            joined += reply
    return joined or whole


def _info_all_refused(reply: Any) -> bool:
    """INFO ALL refused for a reason plain INFO may not share (a permission refusal is shared)."""
    return isinstance(reply, Exception) and error_code(reply) not in TRANSIENT | {"NOPERM"}


def _whole_command_refused(reply: Exception) -> bool:
    """Renamed away (`unknown command`) or forbidden, rather than refused for its arguments."""
    return error_code(reply) == "NOPERM" or "unknown command" in str(reply).lower()


def _info(replies: dict[Command, Any], commands: Iterable[Command]) -> Info:
    texts: list[str] = []
    for command in commands:
        reply = replies.get(command)
        if command in (INFO_ALL, INFO_PLAIN):
            if isinstance(reply, Exception):
                raise ScrapeError(f"INFO refused by the server ({error_code(reply) or 'error'})")
            if not isinstance(reply, str):
                raise ScrapeError("INFO returned no text")
        if isinstance(reply, str):
            texts.append(reply)
    return parse_info("\r\n".join(texts))


def _generation(conn: Commander) -> int:
    """Which connection `conn` is on (see RedisConnection.generation); 0 for stand-ins."""
    generation = getattr(conn, "generation", 0)
    return generation if isinstance(generation, int) else 0


def _address(conn: Commander) -> str:
    """The credential-free address `conn` scrapes (RedisConnection.target); "" for stand-ins."""
    address = getattr(getattr(conn, "target", None), "address", "")
    return address if isinstance(address, str) else ""


def _peek(conn: Commander) -> Degradation | None:
    try:
        return _states.get(conn)
    except TypeError:
        return None


def _state(conn: Commander) -> Degradation:
    state = _peek(conn)
    if state is None:
        state = Degradation()
        with contextlib.suppress(TypeError):  # not weak-referenceable: start afresh each scrape
            _states[conn] = state
    return state
