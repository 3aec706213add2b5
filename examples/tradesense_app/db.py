"""Schema, seed data and the queries behind the endpoints."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    case,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from examples.tradesense_app.settings import Settings, async_url

metadata = MetaData()
users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(200), nullable=False),
)
trades = Table(
    "trades", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    Column("symbol", String(12), nullable=False),
    Column("side", String(4), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("price", Float, nullable=False),
    Column("pnl", Float, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
)
SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "EURUSD", "BTCUSD", "ES", "NQ", "GC")


def make_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        async_url(settings.database_url),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_pre_ping=True,
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _add_sleep)
    return engine


def _add_sleep(dbapi_connection: Any, record: Any) -> None:
    """`tradesense_sleep(seconds)` in SQL, SQLite's stand-in for PostgreSQL's pg_sleep."""
    dbapi_connection.create_function("tradesense_sleep", 1, _sleep)


def _sleep(seconds: float) -> int:
    time.sleep(min(max(float(seconds), 0.0), 30.0))
    return 1


async def prepare(engine: AsyncEngine, settings: Settings) -> None:
    """Create the tables and seed them once."""
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        if await connection.scalar(select(func.count()).select_from(users)):
            return
        await connection.execute(insert(users), _users(settings.seed_users))
        await connection.execute(insert(trades), _trades(settings.seed_users,
                                                         settings.seed_trades))


def _users(count: int) -> list[dict[str, Any]]:
    return [{"id": n, "email": f"trader{n}@example.com"} for n in range(1, count + 1)]


def _trades(user_count: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    start = datetime(2025, 1, 2, tzinfo=UTC)
    return [
        {
            "user_id": rng.randint(1, user_count),
            "symbol": rng.choice(SYMBOLS),
            "side": rng.choice(("BUY", "SELL")),
            "quantity": rng.randint(1, 500),
            "price": round(rng.uniform(10, 900), 2),
            "pnl": round(rng.gauss(12, 250), 2),
            "opened_at": start + timedelta(minutes=37 * n),
        }
        for n in range(count)
    ]


async def recent_trades(connection: AsyncConnection, user_id: int,
                        limit: int) -> list[dict[str, Any]]:
    query = (
        select(trades.c.id, trades.c.symbol, trades.c.side, trades.c.quantity, trades.c.price,
               trades.c.pnl, trades.c.opened_at)
        .where(trades.c.user_id == user_id)
        .order_by(trades.c.opened_at.desc())
        .limit(limit)
    )
    rows = await connection.execute(query)
    return [{**row._mapping, "opened_at": row.opened_at.isoformat()} for row in rows]


async def trade_by_id(connection: AsyncConnection, user_id: int,
                      trade_id: int) -> dict[str, Any] | None:
    """The trade, when it is `user_id`'s; else None."""
    query = (
        select(trades.c.id, trades.c.symbol, trades.c.side, trades.c.quantity, trades.c.price,
               trades.c.pnl, trades.c.opened_at)
        .where(trades.c.id == trade_id, trades.c.user_id == user_id)
    )
    row = (await connection.execute(query)).first()
    return None if row is None else {**row._mapping, "opened_at": row.opened_at.isoformat()}


async def user_exists(connection: AsyncConnection, user_id: int) -> bool:
    found = await connection.scalar(select(users.c.id).where(users.c.id == user_id))
    return found is not None


async def insert_trade(connection: AsyncConnection, trade: dict[str, Any]) -> dict[str, Any]:
    """Insert a trade (user_id, symbol, side, quantity, price, pnl), opened now."""
    row = {**trade, "opened_at": datetime.now(UTC)}
    result = await connection.execute(insert(trades).values(**row))
    assert result.inserted_primary_key is not None
    trade_id = result.inserted_primary_key[0]
    return {"id": trade_id, **row, "opened_at": row["opened_at"].isoformat()}


async def summary(connection: AsyncConnection, user_id: int) -> list[dict[str, Any]]:
    wins = func.sum(case((trades.c.pnl > 0, 1), else_=0))
    query = (
        select(trades.c.symbol, func.count().label("trades"),
               func.sum(trades.c.pnl).label("total_pnl"),
               func.avg(trades.c.pnl).label("mean_pnl"), wins.label("wins"))
        .where(trades.c.user_id == user_id)
        .group_by(trades.c.symbol)
        .order_by(func.sum(trades.c.pnl).desc())
    )
    rows = await connection.execute(query)
    return [_plain(row._mapping) for row in rows]


async def slow_summary(connection: AsyncConnection, user_id: int,
                       settings: Settings) -> dict[str, Any]:
    """The same kind of answer, deliberately slow: it sleeps `settings.slow_seconds` in the
    database (pg_sleep, or tradesense_sleep on SQLite), whatever the machine's speed."""
    if connection.dialect.name == "postgresql":
        statement = text(
            # A one-time filter: PostgreSQL runs it even when no row matches (pg_sleep in
            # FROM is skipped when the join's other side is empty).
            "SELECT count(*) AS trades, sum(pnl) AS total_pnl FROM trades "
            "WHERE user_id = :user_id AND (SELECT pg_sleep(:seconds)) IS NOT NULL"
        )
    else:
        # An aggregate always returns one row, so the scalar subquery in it runs exactly once.
        statement = text(
            "SELECT count(*) AS trades, sum(pnl) AS total_pnl, "
            "(SELECT tradesense_sleep(:seconds)) AS slept FROM trades WHERE user_id = :user_id"
        )
    parameters: dict[str, Any] = {"user_id": user_id, "seconds": settings.slow_seconds}
    row = (await connection.execute(statement, parameters)).one()
    return _plain({k: v for k, v in row._mapping.items() if k != "slept"})


def _plain(row: Any) -> dict[str, Any]:
    """JSON-ready values: numbers as int or float rounded to cents."""
    return {k: round(float(v), 2) if isinstance(v, float | Decimal) else v
            for k, v in row.items()}
