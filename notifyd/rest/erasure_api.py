"""GDPR erasure over REST: an admin deletes a user and everything of theirs (an org admin, their org's users)."""

from __future__ import annotations

import uuid

import asyncpg
from pydantic import BaseModel
from starlette import status
from starlette.requests import Request
from starlette.responses import Response

from notifyd.db.pool import as_caller
from notifyd.db.queries import query
from notifyd.http.errors import ApiError
from notifyd.http.openapi import Endpoint
from notifyd.http.shared import org_admin, path_uuid, reply

USER_NOT_FOUND = "user not found"


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
