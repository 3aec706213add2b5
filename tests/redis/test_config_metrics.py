"""CONFIG GET maxmemory maxclients io-threads -> redis_config_*; nothing when CONFIG is refused."""

from __future__ import annotations

import redis.exceptions

from exporter.redis.config_metrics import config_families
from tests.redis.scraping import by_name, scrape
from tests.support.redis_servers import RedisServer


def values(reply: object) -> dict[str, float]:
    return {f.name: f.samples[0].value for f in config_families(reply)}


def test_name_value_pairs() -> None:
    expected = {"redis_config_maxmemory": 268435456, "redis_config_maxclients": 10000,
                "redis_config_io_threads": 1}
    assert values(["maxmemory", "268435456", "maxclients", "10000", "io-threads", "1"]) == expected


def test_refused_or_odd_replies() -> None:
    assert config_families(redis.exceptions.ResponseError("ERR unknown command 'CONFIG'")) == []
    assert config_families(None) == []
    assert values(["maxmemory", "lots", "save", "3600 1", "maxclients"]) == {}


def test_live_values(redis_master: RedisServer) -> None:
    fams = by_name(scrape(redis_master))
    assert fams["redis_config_maxmemory"].samples[0].value == 0
    assert fams["redis_config_maxclients"].samples[0].value > 0
    assert fams["redis_config_io_threads"].samples[0].value == 1


def test_config_renamed_away_scrapes_everything_else(redis_noconfig: RedisServer,
                                                     redis_master: RedisServer) -> None:
    fams = by_name(scrape(redis_noconfig, times=2))  # the 2nd INFO sees the 1st CONFIG refusal
    assert not [name for name in fams if name.startswith("redis_config_")]
    for name in ("redis_memory_used_bytes", "redis_instance_info", "redis_commands_total",
                 "redis_slowlog_length", "redis_last_slow_execution_duration_seconds",
                 "redis_errors_total"):  # the refused CONFIG GET counts as an ERR
        assert name in fams, name
    # Everything the master has, save CONFIG's and what its data, replica, latency spikes and
    # AOF add.
    aof_on_only = {"redis_aof_base_size_bytes", "redis_aof_buffer_length",
                   "redis_aof_current_size_bytes", "redis_aof_delayed_fsync",
                   "redis_aof_pending_bio_fsync", "redis_aof_pending_rewrite"}
    expected = {name for name in by_name(scrape(redis_master)) if not name.startswith(
        ("redis_config_", "redis_db_", "redis_connected_slave", "redis_latency_spike"))}
    assert expected - aof_on_only - set(fams) == set()
