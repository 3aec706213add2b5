"""Start-up settings, read once from the environment.

    DATABASE_URL                 sqlite:///<tmp>/tradesense-demo.db; postgresql://... works too
    REDIS_URL                    redis://127.0.0.1:6379/0
    SLOW_QUERY_THRESHOLD         0.5 (seconds)
    SLOW_SUMMARY_SECONDS         0.6 (how long the slow summary sleeps, on any database)
    TRADESENSE_KEY_PREFIX        tradesense: (every Redis key the app writes starts with it)
    TRADESENSE_MEMORY_ENTRIES    1000 (entries per cache in the in-memory LRU layer)
    TRADESENSE_MEMORY_TTL        30 (seconds an entry may live in memory, at most its own TTL)
    TRADESENSE_REDIS_TIMEOUT     0.5 (seconds: a hung Redis costs a lookup at most about this)
    TRADESENSE_REDIS_COOLDOWN    1 (seconds Redis is left alone after it failed to answer)
    TRADESENSE_RATE_LIMIT        100 (requests per client per window; 0 turns the limit off)
    TRADESENSE_RATE_WINDOW       60 (seconds)
    TRADESENSE_FAULTS            0 (1: honour X-Inject-Error and X-Inject-Latency-Ms; demos only)
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

SHORT_TTL = 300  # seconds: trade lists and trades, as TradeSense caches them
LONG_TTL = 3600  # seconds: analytics summaries
GZIP_MINIMUM_SIZE = 1024  # bytes: smaller responses go out uncompressed


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    slow_query_threshold: float = 0.5
    seed_users: int = 50
    seed_trades: int = 5000
    slow_seconds: float = 0.6  # the slow summary's deliberate sleep, above the 0.5 s threshold
    pool_size: int = 20
    max_overflow: int = 40
    key_prefix: str = "tradesense:"
    memory_entries: int = 1000
    memory_ttl: float = 30.0
    redis_timeout: float = 0.5
    redis_cooldown: float = 1.0
    rate_limit: int = 100
    rate_window: float = 60.0
    faults: bool = False

    @classmethod
    def from_environment(cls) -> Settings:
        default_db = Path(tempfile.gettempdir()) / "tradesense-demo.db"
        env = os.environ.get
        return cls(
            database_url=env("DATABASE_URL", f"sqlite:///{default_db}"),
            redis_url=env("REDIS_URL", "redis://127.0.0.1:6379/0"),
            slow_query_threshold=float(env("SLOW_QUERY_THRESHOLD", "0.5")),
            slow_seconds=float(env("SLOW_SUMMARY_SECONDS", "0.6")),
            key_prefix=env("TRADESENSE_KEY_PREFIX", "tradesense:"),
            memory_entries=int(env("TRADESENSE_MEMORY_ENTRIES", "1000")),
            memory_ttl=float(env("TRADESENSE_MEMORY_TTL", "30")),
            redis_timeout=float(env("TRADESENSE_REDIS_TIMEOUT", "0.5")),
            redis_cooldown=float(env("TRADESENSE_REDIS_COOLDOWN", "1")),
            rate_limit=int(env("TRADESENSE_RATE_LIMIT", "100")),
            rate_window=float(env("TRADESENSE_RATE_WINDOW", "60")),
            faults=env("TRADESENSE_FAULTS", "0").strip().lower() in ("1", "true", "yes", "on"),
        )


def async_url(url: str) -> str:
    """The asyncio driver form of a plain SQLite or PostgreSQL URL."""
    scheme, _, rest = url.partition("://")
    drivers = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg",
               "postgres": "postgresql+asyncpg"}
    return f"{drivers.get(scheme, scheme)}://{rest}"
