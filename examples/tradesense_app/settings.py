"""Start-up settings, read once from the environment."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

SHORT_TTL = 300  # seconds: trade lists, as TradeSense caches them
LONG_TTL = 3600  # seconds: analytics summaries


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    slow_query_threshold: float = 0.5
    seed_users: int = 50
    seed_trades: int = 5000
    slow_rows: int = 1_500_000  # rows of the recursive CTE that makes SQLite slow on demand
    pool_size: int = 20
    max_overflow: int = 40

    @classmethod
    def from_environment(cls) -> Settings:
        default_db = Path(tempfile.gettempdir()) / "tradesense-demo.db"
        return cls(
            database_url=os.environ.get("DATABASE_URL", f"sqlite:///{default_db}"),
            redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            slow_query_threshold=float(os.environ.get("SLOW_QUERY_THRESHOLD", "0.5")),
            slow_rows=int(os.environ.get("SLOW_CTE_ROWS", "1500000")),
        )


def async_url(url: str) -> str:
    """The asyncio driver form of a plain SQLite or PostgreSQL URL."""
    scheme, _, rest = url.partition("://")
    drivers = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg",
               "postgres": "postgresql+asyncpg"}
    return f"{drivers.get(scheme, scheme)}://{rest}"
