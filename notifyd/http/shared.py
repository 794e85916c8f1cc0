"""What every HTTP route shares: who is calling (bearer JWT or service key), JSON replies, path ids, page cursors."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel
from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse

from notifyd.core.auth import (
    MAX_SERVICE_KEY_LENGTH,
    MAX_SERVICE_NAME_LENGTH,
    AuthError,
    Caller,
    bearer_token,
    decode_token,
    service_caller,
)
from notifyd.core.config import Settings
from notifyd.core.models import IDEMPOTENCY_HEADER, SERVICE_KEY_HEADER, SERVICE_NAME_HEADER
from notifyd.db.pool import as_caller, as_worker
from notifyd.db.queries import query
from notifyd.http.errors import ApiError

Body = TypeVar("Body", bound=BaseModel)

PRIORITY_RANK = {"critical": 1, "high": 2, "normal": 3, "low": 4}  # array_position in list_notifications

NOT_FOUND = "notification not found"
NO_CREDENTIALS = f"missing credentials: send Authorization: Bearer <token> or {SERVICE_KEY_HEADER}"
NO_SERVICE_NAME = f"{SERVICE_NAME_HEADER} is required with {SERVICE_KEY_HEADER}"
BAD_SERVICE_KEY = "invalid service key"
TOO_MANY_WRONG_KEYS = "too many wrong service keys from this address: try again in {seconds} s"
# Longer is no IP address: what a misconfigured proxy wrote, kept short as the key of its failure count.
MAX_CLIENT_LENGTH = 255
USERS_ONLY = "this route is for end users (a token with role authenticated)"
SENDERS_ONLY = "only services and admins send notifications"
IDEMPOTENCY_CONFLICT = f"the {IDEMPOTENCY_HEADER} header and the idempotency_key field differ"
ADMINS_ONLY = "this route is for admins (a token with role admin; an org admin's org_id claim names their org)"
BAD_CURSOR = "cursor is not valid"
TYPE_NAME = re.compile(r"[a-z][a-z0-9_]{0,49}")
BAD_TYPE = "unknown notification type: type names are lowercase words such as task"


# --- who is calling -------------------------------------------------------------------------------


def client_address(request: Request) -> str:
    """The caller's address: the TCP peer, or the client behind a proxy of FORWARDED_ALLOW_IPS (server.config)."""
    host = request.client.host if request.client is not None else ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host[:MAX_CLIENT_LENGTH] or "unknown"  # a Unix socket, or what a trusted proxy wrote


async def authenticate(request: Request) -> Caller:
    """A bearer JWT, or a service key checked by the database; AuthError (401) otherwise.

    Wrong service keys are counted per client address in the database, so that every serve process shares
    the count; past SERVICE_KEY_MAX_FAILURES that address gets 429 until its window ends, with a right key too.
    """
    authorization = request.headers.get("authorization")
    if authorization is not None:
        caller = decode_token(bearer_token(authorization), request.app.state.settings)
    else:
        caller = await service_key_caller(request)
    request.state.caller = caller  # whose write it was, for notifyd.http.readafter
    return caller


async def service_key_caller(request: Request) -> Caller:
    """The service of X-Service-Name, when the database finds its X-Internal-Service-Key right."""
    key = request.headers.get(SERVICE_KEY_HEADER)
    if key is None:
        raise AuthError(NO_CREDENTIALS)
    name = request.headers.get(SERVICE_NAME_HEADER)
    if not name:
        raise AuthError(NO_SERVICE_NAME)
    if len(key) > MAX_SERVICE_KEY_LENGTH or len(name) > MAX_SERVICE_NAME_LENGTH:
        raise AuthError(BAD_SERVICE_KEY)
    settings: Settings = request.app.state.settings
    async with as_worker(request.app.state.pool) as conn:
        checked = await conn.fetchrow(
            query("authenticate_service"), name, key, client_address(request), settings.service_key_max_failures,
            timedelta(seconds=settings.service_key_failure_window),
        )  # fmt: skip
    assert checked is not None
    if checked["retry_after"] is not None:
        wait = str(checked["retry_after"])
        raise ApiError(
            status.HTTP_429_TOO_MANY_REQUESTS, TOO_MANY_WRONG_KEYS.format(seconds=wait), headers={"Retry-After": wait}
        )
    if not checked["valid"]:
        raise AuthError(BAD_SERVICE_KEY)
    return service_caller(name)


async def end_user(request: Request) -> Caller:
    caller = await authenticate(request)
    if caller.role != "authenticated":
        raise ApiError(status.HTTP_403_FORBIDDEN, USERS_ONLY)
    return caller


async def sender(request: Request) -> Caller:
    caller = await authenticate(request)
    if caller.role not in ("service", "admin"):
        raise ApiError(status.HTTP_403_FORBIDDEN, SENDERS_ONLY)
    return caller


async def org_admin(request: Request) -> Caller:
    caller = await authenticate(request)
    if caller.role != "admin":
        raise ApiError(status.HTTP_403_FORBIDDEN, ADMINS_ONLY)
    return caller


def idempotency_key(request: Request, field: str | None) -> str | None:
    """A send's idempotency key: the header or the body's field (422 if both are given and differ)."""
    header = request.headers.get(IDEMPOTENCY_HEADER)
    if header is not None and field is not None and header != field:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, IDEMPOTENCY_CONFLICT)
    return header if header is not None else field


async def rate_limit_headers(conn: asyncpg.Connection) -> dict[str, str]:
    """X-RateLimit-* of the global bulk-send bucket (per-user limits hold excess instead of refusing it)."""
    bucket = await conn.fetchval(query("rate_limit_status"))
    return {f"X-RateLimit-{name.title()}": str(int(bucket[name])) for name in ("limit", "remaining", "reset")}


async def optional_body(request: Request, model: type[Body]) -> Body:
    """The JSON body as `model`; a request without one (or a blank one) gets the model's defaults."""
    raw = await request.body()
    return model.model_validate_json(raw) if raw.strip() else model()


def reply(
    model: BaseModel, status_code: int = status.HTTP_200_OK, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status_code, headers=headers)


async def caller_value(request: Request, caller: Caller, name: str, *args: Any) -> Any:
    """The one value query `name` answers, run as the caller."""
    async with as_caller(request.app.state.pool, caller) as conn:
        return await conn.fetchval(query(name), *args)


async def found_value(request: Request, caller: Caller, name: str, missing: str, *args: Any) -> Any:
    """The one value query `name` answers, run as the caller; 404 with `missing` when it is NULL (RLS shows no row)."""
    value = await caller_value(request, caller, name, *args)
    if value is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, missing)
    return value


async def caller_rows(request: Request, caller: Caller, name: str, *args: Any) -> list[asyncpg.Record]:
    """The rows query `name` answers, run as the caller (RLS shows them theirs)."""
    async with as_caller(request.app.state.pool, caller) as conn:
        rows: list[asyncpg.Record] = await conn.fetch(query(name), *args)
    return rows


async def found(request: Request, caller: Caller, name: str, key: uuid.UUID, missing: str) -> asyncpg.Record:
    """The row query `name` finds for `key` as the caller; 404 with `missing` when RLS shows none."""
    async with as_caller(request.app.state.pool, caller) as conn:
        row = await conn.fetchrow(query(name), key)
    if row is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, missing)
    return row


def type_name(request: Request) -> str:
    """The {notification_type} of the path; 422 for a name no type can have."""
    name = request.path_params["notification_type"]
    # Names the database could not even take (a NUL byte) are unknown types too.
    if not TYPE_NAME.fullmatch(name):
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, BAD_TYPE)
    return str(name)


def path_uuid(request: Request, name: str) -> uuid.UUID:
    value = request.path_params[name]
    assert isinstance(value, uuid.UUID)  # the route's {name:uuid} convertor made it
    return value


# --- the cursor of a page ----------------------------------------------------------------------------


def encode_cursor(sort: str, row: asyncpg.Record) -> str:
    position = {"sort": sort, "created_at": row["created_at"].isoformat(), "id": str(row["id"])}
    if sort == "priority":
        position["rank"] = PRIORITY_RANK[row["priority"]]
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[datetime, uuid.UUID, int | None]:
    """(created_at, id, priority rank) of the last row of the previous page; 422 if not ours."""
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        created_at = datetime.fromisoformat(position["created_at"])
        last_id = uuid.UUID(position["id"])
        rank = position.get("rank")
        valid = (
            position["sort"] == sort
            and created_at.tzinfo is not None
            and (rank is None if sort != "priority" else rank in PRIORITY_RANK.values())
        )
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error, UnicodeDecodeError):
        valid = False
    if not valid:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, BAD_CURSOR)
    return created_at, last_id, rank


async def raw_body(request: Request, limit: int, too_large: str) -> bytes:
    """The body as sent (a webhook's signature covers these bytes), refused past `limit` without reading it all."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(status.HTTP_413_CONTENT_TOO_LARGE, too_large)
    return bytes(body)
