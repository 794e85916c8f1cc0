"""Twilio's Messages API (``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``) with its authentication and
form checks, plus the signed inbound-message webhook Twilio posts when a phone replies.

As Twilio documents it: HTTP basic auth with the Account SID and auth token (else 401, error 20003); the
SID in the path must be the authenticated account's (else 404, error 20404); a form
(application/x-www-form-urlencoded) with ``To`` (E.164, else 400 error 21211), exactly one of ``From``
and ``MessagingServiceSid`` (neither: 400 error 21603; a From that is not E.164: 21212) and ``Body``
(missing or empty: 400 error 21602; over 1600 characters: 400 error 21617). An accepted message is
answered 201 with the message resource, its ``sid`` "SM" and 32 hex digits. Twilio takes no idempotency
key: each accepted request is a message (and a bill).

Inbound webhooks: `inbound_form(from_, body)` is the form Twilio posts for a reply, and
`sign(auth_token, url, form)` the X-Twilio-Signature it signs it with (base64 HMAC-SHA1 of the URL and
the sorted parameters' names and values, appended).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from tests.standins.http import Request, Response, StandIn

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
_ANY_NUMBER = "*"
MAX_BODY = 1600


@dataclass(frozen=True)
class SentSms:
    """A message Twilio accepted."""

    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    form: dict[str, str]  # every field posted


def twilio_error(status: int, code: int, message: str, **headers: str) -> Response:
    """Twilio's error body: ``{"code", "message", "more_info", "status"}``."""
    return Response(status, headers=headers, body={
        "code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status,
    })  # fmt: skip


def sign(auth_token: str, url: str, form: dict[str, str]) -> str:
    data = url + "".join(name + form[name] for name in sorted(form))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def inbound_form(account_sid: str, from_: str, to: str, body: str) -> dict[str, str]:
    """The fields Twilio posts for an incoming message (the ones a handler may read)."""
    return {
        "MessageSid": "SM" + secrets.token_hex(16), "SmsSid": "SM" + secrets.token_hex(16), "AccountSid": account_sid,
        "From": from_, "To": to, "Body": body, "NumMedia": "0", "NumSegments": "1", "ApiVersion": "2010-04-01",
        "OptOutType": {"STOP": "STOP", "START": "START"}.get(body.strip().upper(), ""),
    }  # fmt: skip


class TwilioService(StandIn):
    """Twilio Messages API stand-in; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)
        self._messages: list[SentSms] = []

    def script(self, *responses: Response, to: str | None = None) -> None:
        """Answer the next sends (only those to number `to`, if given) with `responses`, then normally."""
        self._queue(to or _ANY_NUMBER, responses)

    @property
    def messages(self) -> list[SentSms]:
        return self._snapshot(self._messages)

    def route(self, request: Request) -> Response:
        match = _PATH.match(request.path)
        if match is None:
            return twilio_error(404, 20404, "The requested resource was not found")
        if request.method != "POST":
            return twilio_error(405, 20004, "Method not allowed")
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        try:
            sid, _, token = base64.b64decode(credentials, validate=True).decode().partition(":")
        except ValueError:
            sid = token = ""
        if scheme != "Basic" or sid != self.account_sid or not hmac.compare_digest(token, self.auth_token):
            return twilio_error(401, 20003, "Authenticate")
        if match["sid"] != sid:
            return twilio_error(404, 20404, "The requested resource was not found")
        if not request.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return twilio_error(400, 20001, "Unsupported content type: send form fields")
        form = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
        invalid = self._invalid(form)
        if invalid is not None:
            return invalid
        return self._answer([form["To"], _ANY_NUMBER], lambda delay: self._accept(form))

    @staticmethod
    def _invalid(form: dict[str, str]) -> Response | None:
        to = form.get("To", "")
        if not _E164.match(to):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if ("From" in form) == ("MessagingServiceSid" in form):
            return twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required (one of them).")
        if "From" in form and not _E164.match(form["From"]):
            return twilio_error(400, 21212, f"The 'From' number {form['From']} is not a valid phone number.")
        if not form.get("Body"):
            return twilio_error(400, 21602, "Message body is required.")
        if len(form["Body"]) > MAX_BODY:
            return twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        return None

    def _accept(self, form: dict[str, str]) -> Response:
        message = SentSms(
            sid="SM" + secrets.token_hex(16),
            to=form["To"],
            from_=form.get("From"),
            messaging_service_sid=form.get("MessagingServiceSid"),
            body=form["Body"],
            form=form,
        )
        self._record(self._messages, message)
        resource: dict[str, Any] = {
            "sid": message.sid, "account_sid": self.account_sid, "to": message.to, "from": message.from_,
            "messaging_service_sid": message.messaging_service_sid, "body": message.body, "status": "queued",
            "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01",
        }  # fmt: skip
        return Response(201, body=resource)
