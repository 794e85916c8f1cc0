"""The e-mail routes: the unsubscribe page and its RFC 8058 one-click POST, and Resend's webhook.

None of them has a user or service credential: the unsubscribe token (signed by notifyd, see
notifyd.domain.email) or the Svix signature (signed by Resend) is the whole authorization, so each
checks it first and changes nothing when it fails.
"""

from __future__ import annotations

import base64
import binascii
import html
import uuid
from typing import Any

import asyncpg
import resend
from pydantic import BaseModel, Field
from starlette import status
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from notifyd.core.config import Settings
from notifyd.db.pool import as_worker
from notifyd.db.queries import query
from notifyd.domain.digests import ALL_DIGESTS
from notifyd.domain.email import read_unsubscribe_token
from notifyd.http.errors import ApiError
from notifyd.http.openapi import Endpoint
from notifyd.http.shared import raw_body, reply

UNSUBSCRIBE_PATH = "/unsubscribe/{token}"
WEBHOOK_PATH = "/api/v1/webhooks/resend"

BAD_LINK_TITLE = "This link does not work"
BAD_LINK = (
    "This unsubscribe link is not valid: it may have been cut short or changed. Use the link in the latest e-mail, "
    "or change your e-mail settings in the app."
)
GONE = "There is nothing to unsubscribe from: this account or this kind of notification no longer exists."
ASK_TITLE = "Unsubscribe"
ASK = "Stop e-mails about {type} notifications ({description})? You will still see them in the app."
DONE_TITLE = "You are unsubscribed"
DONE = (
    "You will no longer receive e-mails about {type} notifications. You can turn them on again in your "
    "notification settings."
)
ALREADY = "E-mails about {type} notifications are already turned off for you."
# Digest frequency "never" is e-mail off: only critical e-mail (security alerts) still comes.
ASK_DIGESTS = (
    "Stop the digest e-mails and other non-urgent e-mails? You will still see your notifications in the app, "
    "and security alerts still come by e-mail."
)
DONE_DIGESTS = (
    "You will no longer receive digest e-mails or other non-urgent e-mails. "
    "You can turn them on again in your notification settings."
)
ALREADY_DIGESTS = "Digest e-mails are already turned off for you."

# Resend's events that notify.record_email_event applies; others (email.sent, delivery_delayed, ...) are acknowledged.
EMAIL_EVENTS = {
    "email.delivered": "delivered",
    "email.bounced": "bounced",
    "email.complained": "complained",
    "email.opened": "opened",
    "email.clicked": "clicked",
    "email.failed": "failed",
}
# What analytics keep of an event: the bounce type decides suppression; never the addresses or subject.
DETAIL_FIELDS = ("created_at", "bounce", "click", "failed")
MAX_WEBHOOK_BODY = 256 * 1024
SVIX_HEADERS = ("svix-id", "svix-timestamp", "svix-signature")
NO_WEBHOOK_SECRET = "the Resend webhook is not configured: RESEND_WEBHOOK_SECRET is not set"
BAD_WEBHOOK_SECRET = "RESEND_WEBHOOK_SECRET is not a Resend signing secret (whsec_ followed by base64)"
MISSING_SIGNATURE = "missing Svix signature headers: svix-id, svix-timestamp and svix-signature are required"
BAD_SIGNATURE = "the Svix signature does not verify: {reason}"
WEBHOOK_TOO_LARGE = f"a Resend webhook body is at most {MAX_WEBHOOK_BODY} bytes"
NOT_UTF8 = "the webhook body is not UTF-8 JSON"
NO_EMAIL_ID = "the event has no data.email_id"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ margin: 0; font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; background: #f4f4f5;
       color: #18181b; }}
main {{ max-width: 480px; margin: 64px auto; padding: 28px; background: #fff; border-radius: 8px; }}
button {{ padding: 10px 18px; font-size: 15px; border: 0; border-radius: 6px; background: #2563eb; color: #fff; }}
</style>
</head>
<body><main><h1>{title}</h1><p>{message}</p>{form}</main></body>
</html>
"""
# The button posts to the page's own URL, as a mail client's one-click POST does.
_FORM = (
    '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
    '<button type="submit">Unsubscribe</button></form>'
)
# The token in the URL is the credential: keep it out of caches, referrers, search engines and frames.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
}


class ResendEvent(BaseModel):
    """A Resend webhook body (Svix-signed); e-mail events carry data.email_id."""

    type: str = Field(max_length=100)
    created_at: str | None = None
    data: dict[str, Any]


class WebhookReceived(BaseModel):
    # False: an event type not tracked, a redelivery already applied, or an e-mail that is not ours.
    applied: bool


# --- unsubscribe ----------------------------------------------------------------------------------


def page(status_code: int, title: str, message: str, *, form: bool = False) -> HTMLResponse:
    body = _PAGE.format(title=html.escape(title), message=html.escape(message), form=_FORM if form else "")
    return HTMLResponse(body, status_code=status_code, headers=_PAGE_HEADERS)


def bad_link() -> HTMLResponse:
    return page(status.HTTP_404_NOT_FOUND, BAD_LINK_TITLE, BAD_LINK)


Target = tuple[uuid.UUID, str, asyncpg.Record]


async def unsubscribe_target(request: Request, conn: asyncpg.Connection) -> Target | None:
    """The user and type (or ALL_DIGESTS) the token names, with its row; None for a bad token, a gone user or type."""
    target = read_unsubscribe_token(request.app.state.settings, request.path_params["token"])
    if target is None:
        return None
    user_id, notification_type = target
    if notification_type == ALL_DIGESTS:
        row = await conn.fetchrow(query("digest_unsubscribe_target"), user_id)
    else:
        row = await conn.fetchrow(query("unsubscribe_target"), user_id, notification_type)
    return (*target, row) if row is not None else None


async def unsubscribe_page(request: Request) -> Response:
    # Changes nothing: mail scanners open every link of an e-mail.
    async with as_worker(request.app.state.pool) as conn:
        found = await unsubscribe_target(request, conn)
    if found is None:
        return bad_link()
    _, notification_type, row = found
    if notification_type == ALL_DIGESTS:
        if row["digests_off"]:
            return page(status.HTTP_200_OK, DONE_TITLE, ALREADY_DIGESTS)
        return page(status.HTTP_200_OK, ASK_TITLE, ASK_DIGESTS, form=True)
    if not row["email_enabled"]:
        return page(status.HTTP_200_OK, DONE_TITLE, ALREADY.format(type=notification_type))
    return page(
        status.HTTP_200_OK, ASK_TITLE, ASK.format(type=notification_type, description=row["description"]), form=True
    )


async def unsubscribe(request: Request) -> Response:
    # RFC 8058: the POST comes without cookies or credentials; its body (List-Unsubscribe=One-Click) adds nothing.
    async with as_worker(request.app.state.pool) as conn:
        found = await unsubscribe_target(request, conn)
        if found is None:
            return bad_link()
        user_id, notification_type, _ = found
        if notification_type == ALL_DIGESTS:
            await conn.execute(query("unsubscribe_digests"), user_id)
            return page(status.HTTP_200_OK, DONE_TITLE, DONE_DIGESTS)
        await conn.execute(query("unsubscribe_email"), user_id, notification_type)
    return page(status.HTTP_200_OK, DONE_TITLE, DONE.format(type=notification_type))


# --- the Resend webhook ------------------------------------------------------------------------------


def webhook_secret(settings: Settings) -> str:
    secret = settings.resend_webhook_secret
    if secret is None:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, NO_WEBHOOK_SECRET)
    try:
        base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        # Not the sender's fault: without this every genuine event would look forged.
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, BAD_WEBHOOK_SECRET) from None
    return secret


async def verified_event(request: Request) -> tuple[str, ResendEvent]:
    """(svix-id, event) of a request Resend signed; 401 if it did not, or too long ago (replay)."""
    secret = webhook_secret(request.app.state.settings)
    headers = [request.headers.get(name) for name in SVIX_HEADERS]
    msg_id, timestamp, signature = headers
    if msg_id is None or timestamp is None or signature is None:
        raise ApiError(status.HTTP_401_UNAUTHORIZED, MISSING_SIGNATURE)
    raw = await raw_body(request, MAX_WEBHOOK_BODY, WEBHOOK_TOO_LARGE)
    try:
        payload = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(status.HTTP_400_BAD_REQUEST, NOT_UTF8) from None
    try:
        # Svix's documented check (HMAC-SHA256 of "{id}.{timestamp}.{body}", 5-minute tolerance, constant time).
        event = resend.Webhooks.verify(
            {
                "payload": payload,
                "headers": {"id": msg_id, "timestamp": timestamp, "signature": signature},
                "webhook_secret": secret,
            }
        )
    except ValueError as error:
        raise ApiError(status.HTTP_401_UNAUTHORIZED, BAD_SIGNATURE.format(reason=error)) from None
    return msg_id, ResendEvent.model_validate(event)


async def resend_webhook(request: Request) -> Response:
    msg_id, event = await verified_event(request)
    name = EMAIL_EVENTS.get(event.type)
    if name is None:
        return reply(WebhookReceived(applied=False))
    email_id = event.data.get("email_id")
    if not isinstance(email_id, str) or not email_id:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, NO_EMAIL_ID)
    detail = {k: event.data[k] for k in DETAIL_FIELDS if k in event.data}
    async with as_worker(request.app.state.pool) as conn:
        applied = await conn.fetchval(query("record_email_event"), email_id, name, msg_id, detail)
    return reply(WebhookReceived(applied=bool(applied)))


ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", UNSUBSCRIBE_PATH, unsubscribe_page, "the unsubscribe page of an e-mail (changes nothing)",
             "public", ok_media_type="text/html", path_params=("token",),
             extra_responses={404: "the link is not valid, or its account or notification type is gone"}),
    Endpoint("POST", UNSUBSCRIBE_PATH, unsubscribe,
             "one-click unsubscribe (RFC 8058): turns that type's e-mail off, or a digest's token the digest "
             "e-mails; the token is the only credential",
             "public", ok_media_type="text/html", path_params=("token",),
             extra_responses={404: "the link is not valid, or its account or notification type is gone"}),
    Endpoint("POST", WEBHOOK_PATH, resend_webhook,
             "Resend's delivery events, Svix-signed: delivered, bounced, complained, opened, clicked, failed",
             "public", ok_model=WebhookReceived, request_model=ResendEvent,
             headers=tuple((name, "Svix signature header, set by Resend") for name in SVIX_HEADERS),
             errors=(status.HTTP_400_BAD_REQUEST, status.HTTP_401_UNAUTHORIZED)),
]  # fmt: skip
