"""Push devices over REST: subscribe a browser or a phone, list and remove them, the VAPID key.

Keys and FCM tokens are encrypted before they reach the database (NOTIFICATION_ENCRYPTION_KEY);
a device is found again by the hash of its endpoint or token. Endpoints are checked against
PUSH_ENDPOINT_ALLOWLIST here, since the worker will POST to them.
"""

from __future__ import annotations

import binascii
import json
import logging
import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette import status
from starlette.requests import Request
from starlette.responses import Response

from notifyd.core.config import Settings
from notifyd.core.crypto import b64url, open_token, seal_token, token_hash, unb64url
from notifyd.core.models import PREFIX
from notifyd.db.pool import as_caller, as_worker
from notifyd.db.queries import query
from notifyd.domain import vapid
from notifyd.domain.webpush import endpoint_allowed
from notifyd.http.errors import ApiError
from notifyd.http.openapi import Endpoint
from notifyd.http.shared import caller_rows, end_user, reply

log = logging.getLogger("notifyd.push")

P256_POINT_BYTES = 65
AUTH_SECRET_BYTES = 16
MAX_DEVICE_INFO_BYTES = 4096
MAX_ENDPOINT_LENGTH = 2048
MAX_FCM_TOKEN_LENGTH = 4096
MAX_SUBSCRIPTION_TOKEN_LENGTH = 512
SUBSCRIPTION_PURPOSE = "push-subscription"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")

BAD_P256DH = "p256dh must be base64url of a 65-byte uncompressed P-256 point on the curve"
BAD_AUTH = f"auth must be base64url of exactly {AUTH_SECRET_BYTES} bytes"
BAD_DEVICE_INFO = f"device_info must be a JSON object of at most {MAX_DEVICE_INFO_BYTES} bytes"
ONE_KIND = (
    'send either "subscription": {"endpoint", "keys": {"p256dh", "auth"}} (or that object itself) '
    'for Web Push, or "fcm_token" for FCM'
)
HALF_FLAT = 'a browser subscription needs both "endpoint" and "keys"'
KEY_WITHOUT_WEB_PUSH = "vapid_public_key belongs to a Web Push subscription"
ONE_TARGET = 'send either "subscription_id" or "endpoint"'
ENDPOINT_NOT_ALLOWED = (
    "endpoint is not a push service this server sends to: its scheme, host and port must match PUSH_ENDPOINT_ALLOWLIST"
)
UNKNOWN_VAPID_KEY = (
    "vapid_public_key is not an active VAPID key of this server: subscribe with the key of "
    f"GET {PREFIX}/vapid-public-key"
)
NO_VAPID_KEY = (
    "Web Push is not configured: there is no VAPID key yet (notifyd worker makes one when it starts, "
    "or set VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY)"
)
FCM_NOT_CONFIGURED = "push is not configured: NOTIFICATION_ENCRYPTION_KEY is not set (it encrypts device tokens)"
NOT_FOUND = "push subscription not found"
BAD_SUBSCRIPTION_TOKEN = (
    "the subscription token is not valid: send the subscription_token that push/subscribe answered (not a user JWT)"
)
DEVICE_GONE = (
    "this push subscription is no longer registered (removed, deactivated, or moved since this token was "
    "issued): subscribe again with the user's token"
)

Kind = Literal["webpush", "fcm"]
VapidKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{87}$")]
_VAPID_KEY_DESCRIPTION = "the applicationServerKey the browser subscribed with; default: the current key"


def _base64url(value: str) -> bytes:
    if not _BASE64URL.fullmatch(value):
        raise ValueError("not base64url")
    try:
        return unb64url(value.rstrip("="))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


# --- bodies ---------------------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PushKeys(_Request):
    p256dh: Annotated[str, Field(min_length=1, max_length=200, description="base64url, 65-byte P-256 point")]
    auth: Annotated[str, Field(min_length=1, max_length=100, description="base64url, 16 bytes")]

    @field_validator("p256dh")
    @classmethod
    def _point(cls, value: str) -> str:
        try:
            raw = _base64url(value)
            if len(raw) != P256_POINT_BYTES:
                raise ValueError(BAD_P256DH)
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError:
            raise ValueError(BAD_P256DH) from None
        return b64url(raw)

    @field_validator("auth")
    @classmethod
    def _secret(cls, value: str) -> str:
        try:
            raw = _base64url(value)
        except ValueError:
            raise ValueError(BAD_AUTH) from None
        if len(raw) != AUTH_SECRET_BYTES:
            raise ValueError(BAD_AUTH)
        return b64url(raw)


class WebPushSubscription(_Request):
    """`PushSubscription.toJSON()` of the browser."""

    endpoint: Annotated[str, Field(min_length=1, max_length=MAX_ENDPOINT_LENGTH)]
    keys: PushKeys
    expirationTime: float | None = None  # noqa: N815 - the browser's name


class SubscribeRequest(_Request):
    subscription: WebPushSubscription | None = None
    # The flat form: the browser's subscription JSON posted as it is, which is what
    # PushSubscription.toJSON() gives a page.
    endpoint: Annotated[str, Field(min_length=1, max_length=MAX_ENDPOINT_LENGTH)] | None = None
    keys: PushKeys | None = None
    expirationTime: float | None = None  # noqa: N815 - the browser's name
    vapid_public_key: VapidKey | None = Field(default=None, description=_VAPID_KEY_DESCRIPTION)
    fcm_token: Annotated[str, Field(min_length=1, max_length=MAX_FCM_TOKEN_LENGTH, pattern=r"^\S+$")] | None = None
    device_info: dict[str, Any] = Field(
        default_factory=dict, description="platform, os_version, app_version, device_name, user_agent, ..."
    )

    @field_validator("device_info")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, separators=(",", ":")).encode("utf-8")) > MAX_DEVICE_INFO_BYTES:
            raise ValueError(BAD_DEVICE_INFO)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> SubscribeRequest:
        if (self.endpoint is None) != (self.keys is None):
            raise ValueError(HALF_FLAT)
        kinds = [self.subscription is not None, self.endpoint is not None, self.fcm_token is not None]
        if sum(kinds) != 1:
            raise ValueError(ONE_KIND)
        if self.fcm_token is not None and self.vapid_public_key is not None:
            raise ValueError(KEY_WITHOUT_WEB_PUSH)
        return self

    def web_push(self) -> WebPushSubscription | None:
        if self.endpoint is not None and self.keys is not None:
            return WebPushSubscription(endpoint=self.endpoint, keys=self.keys)
        return self.subscription


class ResubscribeRequest(_Request):
    """What a service worker sends when the browser replaced its subscription (`pushsubscriptionchange`)."""

    token: Annotated[str, Field(min_length=1, max_length=MAX_SUBSCRIPTION_TOKEN_LENGTH)] = Field(
        description="the subscription_token of push/subscribe (or of the last push/resubscribe)"
    )
    subscription: WebPushSubscription
    vapid_public_key: VapidKey | None = Field(default=None, description=_VAPID_KEY_DESCRIPTION)


class UnsubscribeRequest(_Request):
    subscription_id: uuid.UUID | None = None
    endpoint: Annotated[str, Field(min_length=1, max_length=MAX_ENDPOINT_LENGTH)] | None = Field(
        default=None, description="for a browser that only knows its endpoint"
    )

    @model_validator(mode="after")
    def _one_target(self) -> UnsubscribeRequest:
        if (self.subscription_id is None) == (self.endpoint is None):
            raise ValueError(ONE_TARGET)
        return self


class PushSubscriptionCreated(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    kind: Kind
    is_active: bool
    created_at: datetime
    device_info: dict[str, Any]
    subscription_token: str | None = Field(
        description="Web Push: the credential of push/resubscribe for this device only (keep it for the service "
        "worker; it holds no user JWT); null for FCM"
    )


class PushSubscriptionMoved(BaseModel):
    id: uuid.UUID
    subscription_token: str = Field(description="replaces the one sent: it names the new endpoint")


class PushDevice(BaseModel):
    id: uuid.UUID
    kind: Kind
    is_active: bool
    device_info: dict[str, Any]
    created_at: datetime
    last_used_at: datetime | None
    failure_count: int
    deactivated_reason: str | None
    endpoint_origin: str | None = Field(description="Web Push: scheme://host[:port] of the endpoint, never more")


class PushDeviceList(BaseModel):
    items: list[PushDevice]


class VapidPublicKey(BaseModel):
    public_key: str = Field(description="the applicationServerKey for PushManager.subscribe (base64url)")


# --- handlers -------------------------------------------------------------------------------------------


async def subscription_key(pool: asyncpg.Pool, public_key: str | None) -> asyncpg.Record | None:
    """The unretired VAPID key named, or the current one."""
    async with as_worker(pool) as conn:
        return await conn.fetchrow(query("vapid_key_for_subscribers"), public_key)


async def web_push_args(request: Request, web: WebPushSubscription, vapid_public_key: str | None) -> list[Any]:
    settings: Settings = request.app.state.settings
    reason = vapid.not_configured(settings)
    if reason is not None:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, reason)
    assert settings.secrets is not None
    if not endpoint_allowed(web.endpoint, settings.push_endpoint_allowlist):
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, ENDPOINT_NOT_ALLOWED)
    key = await subscription_key(request.app.state.pool, vapid_public_key)
    if key is None and vapid_public_key is not None:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, UNKNOWN_VAPID_KEY)
    if key is None:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, NO_VAPID_KEY)
    box = settings.secrets
    return [
        "webpush", web.endpoint, box.encrypt(web.keys.p256dh), box.encrypt(web.keys.auth), None,
        token_hash(web.endpoint), key["id"],
    ]  # fmt: skip


def fcm_args(settings: Settings, token: str) -> list[Any]:
    if settings.secrets is None:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, FCM_NOT_CONFIGURED)
    return ["fcm", None, None, None, settings.secrets.encrypt(token), token_hash(token), None]


def subscription_token(settings: Settings, device_id: uuid.UUID, user_id: uuid.UUID, hashed: bytes) -> str:
    """The credential of push/resubscribe: one Web Push device of one user, at the endpoint hashed."""
    claims = {"d": str(device_id), "u": str(user_id), "h": b64url(hashed)}
    return seal_token(settings.jwt_secret, SUBSCRIPTION_PURPOSE, claims)


def read_subscription_token(settings: Settings, token: str) -> tuple[uuid.UUID, uuid.UUID, bytes] | None:
    """Device, user and endpoint hash of a token notifyd sealed as a subscription token, or None."""
    payload = open_token(settings.jwt_secret, SUBSCRIPTION_PURPOSE, token)
    if payload is None:
        return None
    try:
        return uuid.UUID(payload["d"]), uuid.UUID(payload["u"]), _base64url(payload["h"])
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


async def subscribe(request: Request) -> Response:
    caller = await end_user(request)
    body = SubscribeRequest.model_validate_json(await request.body())
    web = body.web_push()
    if web is not None:
        args = await web_push_args(request, web, body.vapid_public_key)
    else:
        assert body.fcm_token is not None
        args = fcm_args(request.app.state.settings, body.fcm_token)
    async with as_caller(request.app.state.pool, caller) as conn:
        row = await conn.fetchrow(query("save_push_subscription"), *args, body.device_info)
    assert row is not None
    log.info("user %s subscribed push device %s (%s)", caller.sub, row["id"], row["kind"])
    token = None
    if row["kind"] == "webpush":
        token = subscription_token(request.app.state.settings, row["id"], row["user_id"], args[5])
    return reply(PushSubscriptionCreated(**dict(row), subscription_token=token), status.HTTP_201_CREATED)


async def resubscribe(request: Request) -> Response:
    """A service worker moves its device to the browser's new subscription; the subscription token is its credential."""
    settings: Settings = request.app.state.settings
    body = ResubscribeRequest.model_validate_json(await request.body())
    named = read_subscription_token(settings, body.token)
    if named is None:
        raise ApiError(status.HTTP_401_UNAUTHORIZED, BAD_SUBSCRIPTION_TOKEN)
    device_id, user_id, old_hash = named
    _, endpoint, p256dh, auth, _, hashed, key_id = await web_push_args(
        request, body.subscription, body.vapid_public_key
    )
    async with as_worker(request.app.state.pool) as conn:
        moved = await conn.fetchval(
            query("move_push_subscription"), device_id, user_id, old_hash, endpoint, p256dh, auth, hashed, key_id
        )
    if moved is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, DEVICE_GONE)
    log.info("push device %s of user %s moved to a new endpoint", device_id, user_id)
    token = subscription_token(settings, device_id, user_id, hashed)
    return reply(PushSubscriptionMoved(id=device_id, subscription_token=token))


async def unsubscribe(request: Request) -> Response:
    caller = await end_user(request)
    body = UnsubscribeRequest.model_validate_json(await request.body())
    hashed = token_hash(body.endpoint) if body.endpoint is not None else None
    async with as_caller(request.app.state.pool, caller) as conn:
        removed = await conn.fetchrow(query("delete_push_subscription"), body.subscription_id, hashed)
    if removed is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    log.info("user %s unsubscribed push device %s (%s)", caller.sub, removed["id"], removed["kind"])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def list_subscriptions(request: Request) -> Response:
    rows = await caller_rows(request, await end_user(request), "list_push_subscriptions")
    return reply(PushDeviceList(items=[PushDevice.model_validate(dict(r)) for r in rows]))


async def vapid_public_key(request: Request) -> Response:
    reason = vapid.not_configured(request.app.state.settings)
    if reason is not None:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, reason)
    key = await subscription_key(request.app.state.pool, None)
    if key is None:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, NO_VAPID_KEY)
    return reply(VapidPublicKey(public_key=key["public_key"]))


ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", f"{PREFIX}/push/subscribe", subscribe, "register a browser (Web Push) or a phone (FCM)", "user",
             ok_status=status.HTTP_201_CREATED, ok_model=PushSubscriptionCreated, request_model=SubscribeRequest,
             errors=(status.HTTP_503_SERVICE_UNAVAILABLE,)),
    Endpoint("POST", f"{PREFIX}/push/resubscribe", resubscribe,
             "a service worker moves its device to the browser's new subscription (pushsubscriptionchange, a new "
             "VAPID key); the subscription_token of push/subscribe is the only credential", "public",
             ok_model=PushSubscriptionMoved, request_model=ResubscribeRequest,
             errors=(status.HTTP_401_UNAUTHORIZED, status.HTTP_404_NOT_FOUND, status.HTTP_503_SERVICE_UNAVAILABLE)),
    Endpoint("DELETE", f"{PREFIX}/push/unsubscribe", unsubscribe, "remove one of the caller's push devices", "user",
             ok_status=status.HTTP_204_NO_CONTENT, request_model=UnsubscribeRequest,
             errors=(status.HTTP_404_NOT_FOUND,)),
    Endpoint("GET", f"{PREFIX}/push/subscriptions", list_subscriptions, "the caller's push devices", "user",
             ok_model=PushDeviceList),
    Endpoint("GET", f"{PREFIX}/vapid-public-key", vapid_public_key, "the VAPID key new browsers subscribe with",
             "public", ok_model=VapidPublicKey, errors=(status.HTTP_503_SERVICE_UNAVAILABLE,)),
]  # fmt: skip
