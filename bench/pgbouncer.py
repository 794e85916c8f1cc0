"""Scenario pgbouncer: notify.send as notifyd's REST runs it, through PgBouncer in transaction pooling vs direct.

Each of 8 clients sends to a user of its own (the creation scenario's users: in-app, push and e-mail planned) in
a transaction of notifyd's pool that sets the caller's role and claims first (notifyd.db.pool.as_role), closed
loop. Three runs: direct with asyncpg's statement cache (what `serve` does without a pooler), direct without it
(what DATABASE_POOL_MODE=transaction costs by itself: every statement parsed and planned again), and through a
PgBouncer started here (pool_mode=transaction, default_pool_size=20) without it. Each is printed beside the
direct figure.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import urlsplit

from bench.common import LOGIN, PASSWORD, Database, Row, Scale, Table, ms
from bench.creation import SEND, WARMUP, setup
from notifyd.db.pool import as_role, create_pool
from tests.pgbouncer import PgBouncer, installed

CLIENTS = 8
SERVICE = {"sub": "bench", "role": "service"}


async def closed_loop(url: str, transaction_pooling: bool, users: list[uuid.UUID], seconds: float) -> list[float]:
    """Each client sends back to back for WARMUP + seconds; the latencies (transaction included) after the warm-up."""
    pool = await create_pool(url, min_size=CLIENTS, max_size=CLIENTS, transaction_pooling=transaction_pooling)
    start = time.monotonic() + WARMUP
    stop = start + seconds
    latencies: list[float] = []

    async def client(user: uuid.UUID) -> None:
        while (began := time.monotonic()) < stop:
            async with as_role(pool, "notify_service", SERVICE) as conn:
                await conn.execute(SEND, user)
            if began >= start:
                latencies.append(time.monotonic() - began)

    try:
        await asyncio.gather(*(client(u) for u in users))
    finally:
        await pool.close()
    return latencies


async def run(db: Database, scale: Scale, table: Table) -> None:
    if not installed():
        table.add(Row("pgb", "through PgBouncer", None, text="pgbouncer is not installed (scripts/setup.sh)"))
        return
    users = [uuid.uuid4() for _ in range(CLIENTS)]
    setup(db, users)
    seconds = max(1.0, scale.seconds / 4)
    server = urlsplit(db.login_url)
    bouncer = PgBouncer(server.hostname or "127.0.0.1", server.port or 5432, {LOGIN: PASSWORD})
    bouncer.start()
    try:
        direct = await closed_loop(db.login_url, False, users, seconds)
        uncached = await closed_loop(db.login_url, True, users, seconds)
        pooled = await closed_loop(bouncer.url(LOGIN, db.name), True, users, seconds)
    finally:
        bouncer.stop()
    for name, figures in (("via PgBouncer vs direct", pooled), ("direct, no statement cache vs cached", uncached)):
        figure = f"notify.send as notifyd runs it, {CLIENTS} clients, {name}"
        table.add(
            Row("pgb", f"{figure}: rows/s", len(figures) / seconds, len(direct) / seconds, "rows/s"),
            Row("pgb", f"{figure}: p50", ms(figures, 50), ms(direct, 50), "ms"),
            Row("pgb", f"{figure}: p95", ms(figures, 95), ms(direct, 95), "ms"),
        )
    table.distribution("pgbouncer: notify.send through PgBouncer, 8 clients", pooled)
