"""Retention (the nightly notify.apply_retention), GDPR erasure over REST, and the audit of refused requests.

Retention runs in short transactions: each call of notify.apply_retention deletes at most
`RETENTION_BATCHES` batches of `RETENTION_BATCH_SIZE` rows and commits, and the job calls again until
the database says it is done, so row locks are held for one call only and readers are never blocked.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg
import procrastinate
from pydantic import BaseModel
from starlette import status
from starlette.requests import Request
from starlette.responses import Response

from notifyd.config import Settings
from notifyd.db import as_caller, as_worker
from notifyd.errors import ApiError
from notifyd.openapi import Endpoint
from notifyd.preferences_api import org_admin
from notifyd.queries import query
from notifyd.rest import path_uuid, reply

log = logging.getLogger(__name__)

RETENTION_BATCH_SIZE = 1000
RETENTION_BATCHES = 10
USER_NOT_FOUND = "user not found"


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


class Erasure(BaseModel):
    """What an erasure removed (or anonymized, for analytics), per table."""

    user_id: uuid.UUID
    removed: dict[str, int]


async def erase_user(request: Request) -> Response:
    caller = await org_admin(request)
    user_id = path_uuid(request, "user_id")
    try:
        async with as_caller(request.app.state.pool, caller) as conn:
            counts = await conn.fetchval(query("erase_user"), user_id)  # the pool decodes jsonb
    except asyncpg.NoDataFoundError:
        raise ApiError(status.HTTP_404_NOT_FOUND, USER_NOT_FOUND) from None
    return reply(Erasure(user_id=user_id, removed=counts))


ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "DELETE",
        "/api/v1/admin/users/{user_id:uuid}",
        erase_user,
        "GDPR erasure: delete a user and everything of theirs (admins; an org admin their org's users)",
        "user",
        ok_model=Erasure,
        path_params=("user_id",),
    ),
]


def register(app: procrastinate.App, pool: asyncpg.Pool, settings: Settings) -> None:
    """Declares the nightly retention task on the worker's app."""
    del settings  # the policies live in notify.retention_policies
    from notifyd.worker import DeliveryRetry  # noqa: PLC0415 - notifyd.worker imports this module

    @app.periodic(cron="30 3 * * *", periodic_id="retention")
    @app.task(name="apply_retention", queue="maintenance", retry=DeliveryRetry())
    async def apply_retention_job(timestamp: int) -> None:
        del timestamp  # the database's clock decides what is old
        log.info("retention applied: %s", await apply_retention(pool))
