"""SMS routes: a sender sets a recipient's phone number (normalised to E.164 here), and Twilio's inbound webhook
carries a number's STOP and START replies.

The webhook has no user or service credential: Twilio's X-Twilio-Signature (HMAC-SHA1 with the account's
auth token) is its whole authorization, so it is checked first and nothing changes when it fails.
"""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette import status
from starlette.requests import Request
from starlette.responses import Response

from notifyd.db.pool import as_caller, as_worker
from notifyd.db.queries import query
from notifyd.domain.sms import e164, signature_matches
from notifyd.http.errors import ApiError
from notifyd.http.openapi import Endpoint
from notifyd.http.shared import NOT_FOUND, path_uuid, raw_body, reply, sender

RECIPIENT_PATH = "/api/v1/recipients/{user_id:uuid}"
TWILIO_PATH = "/api/v1/webhooks/twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"
# Twilio's inbound message posts are a few hundred bytes of form fields (a long reply's Body included).
MAX_INBOUND_BODY = 64 * 1024
INBOUND_TOO_LARGE = f"a Twilio webhook body is at most {MAX_INBOUND_BODY} bytes"
NO_AUTH_TOKEN = "the Twilio webhook is not configured: set TWILIO_AUTH_TOKEN"
MISSING_SIGNATURE = "the X-Twilio-Signature header is missing"
BAD_SIGNATURE = "the X-Twilio-Signature does not match this request"
NOT_A_FORM = "Twilio's webhook posts application/x-www-form-urlencoded UTF-8 form fields"
NO_SENDER = "the form has no From number"
# TwiML that sends no reply: Twilio answers STOP and START itself, as carriers require.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


class RecipientChanges(BaseModel):
    """A recipient's fields to set; omitted or null ones keep their stored value."""

    model_config = ConfigDict(extra="forbid")

    email: Annotated[str, Field(max_length=254)] | None = None
    locale: Annotated[str, Field(max_length=35)] | None = None
    timezone: Annotated[str, Field(max_length=64)] | None = None
    org_id: uuid.UUID | None = None
    phone: Annotated[str, Field(max_length=40, examples=["+14155550100"])] | None = Field(
        default=None, description="international form (+ and country code); stored in E.164"
    )

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return None if value is None else e164(value)


class Recipient(BaseModel):
    user_id: uuid.UUID
    email: str | None
    locale: str
    timezone: str
    org_id: uuid.UUID | None
    phone: str | None
    sms_opted_out: bool = Field(description="the number replied STOP: no SMS until it replies START")


class InboundMessage(BaseModel):
    """The fields of Twilio's inbound message that notifyd reads (Twilio posts more, all signed)."""

    From: str
    Body: str = ""


async def put_recipient(request: Request) -> Response:
    caller = await sender(request)
    user_id = path_uuid(request, "user_id")
    body = RecipientChanges.model_validate_json(await request.body())
    async with as_caller(request.app.state.pool, caller) as conn:
        await conn.execute(query("upsert_recipient"), user_id, body.email, body.locale, body.timezone, body.org_id,
                           body.phone)  # fmt: skip
        row = await conn.fetchrow(query("recipient"), user_id)
    if row is None:  # an org admin's upsert of a user outside the org writes nothing it can read back
        raise ApiError(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return reply(Recipient.model_validate(dict(row)))


def _public_url(request: Request) -> str:
    """The URL Twilio called, as Twilio signed it: PUBLIC_BASE_URL (what Twilio is configured with) + path + query."""
    query_string = request.url.query
    return f"{request.app.state.settings.public_base_url}{request.url.path}" + (
        f"?{query_string}" if query_string else ""
    )


async def twilio_inbound(request: Request) -> Response:
    signature = request.headers.get(SIGNATURE_HEADER)
    if signature is None:
        raise ApiError(status.HTTP_401_UNAUTHORIZED, MISSING_SIGNATURE)
    auth_token = request.app.state.settings.twilio_auth_token
    if auth_token is None:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, NO_AUTH_TOKEN)
    raw = await raw_body(request, MAX_INBOUND_BODY, INBOUND_TOO_LARGE)
    try:
        # Leniently: a body that is no form cannot carry a matching signature, and is refused as unsigned.
        params = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise ApiError(status.HTTP_400_BAD_REQUEST, NOT_A_FORM) from None
    if not signature_matches(auth_token, _public_url(request), params, signature):
        raise ApiError(status.HTTP_401_UNAUTHORIZED, BAD_SIGNATURE)
    fields = dict(params)
    number = fields.get("From")
    if not number:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, NO_SENDER)
    async with as_worker(request.app.state.pool) as conn:
        await conn.fetchval(query("record_sms_reply"), number, fields.get("Body", ""))
    return Response(EMPTY_TWIML, media_type="text/xml")


ENDPOINTS: list[Endpoint] = [
    Endpoint("PUT", RECIPIENT_PATH, put_recipient,
             "creates or updates a recipient (phone normalised to E.164; null or omitted fields keep their value)",
             "sender", ok_model=Recipient, request_model=RecipientChanges, path_params=("user_id",),
             errors=(status.HTTP_404_NOT_FOUND,)),
    Endpoint("POST", TWILIO_PATH, twilio_inbound,
             "Twilio's inbound SMS webhook, signed (X-Twilio-Signature): a STOP reply opts the number out of SMS, "
             "START back in", "public", ok_media_type="text/xml", request_model=InboundMessage,
             request_media_type="application/x-www-form-urlencoded",
             headers=((SIGNATURE_HEADER, "HMAC-SHA1 signature of the URL and form, set by Twilio"),),
             errors=(status.HTTP_400_BAD_REQUEST, status.HTTP_401_UNAUTHORIZED)),
]  # fmt: skip
