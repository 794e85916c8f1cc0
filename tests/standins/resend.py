"""Resend's ``POST /emails``, with its authentication, validation and idempotency rules, plus Svix-signed webhooks.

Pointing the resend SDK (2.52) at it: every request goes to ``f"{resend.api_url}{path}"`` with
``Authorization: Bearer {resend.api_key}``, both module globals read per request (the environment
variables RESEND_API_URL / RESEND_API_KEY are only read at import)::

    resend.api_url, resend.api_key = service.url, service.api_key
    resend.Emails.send(params, {"idempotency_key": key})  # sent as the ``Idempotency-Key`` header

The SDK's default HTTP client (``resend.default_http_client = RequestsClient(timeout=30)``) has no
retries; a connection error or timeout comes back as ``ResendError`` with code 500 and error_type
``HttpClientError``. Errors map by (status, name): 401 missing_api_key -> MissingApiKeyError,
403 invalid_api_key -> InvalidApiKeyError, 422 missing_required_field -> MissingRequiredFieldsError,
422 validation_error -> ValidationError, 429 rate_limit_exceeded -> RateLimitError (``.headers`` holds
``retry-after``), 500 application_error -> ApplicationError; 409 has no class: a plain ``ResendError``
with ``code == 409`` and ``error_type`` invalid_idempotent_request or concurrent_idempotent_requests.

Idempotency as Resend documents it: the same key with the same payload answers the first e-mail's id
and sends nothing; with another payload 409 invalid_idempotent_request; while the first request is
still being answered (a scripted ``Response(delay=...)``) 409 concurrent_idempotent_requests; a key
longer than 256 characters 400 invalid_idempotency_key.

Webhooks: `webhook_event(kind, email_id)` builds the JSON body Resend posts, `sign_webhook(secret, body)`
the ``svix-id``/``svix-timestamp``/``svix-signature`` headers it posts it with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.standins.http import Request, Response, StandIn

EMAIL_EVENTS = frozenset(
    {
        "email.sent",
        "email.scheduled",
        "email.delivered",
        "email.delivery_delayed",
        "email.bounced",
        "email.complained",
        "email.opened",
        "email.clicked",
        "email.failed",
        "email.suppressed",
    }
)
_ADDRESS = re.compile(r"[^<>@\s]+@[^<>@\s]+|[^<>]*<[^<>@\s]+@[^<>@\s]+>")
_ANY_RECIPIENT = "*"


@dataclass(frozen=True)
class SentEmail:
    """An e-mail Resend accepted (an idempotent replay adds none)."""

    id: str
    idempotency_key: str | None
    from_: str
    to: list[str]
    subject: str
    html: str | None
    text: str | None
    headers: dict[str, str]  # the ``headers`` parameter, e.g. List-Unsubscribe
    raw: dict[str, Any]  # the whole request body (cc, bcc, reply_to, tags, ...)


@dataclass(frozen=True)
class _Idempotent:
    payload: dict[str, Any]
    email_id: str
    answered_at: float  # time.monotonic() when the first request's answer goes out


def resend_error(status: int, name: str, message: str, **headers: str) -> Response:
    """Resend's error body: ``{"statusCode", "name", "message"}``."""
    return Response(status, headers=headers, body={"statusCode": status, "name": name, "message": message})


def rate_limited(retry_after: int = 1) -> Response:
    return resend_error(
        429,
        "rate_limit_exceeded",
        "Too many requests. You can only make 2 requests per second.",
        **{"retry-after": str(retry_after), "ratelimit-limit": "2", "ratelimit-remaining": "0"},
        **{"ratelimit-reset": str(retry_after)},
    )


def application_error() -> Response:
    return resend_error(500, "application_error", "An unexpected error occurred.")


def new_webhook_secret() -> str:
    """A signing secret in Resend's format: ``whsec_`` + base64 of random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign_webhook(
    secret: str, payload: bytes, *, msg_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """The Svix headers for `payload`: ``v1,`` + base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``."""
    msg_id = msg_id or f"msg_{secrets.token_urlsafe(18)}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + payload, hashlib.sha256).digest()
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(timestamp),
        "svix-signature": "v1," + base64.b64encode(digest).decode(),
    }


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ResendService(StandIn):
    """Resend API stand-in; see the module docstring."""

    sign_webhook = staticmethod(sign_webhook)

    def __init__(self, api_key: str = "re_standin_0123456789abcdef") -> None:
        super().__init__()
        self.api_key = api_key
        self._emails: list[SentEmail] = []
        self._idempotency: dict[str, _Idempotent] = {}

    def script(self, *responses: Response, to: str | None = None) -> None:
        """Answer the next sends (only those to recipient `to`, if given) with `responses`, then normally."""
        self._queue(to or _ANY_RECIPIENT, responses)

    @property
    def emails(self) -> list[SentEmail]:
        return self._snapshot(self._emails)

    def clear(self) -> None:
        """Forget traffic and e-mails; idempotency keys stay, as at Resend (24 h)."""
        with self._changed:
            super().clear()
            self._emails.clear()

    def webhook_event(self, kind: str, email_id: str, **data: Any) -> bytes:
        """The body Resend posts for `kind` about e-mail `email_id`; `data` overrides (dicts merge) fields.

        from/to/subject come from the recorded e-mail when this service sent it. ``email.bounced``
        carries ``bounce: {"type": "Permanent", "subType": "General", "message": ...}``; pass
        ``bounce={"type": "Transient"}`` for a soft bounce.
        """
        if kind not in EMAIL_EVENTS:
            raise ValueError(f"not a Resend e-mail event: {kind}")
        sent = next((e for e in self.emails if e.id == email_id), None)
        event_data: dict[str, Any] = {
            "email_id": email_id,
            "created_at": _now_iso(),
            "from": sent.from_ if sent else "notifyd <notifications@example.com>",
            "to": sent.to if sent else ["recipient@example.com"],
            "subject": sent.subject if sent else "Notification",
            "message_id": f"<{uuid.uuid4()}@resend.dev>",
        }
        if kind == "email.bounced":
            event_data["bounce"] = {
                "type": "Permanent",
                "subType": "General",
                "message": "The recipient's email provider sent a hard bounce message.",
            }
        for name, value in data.items():
            merge = isinstance(value, Mapping) and isinstance(event_data.get(name), Mapping)
            event_data[name] = {**event_data[name], **value} if merge else value
        return json.dumps({"type": kind, "created_at": _now_iso(), "data": event_data}).encode()

    def route(self, request: Request) -> Response:
        if request.path != "/emails":
            return resend_error(404, "not_found", "The requested endpoint does not exist.")
        if request.method != "POST":
            return resend_error(405, "method_not_allowed", "Method is not allowed for the requested path.")
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not key:
            return resend_error(401, "missing_api_key", "Missing API key in the authorization header.")
        if key != self.api_key:
            return resend_error(403, "invalid_api_key", "API key is invalid.")
        try:
            params = request.json()
        except ValueError:
            params = None
        invalid = self._invalid(params, request.headers.get("Idempotency-Key"))
        if invalid is not None:
            return invalid
        recipients = [*_as_list(params["to"]), _ANY_RECIPIENT]
        return self._answer(recipients, lambda delay: self._accept(request, params, delay))

    @staticmethod
    def _invalid(params: Any, idempotency_key: str | None) -> Response | None:
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 256:
            return resend_error(400, "invalid_idempotency_key", "The key must be between 1-256 chars.")
        if not isinstance(params, dict):
            return resend_error(422, "validation_error", "The request body must be a JSON object.")
        missing = next((f for f in ("from", "to", "subject") if not params.get(f)), None)
        if missing:
            return resend_error(422, "missing_required_field", f"Missing `{missing}` field.")
        if not params.get("html") and not params.get("text"):
            return resend_error(422, "missing_required_field", "Missing `html` or `text` field.")
        to = _as_list(params["to"])
        bad = next((f for f, v in (("from", [params["from"]]), ("to", to)) if not all(_is_address(a) for a in v)), None)
        if bad:
            message = f"Invalid `{bad}` field. The email address needs to follow the `email@example.com` or "
            return resend_error(422, "validation_error", message + "`Name <email@example.com>` format.")
        if len(to) > 50:
            return resend_error(422, "validation_error", "Too many recipients: `to` accepts at most 50.")
        headers = params.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            return resend_error(422, "validation_error", "`headers` must be an object of strings.")
        return None

    def _accept(self, request: Request, params: dict[str, Any], delay: float) -> Response:
        key = request.headers.get("Idempotency-Key")
        with self._changed:
            prior = self._idempotency.get(key) if key is not None else None
            if prior is not None and prior.payload != params:
                message = "Same idempotency key used with a different request payload."
                return resend_error(409, "invalid_idempotent_request", message)
            if prior is not None and time.monotonic() < prior.answered_at:
                message = "Same idempotency key used while original request is still in progress."
                return resend_error(409, "concurrent_idempotent_requests", message)
            if prior is not None:
                return Response(200, body={"id": prior.email_id})
            email = SentEmail(
                id=str(uuid.uuid4()),
                idempotency_key=key,
                from_=params["from"],
                to=_as_list(params["to"]),
                subject=params["subject"],
                html=params.get("html"),
                text=params.get("text"),
                headers=dict(params.get("headers", {})),
                raw=params,
            )
            if key is not None:
                self._idempotency[key] = _Idempotent(params, email.id, time.monotonic() + delay)
            self._record(self._emails, email)
        return Response(200, body={"id": email.id})


def _as_list(to: Any) -> list[Any]:
    return list(to) if isinstance(to, list) else [to]


def _is_address(value: Any) -> bool:
    return isinstance(value, str) and _ADDRESS.fullmatch(value.strip()) is not None
