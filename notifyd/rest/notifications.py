"""The REST notification center (send, list, read, act): thin handlers that run notify's SQL as the caller."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from starlette import status
from starlette.requests import Request
from starlette.responses import Response

from notifyd.core.crypto import SecretBox, SecretsError
from notifyd.core.models import (
    IDEMPOTENCY_HEADER,
    PREFIX,
    ActionResult,
    ArchiveResult,
    BatchCounts,
    BatchStatus,
    BulkAccepted,
    BulkCreate,
    Channel,
    CreatedNotification,
    InternalSent,
    ListQuery,
    Notification,
    NotificationCreate,
    NotificationPage,
    ReadAllResult,
    ReadResult,
    SeenRequest,
    SeenResult,
    SeenState,
    SensitiveFields,
    SnoozeRequest,
    SnoozeResult,
    UnreadCount,
)
from notifyd.db.pool import as_caller
from notifyd.db.queries import query
from notifyd.domain import sensitive, templates
from notifyd.domain.render_pool import RenderPool
from notifyd.domain.sending import send_args, send_one_args
from notifyd.http.errors import ApiError, database_problem
from notifyd.http.openapi import Endpoint
from notifyd.http.readafter import DOCUMENTED as READ_AFTER
from notifyd.http.readafter import lag_tolerant
from notifyd.http.shared import (
    NOT_FOUND,
    decode_cursor,
    encode_cursor,
    end_user,
    found,
    found_value,
    idempotency_key,
    optional_body,
    path_uuid,
    rate_limit_headers,
    reply,
    sender,
)

NO_SENSITIVE_FIELDS = "this notification has no sensitive fields"
BATCH_NOT_FOUND = "batch not found"
BAD_ACTION = "action must be 1 to 100 characters"


# --- sending ------------------------------------------------------------------------------------------


async def render_before_insert(
    conn: asyncpg.Connection, body: NotificationCreate, secrets: SecretBox | None, render_pool: RenderPool
) -> NotificationCreate:
    """A template notification is rendered here, in the recipient's language, so it is never held.

    Its sensitive fields are masked and sealed first: their real values never reach the database in clear.
    """
    if body.template_id is None:
        return body
    languages = await conn.fetchval(query("template_languages"), body.template_id)
    language = await conn.fetchrow(query("rendering_language"), body.user_id)
    assert language is not None
    masked = sensitive.mask(sensitive.marked(languages), body.data, body.template_vars)
    try:
        sealed = None if masked.real is None else sensitive.seal(secrets, masked.real)
    except SecretsError as error:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
    try:
        chosen = templates.choose(languages, body.template_id, language["locale"], language["default_language"])
        rendering = await render_pool.render(chosen, masked.template_vars)
    except templates.TemplateError as error:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    await conn.execute(query("supply_rendering"), rendering.rendered, sealed)
    return body.model_copy(
        update={"title": rendering.title, "body": rendering.body, "data": masked.data,
                "template_vars": masked.template_vars}
    )  # fmt: skip


async def send_one(request: Request) -> tuple[asyncpg.Record, bool, dict[str, str]]:
    """Sends the request's notification; returns the notification row, whether it is new, and rate headers."""
    caller = await sender(request)
    body = NotificationCreate.model_validate_json(await request.body())
    key = idempotency_key(request, body.idempotency_key)
    channels = list(body.channels) if body.channels is not None else None
    async with as_caller(request.app.state.pool, caller) as conn:
        body = await render_before_insert(conn, body, request.app.state.settings.secrets, request.app.state.render_pool)
        notification_id = await conn.fetchval(
            query("send_notification"), body.user_id, *send_one_args(body, channels, key)
        )
        row = await conn.fetchrow(query("sent_notification"), notification_id)
        headers = await rate_limit_headers(conn)
    assert row is not None, "a service sees every notification"
    return row, bool(row["created"]), headers


async def create_notification(request: Request) -> Response:
    row, created, headers = await send_one(request)
    answer = CreatedNotification(
        id=row["id"], notification_id=row["id"], status="queued", channels=row["channels"], created_at=row["created_at"]
    )
    return reply(answer, status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK, headers)


async def internal_send(request: Request) -> Response:
    row, created, headers = await send_one(request)
    return reply(
        InternalSent(id=row["id"], notification_id=row["id"], status="queued"),
        status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
        headers,
    )


def bulk_channels(body: BulkCreate) -> list[Channel] | None:
    if body.send_email is None:
        return list(body.channels) if body.channels is not None else None
    default: list[Channel] = ["in_app", "push"]
    channels: list[Channel] = [c for c in (body.channels or default) if c != "email"]
    return [*channels, "email"] if body.send_email else channels


async def create_bulk(request: Request) -> Response:
    caller = await sender(request)
    body = BulkCreate.model_validate_json(await request.body())
    key = idempotency_key(request, body.idempotency_key)
    async with as_caller(request.app.state.pool, caller) as conn:
        try:
            batch_id = await conn.fetchval(
                query("send_bulk"), body.user_ids, *send_args(body, bulk_channels(body), key)
            )
        except asyncpg.NumericValueOutOfRangeError as too_many:
            # The database decides the limit (batch.max_recipients); this route answers 400 for it.
            problem = await database_problem(request.app.state.pool, too_many)
            raise ApiError(status.HTTP_400_BAD_REQUEST, problem.message, problem=problem) from None
        created = await conn.fetchval(query("batch_created_here"), batch_id)
        batch = await conn.fetchrow(query("batch_status"), batch_id)
        headers = await rate_limit_headers(conn)
    assert batch is not None
    answer = BulkAccepted(batch_id=batch_id, recipient_count=batch["recipient_count"], status="processing")
    return reply(answer, status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK, headers)


async def bulk_status(request: Request) -> Response:
    batch_id = path_uuid(request, "batch_id")
    row = await found(request, await sender(request), "batch_status", batch_id, BATCH_NOT_FOUND)
    deliveries: dict[str, int] = row["deliveries"]
    pending = deliveries.get("pending", 0) + deliveries.get("held", 0)
    counts = BatchCounts(
        total=row["recipient_count"],
        created=row["created"],
        read=row["read"],
        unread=row["created"] - row["read"] - row["deleted"],
        deleted=row["deleted"],
        actions_taken=row["actions_taken"],
        deliveries=deliveries,
    )
    answer = BatchStatus(
        batch_id=row["id"],
        type=row["type"],
        status="processing" if pending else "completed",
        created_by=row["created_by"],
        created_at=row["created_at"],
        counts=counts,
    )
    return reply(answer)


# --- the notification center ------------------------------------------------------------------------


def notification(row: asyncpg.Record) -> Notification:
    return Notification.model_validate(dict(row))


async def list_notifications(request: Request) -> Response:
    caller = await end_user(request)
    params = ListQuery.model_validate(dict(request.query_params))
    after: tuple[datetime | None, uuid.UUID | None, int | None] = (None, None, None)
    if params.cursor is not None:
        after = decode_cursor(params.cursor, params.sort)

    async def page_and_count(conn: asyncpg.Connection) -> tuple[list[asyncpg.Record], dict[uuid.UUID, Any], Any]:
        rows = await conn.fetch(
            query("list_notifications"),
            params.type, params.priority, params.is_read, after[0], after[1], params.limit + 1, params.sort, after[2],
            params.state,
        )  # fmt: skip
        listed = [r["id"] for r in rows[: params.limit]]
        found = await conn.fetch(query("delivery_statuses"), listed) if listed else []
        statuses = {r["notification_id"]: r["delivery_status"] for r in found}
        return rows, statuses, await conn.fetchval(query("unread_count"))

    rows, statuses, unread = await lag_tolerant(request, caller, page_and_count)
    page, has_more = rows[: params.limit], len(rows) > params.limit
    answer = NotificationPage(
        items=[Notification.model_validate({**dict(r), "delivery_status": statuses.get(r["id"], {})}) for r in page],
        unread_count=unread["count"],
        next_cursor=encode_cursor(params.sort, page[-1]) if has_more else None,
        has_more=has_more,
    )
    return reply(answer)


async def unread_count(request: Request) -> Response:
    caller = await end_user(request)
    counts = await lag_tolerant(request, caller, lambda conn: conn.fetchval(query("unread_count")))
    return reply(UnreadCount.model_validate(counts))


async def get_notification(request: Request) -> Response:
    notification_id = path_uuid(request, "notification_id")
    row = await found(request, await end_user(request), "get_notification", notification_id, NOT_FOUND)
    return reply(notification(row))


async def get_sensitive(request: Request) -> Response:
    notification_id = path_uuid(request, "notification_id")
    row = await found(request, await end_user(request), "get_notification", notification_id, NOT_FOUND)
    if row["sealed"] is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, NO_SENSITIVE_FIELDS)
    try:
        real = sensitive.reveal(request.app.state.settings.secrets, row["sealed"])
    except SecretsError as error:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
    return reply(SensitiveFields(id=notification_id, **real))


async def mark_read(request: Request) -> Response:
    caller = await end_user(request)
    notification_id = path_uuid(request, "notification_id")
    read_at = await found_value(request, caller, "mark_read", NOT_FOUND, notification_id)
    return reply(ReadResult(id=notification_id, read_at=read_at))


async def mark_all_read(request: Request) -> Response:
    caller = await end_user(request)
    async with as_caller(request.app.state.pool, caller) as conn:
        updated = await conn.fetchval(query("mark_all_read"))
    return reply(ReadAllResult(updated_count=updated))


async def mark_seen(request: Request) -> Response:
    caller = await end_user(request)
    body = await optional_body(request, SeenRequest)
    async with as_caller(request.app.state.pool, caller) as conn:
        updated = await conn.fetchval(query("mark_seen"), body.ids)
        seen = await conn.fetchval(query("seen_state"))
    return reply(SeenResult(updated_count=updated, **seen))


async def seen_state(request: Request) -> Response:
    caller = await end_user(request)
    seen = await lag_tolerant(request, caller, lambda conn: conn.fetchval(query("seen_state")))
    return reply(SeenState.model_validate(seen))


async def change_archived(request: Request, sql: str) -> Response:
    """archive or unarchive (`sql`, the named query): one of the caller's notifications, else 404."""
    caller = await end_user(request)
    notification_id = path_uuid(request, "notification_id")
    try:
        async with as_caller(request.app.state.pool, caller) as conn:
            archived_at = await conn.fetchval(sql, notification_id)
    except asyncpg.NoDataFoundError:
        raise ApiError(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None
    return reply(ArchiveResult(id=notification_id, archived_at=archived_at))


async def archive(request: Request) -> Response:
    return await change_archived(request, query("archive"))


async def unarchive(request: Request) -> Response:
    return await change_archived(request, query("unarchive"))


async def snooze(request: Request) -> Response:
    caller = await end_user(request)
    notification_id = path_uuid(request, "notification_id")
    body = SnoozeRequest.model_validate_json(await request.body())
    try:
        async with as_caller(request.app.state.pool, caller) as conn:
            until = await conn.fetchval(query("snooze"), notification_id, body.until)
    except asyncpg.NoDataFoundError:
        raise ApiError(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None
    return reply(SnoozeResult(id=notification_id, snoozed_until=until))


async def delete_notification(request: Request) -> Response:
    caller = await end_user(request)
    notification_id = path_uuid(request, "notification_id")
    await found_value(request, caller, "soft_delete", NOT_FOUND, notification_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def take_action(request: Request) -> Response:
    caller = await end_user(request)
    notification_id = path_uuid(request, "notification_id")
    action = request.path_params["action"]
    if not 1 <= len(action) <= 100:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, BAD_ACTION)
    recorded = await found_value(request, caller, "take_action", NOT_FOUND, notification_id, action)
    answer = ActionResult(
        id=notification_id,
        action=recorded["action"],
        action_taken_at=recorded["taken_at"],
        action_id=recorded["id"],
        result="recorded",
    )
    return reply(answer)


# --- the route table ------------------------------------------------------------------------------

_NOTIFICATION = f"{PREFIX}/{{notification_id:uuid}}"
_IDEMPOTENCY = (
    (IDEMPOTENCY_HEADER, "replaying a key with the same request answers 200 with the first result; with another, 422"),
)

ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", PREFIX, create_notification, "create a notification", "sender",
             ok_status=status.HTTP_202_ACCEPTED, ok_model=CreatedNotification, request_model=NotificationCreate,
             headers=_IDEMPOTENCY, errors=(status.HTTP_429_TOO_MANY_REQUESTS, status.HTTP_503_SERVICE_UNAVAILABLE),
             extra_responses={status.HTTP_200_OK: "an idempotency key replayed: the first id"}),
    Endpoint("POST", f"{PREFIX}/bulk", create_bulk, "send one notification to many users", "sender",
             ok_status=status.HTTP_202_ACCEPTED, ok_model=BulkAccepted, request_model=BulkCreate,
             headers=_IDEMPOTENCY, errors=(status.HTTP_400_BAD_REQUEST, status.HTTP_429_TOO_MANY_REQUESTS),
             extra_responses={status.HTTP_200_OK: "an idempotency key replayed: the first batch"}),
    Endpoint("GET", f"{PREFIX}/bulk/{{batch_id:uuid}}", bulk_status, "a batch's status and counts", "sender",
             ok_model=BatchStatus, path_params=("batch_id",), errors=(status.HTTP_404_NOT_FOUND,)),
    Endpoint("POST", "/api/v1/internal/notifications/send", internal_send, "send a notification (services)",
             "sender", ok_status=status.HTTP_202_ACCEPTED, ok_model=InternalSent, request_model=NotificationCreate,
             headers=_IDEMPOTENCY, errors=(status.HTTP_429_TOO_MANY_REQUESTS, status.HTTP_503_SERVICE_UNAVAILABLE),
             extra_responses={status.HTTP_200_OK: "an idempotency key replayed: the first id"}),
    Endpoint("GET", PREFIX, list_notifications, "the caller's notifications, one page", "user",
             ok_model=NotificationPage, query_model=ListQuery, headers=READ_AFTER),
    Endpoint("GET", f"{PREFIX}/unread-count", unread_count, "the caller's unread count", "user",
             ok_model=UnreadCount, headers=READ_AFTER),
    Endpoint("POST", f"{PREFIX}/read-all", mark_all_read, "mark all of the caller's notifications read", "user",
             ok_model=ReadAllResult),
    Endpoint("GET", _NOTIFICATION, get_notification, "one notification", "user",
             ok_model=Notification, path_params=("notification_id",), errors=(status.HTTP_404_NOT_FOUND,)),
    Endpoint("GET", f"{_NOTIFICATION}/sensitive", get_sensitive,
             "the real values of one notification's sensitive fields (masked everywhere else)", "user",
             ok_model=SensitiveFields, path_params=("notification_id",),
             errors=(status.HTTP_404_NOT_FOUND, status.HTTP_503_SERVICE_UNAVAILABLE)),
    Endpoint("PATCH", f"{_NOTIFICATION}/read", mark_read, "mark one notification read", "user",
             ok_model=ReadResult, path_params=("notification_id",), errors=(status.HTTP_404_NOT_FOUND,)),
    Endpoint("POST", f"{PREFIX}/seen", mark_seen,
             "mark the caller's notifications seen (the given ids, or all the inbox shows); the badge after", "user",
             ok_model=SeenResult, request_model=SeenRequest, request_body_required=False,
             errors=(status.HTTP_422_UNPROCESSABLE_CONTENT,)),
    Endpoint("GET", f"{PREFIX}/seen", seen_state, "the caller's badge: the seen watermark and the unseen count",
             "user", ok_model=SeenState, headers=READ_AFTER),
    Endpoint("POST", f"{_NOTIFICATION}/archive", archive, "move one notification to the Archive view", "user",
             ok_model=ArchiveResult, path_params=("notification_id",), errors=(status.HTTP_404_NOT_FOUND,)),
    Endpoint("POST", f"{_NOTIFICATION}/unarchive", unarchive, "bring one archived notification back to the inbox",
             "user", ok_model=ArchiveResult, path_params=("notification_id",), errors=(status.HTTP_404_NOT_FOUND,)),
    Endpoint("POST", f"{_NOTIFICATION}/snooze", snooze, "hide one notification until a time, when it comes back as new",
             "user", ok_model=SnoozeResult, request_model=SnoozeRequest, path_params=("notification_id",),
             errors=(status.HTTP_404_NOT_FOUND, status.HTTP_422_UNPROCESSABLE_CONTENT)),
    Endpoint("DELETE", _NOTIFICATION, delete_notification, "delete one notification (soft)", "user",
             ok_status=status.HTTP_204_NO_CONTENT, path_params=("notification_id",),
             errors=(status.HTTP_404_NOT_FOUND,)),
    Endpoint("POST", f"{_NOTIFICATION}/actions/{{action}}", take_action, "press one of a notification's actions",
             "user", ok_model=ActionResult, path_params=("notification_id", "action"),
             errors=(status.HTTP_404_NOT_FOUND, status.HTTP_422_UNPROCESSABLE_CONTENT)),
]  # fmt: skip
