"""Session-scoped real Redis servers (see tests/support/redis_servers.py), started once and on
first use:

- `redis_master`: a master after the reference workload (keys in db0..db2, hits and misses, ERR
  and WRONGTYPE errors, a Lua busy loop, BGSAVE, AOF on); `redis_replica` is attached to it.
- `redis_replica`: a replica of `redis_master`, its link up.
- `redis_cluster`: three cluster nodes; node 0 took SETs through a plain client (MOVED errors).
- `redis_sentinel`: a sentinel monitoring `redis_master` as `mymaster`, seeing the replica.
- `redis_acl`: requirepass `admin-secret` and an ACL user `exporter`/`exporter-secret` allowed
  only the commands a scrape sends.
- `redis_tls`: TLS only, client certificates required (`server.tls` holds the throwaway CA).
- `redis_noconfig`: CONFIG renamed away.
- `redis_factory`: function-scoped; `redis_factory(**start_redis kwargs)` for a server a test may
  stop, kill or SIGSTOP. Stopped after the test.

Tests must not change the shared servers' state in ways other tests can see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.redis_servers import (
    RedisServer,
    run_cluster_workload,
    run_master_workload,
    start_acl_server,
    start_cluster,
    start_master,
    start_noconfig_server,
    start_redis,
    start_replica,
    start_sentinel,
    start_tls_server,
)


class Fleet:
    """Starts servers on demand and stops all of them at the end of the session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[RedisServer] = []

    def add(self, *servers: RedisServer) -> None:
        self.servers.extend(servers)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


@pytest.fixture(scope="session")
def redis_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("redis-fleet"))
    yield fleet
    fleet.stop()


@pytest.fixture(scope="session")
def _master_only(redis_fleet: Fleet) -> RedisServer:
    master = start_master(redis_fleet.root / "master")
    redis_fleet.add(master)
    run_master_workload(master)
    return master


@pytest.fixture(scope="session")
def redis_replica(redis_fleet: Fleet, _master_only: RedisServer) -> RedisServer:
    replica = start_replica(redis_fleet.root / "replica", _master_only)
    redis_fleet.add(replica)
    return replica


@pytest.fixture(scope="session")
def redis_master(_master_only: RedisServer, redis_replica: RedisServer) -> RedisServer:
    return _master_only


@pytest.fixture(scope="session")
def redis_cluster(redis_fleet: Fleet) -> list[RedisServer]:
    nodes = start_cluster(redis_fleet.root / "cluster")
    redis_fleet.add(*nodes)
    run_cluster_workload(nodes[0])
    return nodes


@pytest.fixture(scope="session")
def redis_sentinel(redis_fleet: Fleet, redis_master: RedisServer) -> RedisServer:
    sentinel = start_sentinel(redis_fleet.root / "sentinel", redis_master, expect_replicas=1)
    redis_fleet.add(sentinel)
    return sentinel


@pytest.fixture(scope="session")
def redis_acl(redis_fleet: Fleet) -> RedisServer:
    server = start_acl_server(redis_fleet.root / "acl")
    redis_fleet.add(server)
    return server


@pytest.fixture(scope="session")
def redis_tls(redis_fleet: Fleet) -> RedisServer:
    server = start_tls_server(redis_fleet.root / "tls")
    redis_fleet.add(server)
    return server


@pytest.fixture(scope="session")
def redis_noconfig(redis_fleet: Fleet) -> RedisServer:
    server = start_noconfig_server(redis_fleet.root / "noconfig")
    redis_fleet.add(server)
    return server


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    started: list[RedisServer] = []

    def factory(**kwargs: Any) -> RedisServer:
        server = start_redis(tmp_path / f"redis{len(started)}", **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
