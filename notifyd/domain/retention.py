"""Retention: the nightly notify.apply_retention and the hourly partition upkeep (GDPR erasure over REST is
notifyd.rest.erasure_api).

Retention runs in short transactions: each call of notify.apply_retention deletes at most
`RETENTION_BATCHES` batches of `RETENTION_BATCH_SIZE` rows and commits, and the job calls again until
the database says it is done, so row locks are held for one call only and readers are never blocked.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import procrastinate

from notifyd.core.config import Settings
from notifyd.db.pool import as_worker
from notifyd.db.queries import query
from notifyd.domain.deliveries import DeliveryRetry

log = logging.getLogger("notifyd.retention")

RETENTION_BATCH_SIZE = 1000
RETENTION_BATCHES = 10


async def apply_retention(pool: asyncpg.Pool) -> dict[str, Any]:
    """Applies the retention policies to the end, a few batches per transaction; the summed counts."""
    total: dict[str, Any] = {}
    while True:
        async with as_worker(pool) as conn:
            result = await conn.fetchval(query("apply_retention"), RETENTION_BATCH_SIZE, RETENTION_BATCHES)
        for key, value in result.items():
            if isinstance(value, int) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
        by_type = total.setdefault("by_type", {})
        for type_, count in result["by_type"].items():
            by_type[type_] = by_type.get(type_, 0) + count
        if result["done"]:
            return total


async def maintain_partitions(pool: asyncpg.Pool) -> dict[str, Any]:
    """Partitions made ahead and those past the largest retention age dropped (by the table owner's function)."""
    async with as_worker(pool) as conn:
        result: dict[str, Any] = await conn.fetchval(query("maintain_partitions"))
    return result


def register(app: procrastinate.App, pool: asyncpg.Pool, settings: Settings) -> None:
    """Declares the nightly retention task and the hourly partition upkeep on the worker's app."""
    del settings  # the policies live in notify.retention_policies

    @app.periodic(cron="30 3 * * *", periodic_id="retention")
    @app.task(name="apply_retention", queue="maintenance", retry=DeliveryRetry())
    async def apply_retention_job(timestamp: int) -> None:
        del timestamp  # the database's clock decides what is old
        log.info("retention applied: %s", await apply_retention(pool))

    # Hourly, so that a week of partitions ahead never runs out even if the worker is down for days, and a
    # partition goes within the hour once past the largest retention age.
    @app.periodic(cron="41 * * * *", periodic_id="partitions")
    @app.task(name="maintain_partitions", queue="maintenance", retry=DeliveryRetry())
    async def maintain_partitions_job(timestamp: int) -> None:
        del timestamp  # the database's clock decides what is old
        log.info("partitions maintained: %s", await maintain_partitions(pool))
