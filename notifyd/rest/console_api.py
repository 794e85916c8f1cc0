"""Admin routes the operator console reads and acts through (a DBA sees everything, an org admin their org).

Each runs as the admin's own role, so RLS scopes it; the dead-letter batches are all or none, and the
database writes one audit row per batch.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette import status
from starlette.requests import Request
from starlette.responses import Response

from notifyd.core.models import Channel, Priority, Timestamp, TypeName
from notifyd.db.pool import as_caller
from notifyd.db.queries import query
from notifyd.http.errors import ApiError
from notifyd.http.openapi import Endpoint
from notifyd.http.shared import org_admin, reply

ADMIN = "/api/v1/admin"
MAX_BATCH = 500

DeliveryStatus = Literal[
    "pending", "held", "sent", "delivered", "failed", "bounced", "skipped", "suppressed", "cancelled"
]


class ActivityQuery(BaseModel):
    user_id: uuid.UUID | None = None
    type: TypeName | None = None
    priority: Priority | None = None
    channel: Channel | None = Field(default=None, description="with status: that channel's; alone: sent on it")
    status: DeliveryStatus | None = Field(default=None, description="a delivery status (of `channel` if given)")
    from_: Timestamp | None = Field(default=None, alias="from", description="created at or after")
    to: Timestamp | None = Field(default=None, description="created before")
    limit: int = Field(default=50, ge=1, le=100)


class ActivityRow(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    type: str
    priority: str
    title: str | None
    created_at: datetime
    channels: dict[str, str] = Field(description="each channel's furthest-along delivery status")


class Activity(BaseModel):
    notifications: list[ActivityRow]


class DeadLetterQuery(BaseModel):
    channel: Channel | None = None
    type: TypeName | None = None
    limit: int = Field(default=100, ge=1, le=MAX_BATCH)


class DeadLetter(BaseModel):
    delivery_id: uuid.UUID
    notification_id: uuid.UUID
    user_id: uuid.UUID
    channel: str
    device_kind: str | None
    type: str
    priority: str
    title: str | None
    attempts: int
    reason: str | None
    error_message: str | None = Field(description="the provider's last answer")
    failed_at: datetime | None


class DeadLetters(BaseModel):
    dead_letters: list[DeadLetter]


class Batch(BaseModel):
    delivery_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_BATCH)


class BatchDone(BaseModel):
    count: int = Field(description="dead letters retried or discarded")


class Point(BaseModel):
    at: datetime
    count: int


class ChannelPoint(Point):
    channel: str


class Sample(BaseModel):
    name: str
    labels: dict[str, str]
    value: float


class ProcessFigures(BaseModel):
    process: str = Field(description="kind@host:pid")
    kind: Literal["serve", "worker"]
    reported_at: datetime
    samples: list[Sample] = Field(description="its Prometheus samples; counters and buckets cumulative")


class Figures(BaseModel):
    sends: list[Point] = Field(description="notifications created per 10 s over the last 5 minutes")
    deliveries: list[ChannelPoint] = Field(description="deliveries handed to providers per 10 s and channel")
    pending: int
    oldest_pending_seconds: float | None = Field(description="age of the oldest due pending delivery")
    dead_letters: int
    notification_queue_usage: float = Field(description="pg_notification_queue_usage(), 0 to 1")
    processes: list[ProcessFigures] = Field(
        description="serve and worker processes that reported in the last 15 s (a DBA's only: no org's figures)"
    )


class Setting(BaseModel):
    key: str
    value: Any = Field(description="its JSON value, read as its kind says")
    kind: Literal["integer", "interval", "time", "text", "boolean"]
    description: str


class Retention(BaseModel):
    notification_type: str | None = Field(description="null: the default for every type without its own")
    max_age: str = Field(description="an interval: notifications older than this are deleted")
    max_read_per_user: int | None = Field(description="read notifications kept per user at most; null: no cap")


class Policies(BaseModel):
    settings: list[Setting] = Field(description="rate limits and the other policy values (a DBA changes them)")
    retention: list[Retention]


class SettingChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Annotated[Any, Field(description="the new JSON value; the database refuses one its kind cannot read")]


class RetentionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notification_type: TypeName | None = Field(default=None, description="null: the default")
    max_age: Annotated[str, Field(min_length=1, max_length=100, examples=["90 days"])]
    max_read_per_user: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None


async def activity(request: Request) -> Response:
    caller = await org_admin(request)
    q = ActivityQuery.model_validate(dict(request.query_params))
    async with as_caller(request.app.state.pool, caller) as conn:
        rows = await conn.fetch(
            query("console_activity"), q.user_id, q.type, q.priority, q.from_, q.to, q.channel, q.status, q.limit
        )
    return reply(Activity(notifications=[ActivityRow.model_validate(dict(row)) for row in rows]))


async def dead_letters(request: Request) -> Response:
    caller = await org_admin(request)
    q = DeadLetterQuery.model_validate(dict(request.query_params))
    async with as_caller(request.app.state.pool, caller) as conn:
        rows = await conn.fetch(query("console_dead_letters"), q.channel, q.type, q.limit)
    return reply(DeadLetters(dead_letters=[DeadLetter.model_validate(dict(row)) for row in rows]))


async def _batch(request: Request, sql: str) -> Response:
    caller = await org_admin(request)
    body = Batch.model_validate_json(await request.body())
    try:
        async with as_caller(request.app.state.pool, caller) as conn:
            count = await conn.fetchval(sql, body.delivery_ids)
    except asyncpg.NoDataFoundError as error:
        # The database names the first id that is no dead letter the caller may see: nothing was changed.
        raise ApiError(status.HTTP_404_NOT_FOUND, error.message) from None
    return reply(BatchDone(count=count))


async def retry(request: Request) -> Response:
    return await _batch(request, query("retry_deliveries"))


async def discard(request: Request) -> Response:
    return await _batch(request, query("discard_deliveries"))


async def figures(request: Request) -> Response:
    caller = await org_admin(request)
    async with as_caller(request.app.state.pool, caller) as conn:
        sends = await conn.fetch(query("console_sends"))
        deliveries = await conn.fetch(query("console_deliveries"))
        backlog = await conn.fetchrow(query("console_backlog"))
        processes = await conn.fetch(query("console_processes"))
    assert backlog is not None  # one row of scalar subqueries
    answer = Figures(
        sends=[Point.model_validate(dict(row)) for row in sends],
        deliveries=[ChannelPoint.model_validate(dict(row)) for row in deliveries],
        processes=[ProcessFigures.model_validate(dict(row)) for row in processes],
        **dict(backlog),
    )
    return reply(answer)


async def policies(request: Request) -> Response:
    caller = await org_admin(request)
    async with as_caller(request.app.state.pool, caller) as conn:
        settings = await conn.fetch(query("console_settings"))
        retention = await conn.fetch(query("console_retention"))
    return reply(
        Policies(
            settings=[Setting.model_validate(dict(row)) for row in settings],
            retention=[Retention.model_validate(dict(row)) for row in retention],
        )
    )


async def put_setting(request: Request) -> Response:
    caller = await org_admin(request)
    key = request.path_params["key"]
    body = SettingChange.model_validate_json(await request.body())
    try:
        async with as_caller(request.app.state.pool, caller) as conn:
            changed = await conn.fetchrow(query("set_setting"), key, body.value)
    except asyncpg.NoDataFoundError as error:
        raise ApiError(status.HTTP_404_NOT_FOUND, error.message) from None
    assert changed is not None  # the function returns the row or raises
    return reply(Setting.model_validate(dict(changed)))


async def put_retention(request: Request) -> Response:
    caller = await org_admin(request)
    body = RetentionChange.model_validate_json(await request.body())
    async with as_caller(request.app.state.pool, caller) as conn:
        changed = await conn.fetchrow(
            query("set_retention"), body.notification_type, body.max_age, body.max_read_per_user
        )
    assert changed is not None  # the upsert returns its row or raises
    return reply(Retention.model_validate(dict(changed)))


_REFUSED = (status.HTTP_403_FORBIDDEN,)

ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", f"{ADMIN}/notifications", activity,
             "notifications newest first with each channel's status, searchable by user, type, priority, a "
             "channel's status and time (admins; an org admin sees their org)", "user", ok_model=Activity,
             query_model=ActivityQuery, errors=_REFUSED),
    Endpoint("GET", f"{ADMIN}/dead-letters", dead_letters,
             "deliveries that failed for good, with the provider's last answer (admins; an org admin sees their org)",
             "user", ok_model=DeadLetters, query_model=DeadLetterQuery, errors=_REFUSED),
    Endpoint("POST", f"{ADMIN}/dead-letters/retry", retry,
             "sends dead letters again with fresh attempts: all or none, audit-logged", "user", ok_model=BatchDone,
             request_model=Batch, errors=(*_REFUSED, status.HTTP_404_NOT_FOUND)),
    Endpoint("POST", f"{ADMIN}/dead-letters/discard", discard,
             "takes dead letters out for good (cancelled, never sent): all or none, audit-logged", "user",
             ok_model=BatchDone, request_model=Batch, errors=(*_REFUSED, status.HTTP_404_NOT_FOUND)),
    Endpoint("GET", f"{ADMIN}/figures", figures,
             "the console's live figures: sends and deliveries per 10 s, pending and dead deliveries, the oldest "
             "due delivery, LISTEN/NOTIFY queue use (admins; an org admin sees their org), and each process's "
             "own samples (DBAs)", "user", ok_model=Figures,
             errors=_REFUSED),
    Endpoint("GET", f"{ADMIN}/policies", policies,
             "the settings (rate limits and other policy values) and the retention policies (admins read them)",
             "user", ok_model=Policies, errors=_REFUSED),
    Endpoint("PUT", f"{ADMIN}/settings/{{key}}", put_setting,
             "change one setting (DBAs; 422 when its kind cannot read the value)", "user", ok_model=Setting,
             request_model=SettingChange, path_params=("key",), errors=(*_REFUSED, status.HTTP_404_NOT_FOUND)),
    Endpoint("PUT", f"{ADMIN}/retention", put_retention,
             "set how long a type's notifications are kept, or the default (DBAs; audit-logged)", "user",
             ok_model=Retention, request_model=RetentionChange, errors=_REFUSED),
]  # fmt: skip
