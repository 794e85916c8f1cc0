"""`POST /api/v1/notifications/test`: a user checks that notifyd reaches them on each channel (seed 004)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel
from starlette import status
from starlette.requests import Request
from starlette.responses import Response

from notifyd.db import as_caller
from notifyd.models import Channel
from notifyd.openapi import Endpoint
from notifyd.queries import query
from notifyd.rest import PREFIX, end_user, reply

TestChannel = Literal["all", "in_app", "push", "email"]


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
    raw = await request.body()
    body = TestRequest.model_validate_json(raw) if raw.strip() else TestRequest()
    async with as_caller(request.app.state.pool, caller) as conn:
        notification_id = await conn.fetchval(query("send_test"), body.channel)
        planned = await conn.fetch(query("planned_deliveries"), notification_id)
    answer = TestSent(id=notification_id, deliveries=[PlannedDelivery(**dict(row)) for row in planned])
    return reply(answer, status.HTTP_202_ACCEPTED)


ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", f"{PREFIX}/test", send_test, "send oneself a test notification on one channel or all", "user",
             ok_status=status.HTTP_202_ACCEPTED, ok_model=TestSent, request_model=TestRequest),
]  # fmt: skip
