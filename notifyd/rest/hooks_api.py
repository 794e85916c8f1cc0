"""Webhook endpoints and chat connections over REST: register, list, remove; rotate, replay, read the log.

A webhook endpoint's URL is checked against the SSRF rules here (and again when the worker connects); its
signing secret is made here, shown once in the answer, and stored encrypted. A chat connection's URL is its
credential: checked against its platform's hosts, stored encrypted, never shown again. A user registers
their own; an org admin, with org_wide, one that gets the notifications of every user of their org.
"""

from __future__ import annotations

import base64
import logging
import secrets
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field
from starlette import status
from starlette.requests import Request
from starlette.responses import Response

from notifyd.core.auth import Caller
from notifyd.core.config import Settings
from notifyd.core.crypto import SecretBox
from notifyd.core.models import PREFIX
from notifyd.db.pool import as_caller
from notifyd.db.queries import query
from notifyd.domain.outbound import url_refused
from notifyd.domain.webpush import endpoint_allowed
from notifyd.http.errors import ApiError
from notifyd.http.openapi import Endpoint
from notifyd.http.shared import authenticate, caller_rows, path_uuid, reply

log = logging.getLogger("notifyd.hooks")

SECRET_BYTES = 32
MAX_URL_LENGTH = 2000
MAX_LOG_ROWS = 500
NOT_CONFIGURED = "webhooks and chat need NOTIFICATION_ENCRYPTION_KEY, which is not set (it encrypts their secrets)"
USERS_AND_ADMINS = "webhook endpoints and chat connections belong to users and org admins"
ORG_WIDE_ADMINS = "org_wide targets are registered by an org admin"
ENDPOINT_NOT_FOUND = "webhook endpoint not found"
CONNECTION_NOT_FOUND = "chat connection not found"
DELIVERY_NOT_FOUND = "delivery not found at this webhook endpoint"
CHAT_HOST = "url is not a {platform} incoming webhook: its scheme, host and port must match {setting}"

Platform = Literal["slack", "teams", "discord"]
TypeName = Annotated[str, Field(min_length=1, max_length=100)]


def new_secret() -> str:
    """A signing secret as Standard Webhooks spells it: whsec_ and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookEndpointRequest(_Request):
    url: Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH)]
    description: Annotated[str, Field(max_length=200)] = ""
    types: Annotated[list[TypeName], Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="the notification types it gets; null: all"
    )
    org_wide: bool = Field(default=False, description="an org admin's endpoint for every user of their org")


class ChatConnectionRequest(_Request):
    platform: Platform
    url: Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH)] = Field(
        description="the incoming-webhook URL the platform gave (it is a credential: never shown again)"
    )
    label: Annotated[str, Field(max_length=200)] = ""
    types: Annotated[list[TypeName], Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="the notification types it gets; null: all"
    )
    org_wide: bool = Field(default=False, description="an org admin's channel for every user of their org")


class LogQuery(_Request):
    limit: int = Field(default=50, ge=1, le=MAX_LOG_ROWS)


class WebhookEndpoint(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    org_id: uuid.UUID | None
    url: str
    description: str
    types: list[str] | None
    is_active: bool
    deactivated_reason: str | None
    failing_since: datetime | None
    last_success_at: datetime | None
    previous_secret_until: datetime | None = Field(description="until then the secret before a rotation signs too")
    created_at: datetime


class WebhookEndpointCreated(WebhookEndpoint):
    secret: str = Field(description="the signing secret (whsec_…): shown this once, keep it in the receiver")


class WebhookEndpointList(BaseModel):
    items: list[WebhookEndpoint]


class SecretRotated(BaseModel):
    secret: str = Field(description="the new signing secret (whsec_…): shown this once")
    previous_secret_until: datetime = Field(description="the old secret signs beside the new one until then")


class WebhookDelivery(BaseModel):
    id: uuid.UUID = Field(description="the delivery's id: the webhook-id header, the receiver's idempotency key")
    notification_id: uuid.UUID
    user_id: uuid.UUID
    status: str
    attempts: int
    repeats: int
    reason: str | None
    error_message: str | None
    sent_at: datetime | None
    failed_at: datetime | None
    created_at: datetime


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDelivery]


class Replayed(BaseModel):
    job_id: int | None = Field(description="the dispatcher job that hands the delivery to the webhook channel")


class ChatConnection(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    org_id: uuid.UUID | None
    platform: Platform
    label: str
    types: list[str] | None
    is_active: bool
    deactivated_reason: str | None
    created_at: datetime


class ChatConnectionList(BaseModel):
    items: list[ChatConnection]


# --- handlers -------------------------------------------------------------------------------------------


async def owner(request: Request) -> Caller:
    """A user, or an org admin."""
    caller = await authenticate(request)
    if caller.role not in ("authenticated", "admin"):
        raise ApiError(status.HTTP_403_FORBIDDEN, USERS_AND_ADMINS)
    return caller


def org_wide_by_admin(caller: Caller, org_wide: bool) -> None:
    """Only an org admin registers an org-wide target."""
    if org_wide and caller.role != "admin":
        raise ApiError(status.HTTP_403_FORBIDDEN, ORG_WIDE_ADMINS)


def box(request: Request) -> SecretBox:
    settings: Settings = request.app.state.settings
    if settings.secrets is None:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, NOT_CONFIGURED)
    return settings.secrets


async def as_owner(request: Request, caller: Caller, missing: str, name: str, *args: Any) -> Any:
    """Runs the named query as the caller; a target (or delivery) that is not theirs is not found."""
    try:
        async with as_caller(request.app.state.pool, caller) as conn:
            return await conn.fetchval(query(name), *args)
    except asyncpg.NoDataFoundError:
        raise ApiError(status.HTTP_404_NOT_FOUND, missing) from None


async def add_webhook_endpoint(request: Request) -> Response:
    caller = await owner(request)
    body = WebhookEndpointRequest.model_validate_json(await request.body())
    org_wide_by_admin(caller, body.org_wide)
    settings: Settings = request.app.state.settings
    refused = url_refused(body.url, settings.webhook_endpoint_allowlist)
    if refused is not None:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, f"url: {refused}")
    secret = new_secret()
    sql = query("add_org_webhook_endpoint") if body.org_wide else query("add_webhook_endpoint")
    try:
        async with as_caller(request.app.state.pool, caller) as conn:
            row = await conn.fetchrow(sql, body.url, box(request).encrypt(secret), body.description, body.types)
    except asyncpg.InsufficientPrivilegeError as refusal:
        # The database's words say who decided (the caller's org or the server's setting) and whom to ask.
        raise ApiError(status.HTTP_403_FORBIDDEN, refusal.message) from None
    assert row is not None
    log.info("%s %s registered webhook endpoint %s", caller.role, caller.sub, row["id"])
    return reply(WebhookEndpointCreated(**dict(row), secret=secret), status.HTTP_201_CREATED)


async def list_webhook_endpoints(request: Request) -> Response:
    rows = await caller_rows(request, await owner(request), "list_webhook_endpoints")
    return reply(WebhookEndpointList(items=[WebhookEndpoint.model_validate(dict(r)) for r in rows]))


async def remove_webhook_endpoint(request: Request) -> Response:
    caller = await owner(request)
    await as_owner(request, caller, ENDPOINT_NOT_FOUND, "remove_webhook_endpoint", path_uuid(request, "endpoint_id"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def rotate_webhook_secret(request: Request) -> Response:
    caller = await owner(request)
    secret = new_secret()
    until = await as_owner(request, caller, ENDPOINT_NOT_FOUND, "rotate_webhook_secret",
                           path_uuid(request, "endpoint_id"), box(request).encrypt(secret))  # fmt: skip
    return reply(SecretRotated(secret=secret, previous_secret_until=until))


async def enable_webhook_endpoint(request: Request) -> Response:
    caller = await owner(request)
    await as_owner(request, caller, ENDPOINT_NOT_FOUND, "enable_webhook_endpoint", path_uuid(request, "endpoint_id"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def webhook_deliveries(request: Request) -> Response:
    caller = await owner(request)
    limit = LogQuery.model_validate(dict(request.query_params)).limit
    try:
        rows = await caller_rows(request, caller, "webhook_deliveries", path_uuid(request, "endpoint_id"), limit)
    except asyncpg.NoDataFoundError:
        raise ApiError(status.HTTP_404_NOT_FOUND, ENDPOINT_NOT_FOUND) from None
    return reply(WebhookDeliveryList(items=[WebhookDelivery.model_validate(dict(r)) for r in rows]))


async def replay_webhook_delivery(request: Request) -> Response:
    caller = await owner(request)
    job_id = await as_owner(request, caller, DELIVERY_NOT_FOUND, "replay_webhook_delivery",
                            path_uuid(request, "endpoint_id"), path_uuid(request, "delivery_id"))  # fmt: skip
    return reply(Replayed(job_id=job_id), status.HTTP_202_ACCEPTED)


async def add_chat_connection(request: Request) -> Response:
    caller = await owner(request)
    body = ChatConnectionRequest.model_validate_json(await request.body())
    org_wide_by_admin(caller, body.org_wide)
    settings: Settings = request.app.state.settings
    if not endpoint_allowed(body.url, settings.chat_webhook_hosts.get(body.platform, ())):
        setting = f"{body.platform.upper()}_WEBHOOK_HOSTS"
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, CHAT_HOST.format(platform=body.platform, setting=setting))
    sql = query("add_org_chat_connection") if body.org_wide else query("add_chat_connection")
    async with as_caller(request.app.state.pool, caller) as conn:
        row = await conn.fetchrow(sql, body.platform, box(request).encrypt(body.url), body.label, body.types)
    assert row is not None
    log.info("%s %s connected %s chat connection %s", caller.role, caller.sub, row["platform"], row["id"])
    return reply(ChatConnection.model_validate(dict(row)), status.HTTP_201_CREATED)


async def list_chat_connections(request: Request) -> Response:
    rows = await caller_rows(request, await owner(request), "list_chat_connections")
    return reply(ChatConnectionList(items=[ChatConnection.model_validate(dict(r)) for r in rows]))


async def remove_chat_connection(request: Request) -> Response:
    caller = await owner(request)
    await as_owner(request, caller, CONNECTION_NOT_FOUND, "remove_chat_connection",
                   path_uuid(request, "connection_id"))  # fmt: skip
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# "user": a user's JWT, or an org admin's (org-wide targets); never a service.
HOOK = f"{PREFIX}/webhooks/{{endpoint_id:uuid}}"
CHAT = f"{PREFIX}/chat-connections"
NOT_FOUND_ERRORS = (status.HTTP_404_NOT_FOUND,)
ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", f"{PREFIX}/webhooks", add_webhook_endpoint,
             "register a webhook endpoint (the caller's notifications; org_wide: an org admin's, for the org); "
             "the answer carries its signing secret, once", "user",
             ok_status=status.HTTP_201_CREATED, ok_model=WebhookEndpointCreated, request_model=WebhookEndpointRequest,
             errors=(status.HTTP_403_FORBIDDEN, status.HTTP_503_SERVICE_UNAVAILABLE)),
    Endpoint("GET", f"{PREFIX}/webhooks", list_webhook_endpoints, "the caller's webhook endpoints (never a secret)",
             "user", ok_model=WebhookEndpointList),
    Endpoint("DELETE", HOOK, remove_webhook_endpoint, "remove one of the caller's webhook endpoints", "user",
             ok_status=status.HTTP_204_NO_CONTENT, path_params=("endpoint_id",), errors=NOT_FOUND_ERRORS),
    Endpoint("POST", f"{HOOK}/rotate", rotate_webhook_secret,
             "a new signing secret; the old one signs beside it until previous_secret_until", "user",
             ok_model=SecretRotated, path_params=("endpoint_id",),
             errors=(status.HTTP_404_NOT_FOUND, status.HTTP_503_SERVICE_UNAVAILABLE)),
    Endpoint("POST", f"{HOOK}/enable", enable_webhook_endpoint, "turn a disabled endpoint back on", "user",
             ok_status=status.HTTP_204_NO_CONTENT, path_params=("endpoint_id",), errors=NOT_FOUND_ERRORS),
    Endpoint("GET", f"{HOOK}/deliveries", webhook_deliveries, "the endpoint's delivery log, newest first", "user",
             ok_model=WebhookDeliveryList, query_model=LogQuery, path_params=("endpoint_id",),
             errors=NOT_FOUND_ERRORS),
    Endpoint("POST", f"{HOOK}/deliveries/{{delivery_id:uuid}}/replay", replay_webhook_delivery,
             "send a failed delivery again, with the same webhook-id", "user",
             ok_status=status.HTTP_202_ACCEPTED, ok_model=Replayed, path_params=("endpoint_id", "delivery_id"),
             errors=NOT_FOUND_ERRORS),
    Endpoint("POST", CHAT, add_chat_connection,
             "connect a Slack, Teams or Discord incoming webhook (org_wide: an org admin's org channel)", "user",
             ok_status=status.HTTP_201_CREATED, ok_model=ChatConnection, request_model=ChatConnectionRequest,
             errors=(status.HTTP_503_SERVICE_UNAVAILABLE,)),
    Endpoint("GET", CHAT, list_chat_connections, "the caller's chat connections (never a URL)", "user",
             ok_model=ChatConnectionList),
    Endpoint("DELETE", f"{CHAT}/{{connection_id:uuid}}", remove_chat_connection,
             "remove one of the caller's chat connections", "user",
             ok_status=status.HTTP_204_NO_CONTENT, path_params=("connection_id",), errors=NOT_FOUND_ERRORS),
]  # fmt: skip
