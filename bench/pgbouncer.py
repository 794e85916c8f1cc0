"""Scenario pgbouncer: notify.send as notifyd's REST runs it, through PgBouncer in transaction pooling vs direct.

1, then 8 clients, each sending to a user of its own (the creation scenario's users: in-app, push and e-mail
planned) in a transaction of notifyd's pool that sets the caller's role and claims first
(notifyd.db.pool.as_role), closed loop. Three runs: direct with asyncpg's statement cache (what `serve` does
without a pooler), direct without it (what DATABASE_POOL_MODE=transaction costs by itself: every statement
parsed and planned again), and through a PgBouncer started here (pool_mode=transaction, default_pool_size=20)
without it, each in two halves (A B C C B A). Each is printed beside the direct figure.
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

CLIENTS = (1, 8)  # one client: the round trips a transaction adds; eight: the creation scenario's rate
SERVICE = {"sub": "bench", "role": "service"}


async def closed_loop(url: str, transaction_pooling: bool, users: list[uuid.UUID], seconds: float) -> list[float]:
    """Each client sends back to back for WARMUP + seconds; the latencies (transaction included) after the warm-up."""
    size = len(users)
    pool = await create_pool(url, min_size=size, max_size=size, transaction_pooling=transaction_pooling)
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
    users = [uuid.uuid4() for _ in range(max(CLIENTS))]
    setup(db, users)
    seconds = max(1.0, scale.seconds / 4)
    server = urlsplit(db.login_url)
    bouncer = PgBouncer(server.hostname or "127.0.0.1", server.port or 5432, {LOGIN: PASSWORD})
    bouncer.start()
    runs = {
        "direct": (db.login_url, False),
        "uncached": (db.login_url, True),
        "pooled": (bouncer.url(LOGIN, db.name), True),
    }
    try:
        for clients in CLIENTS:
            latencies: dict[str, list[float]] = {name: [] for name in runs}
            # Each run in two halves, in the order A B C C B A: a machine getting busier or quieter meanwhile
            # weighs on all three alike.
            for name in [*runs, *reversed(runs)]:
                url, transaction_pooling = runs[name]
                latencies[name] += await closed_loop(url, transaction_pooling, users[:clients], seconds / 2)
            direct = latencies["direct"]
            for label, figures in (("via PgBouncer vs direct", latencies["pooled"]),
                                   ("direct, no statement cache vs cached", latencies["uncached"])):  # fmt: skip
                figure = f"notify.send as notifyd runs it, {clients} client(s), {label}"
                table.add(
                    Row("pgb", f"{figure}: rows/s", len(figures) / seconds, len(direct) / seconds, "rows/s"),
                    Row("pgb", f"{figure}: p50", ms(figures, 50), ms(direct, 50), "ms"),
                    Row("pgb", f"{figure}: p95", ms(figures, 95), ms(direct, 95), "ms"),
                )
            table.distribution(f"pgbouncer: notify.send through PgBouncer, {clients} client(s)", latencies["pooled"])
    finally:
        bouncer.stop()
