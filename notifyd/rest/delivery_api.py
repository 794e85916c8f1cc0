"""Delivery routes: a user's test send (one channel or all), why a notification went where it went, cancelling one."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel
from starlette import status
from starlette.requests import Request
from starlette.responses import Response

from notifyd.core.models import PREFIX, Cancelled, Channel, Explanation
from notifyd.db.pool import as_caller
from notifyd.db.queries import query
from notifyd.http.errors import ApiError
from notifyd.http.openapi import Endpoint
from notifyd.http.readafter import DOCUMENTED as READ_AFTER
from notifyd.http.readafter import is_none, lag_tolerant
from notifyd.http.shared import NOT_FOUND, authenticate, end_user, optional_body, path_uuid, reply, sender

NOT_SCHEDULED = "notification not found, or not scheduled for later (already sent or cancelled)"

TestChannel = Literal["all", Channel]


class TestRequest(BaseModel):
    channel: TestChannel = "all"


class PlannedDelivery(BaseModel):
    channel: Channel
    device_kind: Literal["webpush", "fcm"] | None
    subscription_id: uuid.UUID | None
    status: str
    reason: str | None


class TestSent(BaseModel):
    id: uuid.UUID
    deliveries: list[PlannedDelivery]


async def send_test(request: Request) -> Response:
    caller = await end_user(request)
    body = await optional_body(request, TestRequest)
    async with as_caller(request.app.state.pool, caller) as conn:
        notification_id = await conn.fetchval(query("send_test"), body.channel)
        planned = await conn.fetch(query("planned_deliveries"), notification_id)
    answer = TestSent(id=notification_id, deliveries=[PlannedDelivery(**dict(row)) for row in planned])
    return reply(answer, status.HTTP_202_ACCEPTED)


async def explain(request: Request) -> Response:
    caller = await authenticate(request)
    notification_id = path_uuid(request, "notification_id")
    # Asked for by id, it was most likely just sent (by another caller, so no token says so): a replica that
    # has not replayed it yet must not answer 404.
    found: dict[str, Any] | None = await lag_tolerant(
        request, caller, lambda conn: conn.fetchval(query("explain"), notification_id), again_on_primary=is_none
    )
    if found is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return reply(Explanation.model_validate(found))


async def cancel(request: Request) -> Response:
    caller = await sender(request)
    notification_id = path_uuid(request, "notification_id")
    async with as_caller(request.app.state.pool, caller) as conn:
        cancelled = await conn.fetchval(query("cancel"), notification_id)
    if not cancelled:
        raise ApiError(status.HTTP_404_NOT_FOUND, NOT_SCHEDULED)
    return reply(Cancelled(id=notification_id, cancelled=True))


_ONE = f"{PREFIX}/{{notification_id:uuid}}"

ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", f"{PREFIX}/test", send_test, "send oneself a test notification on one channel or all", "user",
             ok_status=status.HTTP_202_ACCEPTED, ok_model=TestSent, request_model=TestRequest,
             request_body_required=False, errors=(status.HTTP_429_TOO_MANY_REQUESTS,)),
    Endpoint("GET", f"{_ONE}/explain", explain, "why a notification went where it went: every decision and its reason",
             "any", ok_model=Explanation, path_params=("notification_id",), headers=READ_AFTER,
             errors=(status.HTTP_404_NOT_FOUND,)),
    Endpoint("POST", f"{_ONE}/cancel", cancel, "cancel a scheduled notification before it is sent", "sender",
             ok_model=Cancelled, path_params=("notification_id",), errors=(status.HTTP_404_NOT_FOUND,)),
]  # fmt: skip
