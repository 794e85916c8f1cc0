"""The connection pool, and transactions that run as the caller (the PostgREST pattern)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from notifyd.core.auth import Caller
from notifyd.core.requestid import REQUEST_ID
from notifyd.db.queries import query

# asyncpg's default: prepared statements kept per connection, each parsed and planned once.
STATEMENT_CACHE_SIZE = 100


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    database_url: str, *, min_size: int = 2, max_size: int = 10, transaction_pooling: bool = False
) -> asyncpg.Pool:
    """A pool of `database_url`; `transaction_pooling`: the URL is a pooler that hands each transaction its own server
    connection, where a statement prepared in one transaction is missing (or another client's) in the next, so
    asyncpg caches none (PgBouncer 1.18 has no prepared statements in transaction mode)."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        statement_cache_size=0 if transaction_pooling else STATEMENT_CACHE_SIZE,
    )
    assert pool is not None
    return pool


async def become(conn: asyncpg.Connection, db_role: str, claims: dict[str, Any]) -> None:
    """Inside a transaction: run the rest of it as `db_role` with `claims`; both end with the transaction."""
    await conn.execute(query("become_caller"), db_role, json.dumps(claims), REQUEST_ID.get() or "")


@asynccontextmanager
async def as_role(pool: asyncpg.Pool, db_role: str, claims: dict[str, Any]) -> AsyncIterator[asyncpg.Connection]:
    """A transaction running as `db_role` with `claims`; both end with the transaction."""
    async with pool.acquire() as conn, conn.transaction():
        await become(conn, db_role, claims)
        yield conn


@asynccontextmanager
async def as_caller(pool: asyncpg.Pool, caller: Caller) -> AsyncIterator[asyncpg.Connection]:
    """A transaction as the authenticated caller: RLS, not Python, decides what it sees."""
    async with as_role(pool, caller.db_role, caller.claims) as conn:
        yield conn


@asynccontextmanager
async def as_worker(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A transaction as notifyd itself (notify_worker): fan-out reads and other cross-user work."""
    async with as_role(pool, "notify_worker", {"sub": "notifyd", "role": "worker"}) as conn:
        yield conn
