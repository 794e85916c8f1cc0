"""Topics over REST (a user's own subscriptions and per-topic mute; a sender's send to a topic) and the admin's
broadcast (a preview of whom it reaches, then the send). Thin over sql/functions/075_topics.sql, run as the caller:
the database checks names and filters (422 with its message) and keeps an org admin to their org (another org
is not found). A broadcast's progress is its batch's status (GET /api/v1/notifications/bulk/{batch_id}).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, StrictBool
from starlette import status
from starlette.requests import Request
from starlette.responses import Response

from notifyd.core.auth import Caller
from notifyd.core.models import (
    AudienceSent,
    BroadcastCreate,
    BroadcastPreview,
    BroadcastPreviewQuery,
    Omittable,
    TopicSend,
)
from notifyd.db.pool import as_caller
from notifyd.db.queries import query
from notifyd.domain.sending import send_args
from notifyd.http.errors import ApiError
from notifyd.http.openapi import Endpoint
from notifyd.http.shared import caller_rows, end_user, idempotency_key, org_admin, rate_limit_headers, reply, sender

TOPICS = "/api/v1/topics"
BROADCASTS = "/api/v1/admin/broadcasts"

NOT_SUBSCRIBED = "you are not subscribed to this topic"
NOT_A_RECIPIENT = (
    "you are not a recipient yet: a service makes you one (notify.upsert_recipient) or sends you something"
)
ORG_NOT_FOUND = "organization not found"


class TopicChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    muted: Omittable[StrictBool] = None


class TopicSubscription(BaseModel):
    topic: str
    muted: bool
    created_at: datetime


class TopicList(BaseModel):
    items: list[TopicSubscription]


def topic_name(request: Request) -> str:
    value = request.path_params["topic"]
    assert isinstance(value, str)
    return value


async def list_topics(request: Request) -> Response:
    rows = await caller_rows(request, await end_user(request), "my_topics")
    return reply(TopicList(items=[TopicSubscription.model_validate(dict(r)) for r in rows]))


async def put_topic(request: Request) -> Response:
    """Subscribes the caller (201; 200 if subscribed already) and sets the topic's mute if the body says it."""
    caller = await end_user(request)
    topic = topic_name(request)
    raw = await request.body()
    change = TopicChange.model_validate_json(raw) if raw else TopicChange()
    try:
        async with as_caller(request.app.state.pool, caller) as conn:
            added = await conn.fetchval(query("subscribe"), caller.user_id, topic)
            if change.muted is not None:
                await conn.fetchval(query("mute_topic"), caller.user_id, topic, change.muted)
            row = await conn.fetchrow(query("my_topic"), topic)
    except asyncpg.NoDataFoundError:
        raise ApiError(status.HTTP_404_NOT_FOUND, NOT_A_RECIPIENT) from None
    assert row is not None, "subscribed in this transaction"
    return reply(TopicSubscription.model_validate(dict(row)), status.HTTP_201_CREATED if added else status.HTTP_200_OK)


async def delete_topic(request: Request) -> Response:
    caller = await end_user(request)
    try:
        async with as_caller(request.app.state.pool, caller) as conn:
            removed = await conn.fetchval(query("unsubscribe"), caller.user_id, topic_name(request))
    except asyncpg.NoDataFoundError:
        removed = False  # not a recipient: subscribed to nothing
    if not removed:
        raise ApiError(status.HTTP_404_NOT_FOUND, NOT_SUBSCRIBED)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def audience_send(request: Request, caller: Caller, name: str, *args: Any) -> Response:
    """Runs a batch-making send as the caller; 202 with the batch (200: a replayed key; nobody matched: no batch)."""
    async with as_caller(request.app.state.pool, caller) as conn:
        try:
            batch_id = await conn.fetchval(query(name), *args)
        except asyncpg.NoDataFoundError:
            raise ApiError(status.HTTP_404_NOT_FOUND, ORG_NOT_FOUND) from None
        headers = await rate_limit_headers(conn)
        if batch_id is None:
            return reply(AudienceSent(batch_id=None, recipient_count=0, status="completed"), headers=headers)
        created = await conn.fetchval(query("batch_created_here"), batch_id)
        batch = await conn.fetchrow(query("batch_status"), batch_id)
    assert batch is not None, "the caller made or replayed it"
    answer = AudienceSent(batch_id=batch_id, recipient_count=batch["recipient_count"], status="processing")
    return reply(answer, status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK, headers)


async def send_topic(request: Request) -> Response:
    caller = await sender(request)
    body = TopicSend.model_validate_json(await request.body())
    key = idempotency_key(request, body.idempotency_key)
    channels = list(body.channels) if body.channels is not None else None
    return await audience_send(request, caller, "send_topic", topic_name(request), *send_args(body, channels, key))


async def preview_broadcast(request: Request) -> Response:
    caller = await org_admin(request)
    body = BroadcastPreviewQuery.model_validate_json(await request.body())
    channels = list(body.channels) if body.channels is not None else None
    try:
        async with as_caller(request.app.state.pool, caller) as conn:
            found = await conn.fetchval(
                query("broadcast_preview"),
                body.org_id, body.type, body.priority, channels, body.topic, body.locale, body.timezone,
            )  # fmt: skip
    except asyncpg.NoDataFoundError:
        raise ApiError(status.HTTP_404_NOT_FOUND, ORG_NOT_FOUND) from None
    return reply(BroadcastPreview.model_validate(found))


async def create_broadcast(request: Request) -> Response:
    caller = await org_admin(request)
    body = BroadcastCreate.model_validate_json(await request.body())
    key = idempotency_key(request, body.idempotency_key)
    channels = list(body.channels) if body.channels is not None else None
    audience = (body.org_id, body.topic, body.locale, body.timezone)
    return await audience_send(request, caller, "broadcast", *send_args(body, channels, key), *audience)


# --- the route table ------------------------------------------------------------------------------------

_TOPIC = f"{TOPICS}/{{topic}}"
_IDEMPOTENCY = (
    ("Idempotency-Key", "replaying a key with the same request answers 200 with the first batch; with another, 422"),
)
_SENT = {status.HTTP_200_OK: "an idempotency key replayed (the first batch), or nobody matched (batch_id null)"}

# Admin routes are bearer-token routes like the users' ("user" audience in the document); the handlers check the role.
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", TOPICS, list_topics, "the caller's topic subscriptions", "user", ok_model=TopicList),
    Endpoint("PUT", _TOPIC, put_topic, "subscribe the caller to a topic, and mute or unmute it", "user",
             ok_status=status.HTTP_201_CREATED, ok_model=TopicSubscription, request_model=TopicChange,
             request_body_required=False, path_params=("topic",),
             errors=(status.HTTP_404_NOT_FOUND, status.HTTP_422_UNPROCESSABLE_CONTENT),
             extra_responses={status.HTTP_200_OK: "subscribed already (the mute changed if the body said so)"}),
    Endpoint("DELETE", _TOPIC, delete_topic, "unsubscribe the caller from a topic", "user",
             ok_status=status.HTTP_204_NO_CONTENT, path_params=("topic",),
             errors=(status.HTTP_404_NOT_FOUND, status.HTTP_422_UNPROCESSABLE_CONTENT)),
    Endpoint("POST", f"{_TOPIC}/notifications", send_topic,
             "send one notification to every unmuted follower of a topic (an org admin: of their org)", "sender",
             ok_status=status.HTTP_202_ACCEPTED, ok_model=AudienceSent, request_model=TopicSend,
             path_params=("topic",), headers=_IDEMPOTENCY, extra_responses=_SENT),
    Endpoint("POST", f"{BROADCASTS}/preview", preview_broadcast,
             "how many users a broadcast reaches and how they split by channel (admins)", "user",
             ok_model=BroadcastPreview, request_model=BroadcastPreviewQuery,
             errors=(status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND)),
    Endpoint("POST", BROADCASTS, create_broadcast,
             "send one notification to an org's users (null org_id: every org, DBAs only), narrowed by topic, "
             "language or time zone (admins)", "user",
             ok_status=status.HTTP_202_ACCEPTED, ok_model=AudienceSent, request_model=BroadcastCreate,
             headers=_IDEMPOTENCY, errors=(status.HTTP_403_FORBIDDEN, status.HTTP_404_NOT_FOUND),
             extra_responses=_SENT),
]  # fmt: skip
