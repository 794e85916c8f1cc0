"""FCM HTTP v1 (``POST /v1/projects/{project}/messages:send``) plus the Google OAuth2 token endpoint it needs.

`service_account_file(path, project_id)` writes a service-account JSON with a fresh RSA key whose
``token_uri`` is ``{url}/token``; ``firebase_admin.credentials.Certificate(path)`` accepts it, and the
SDK then trades a JWT signed with that key for an access token here (the grant's ``aud`` is always
``https://oauth2.googleapis.com/token``, whatever ``token_uri`` says). Sends need that token
(401 otherwise), a project the token's service account belongs to and an FCM scope (403 otherwise).
A message names exactly one of token, fid, topic, condition; ``validate_only`` answers
``projects/{project}/messages/fake_message_id`` and records nothing. (google-auth 2.62 also starts a
background "Regional Access Boundary" lookup at iamcredentials.googleapis.com after the first token; it
fails quietly offline and blocks nothing.)

Pointing firebase_admin 7.7 at it: there is no option or environment variable. The app's messaging
service keeps the full send URL in a private attribute, set once in its constructor::

    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{url}/v1/projects/{app.project_id}/messages:send"

so ``FCM_API_URL={url}`` means ``{url}/v1/projects/{project}/messages:send``.

Retries inside the SDK (urllib3 ``Retry`` on every ``http://`` URL of its session): a 500 or 503 is
retried 4 times with backoff 0, 1, 2, 4 s (5 requests, 7 s), a 429 or 503 carrying ``Retry-After`` is
retried after sleeping that long, and a read timeout is retried once (the second timeout surfaces as
``requests.ConnectionError``, mapped to ``exceptions.UnavailableError``, not DeadlineExceededError).
To keep tests fast: script one 5xx (the first retry is immediate) to test recovery, keep Retry-After
small or absent, or remount the session with the SDK's policy minus the sleeps::

    fast = firebase_admin._http_client.DEFAULT_RETRY_CONFIG.new(backoff_factor=0)
    service._client.session.mount("http://", requests.adapters.HTTPAdapter(max_retries=fast))

Errors: the helpers below produce Google's bodies. firebase_admin maps UNREGISTERED to
``messaging.UnregisteredError``, SENDER_ID_MISMATCH to ``messaging.SenderIdMismatchError``,
QUOTA_EXCEEDED to ``messaging.QuotaExceededError``; INVALID_ARGUMENT, UNAVAILABLE and INTERNAL fall back
to the status: ``exceptions.InvalidArgumentError``, ``exceptions.UnavailableError`` (there is no
``messaging.UnavailableError``), ``exceptions.InternalError``. `unregister(token)` makes a token answer
UNREGISTERED for good, as after an app uninstall.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.standins.http import Request, Response, StandIn

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_SCOPES = frozenset(
    {"https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/firebase.messaging"}
)
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
TARGETS = ("token", "fid", "topic", "condition")  # a message names exactly one
_SEND = re.compile(r"/v1/projects/([^/]+)/messages:send")


@dataclass(frozen=True)
class FcmMessage:
    """A message FCM accepted for delivery (``validate_only`` ones are not recorded)."""

    name: str  # projects/{project}/messages/{id}, as returned to the sender
    token: str | None  # registration token (``Message(token=...)``, deprecated in firebase_admin 7.5)
    fid: str | None  # Firebase installation id (``Message(fid=...)``)
    topic: str | None
    notification: dict[str, Any] | None
    data: dict[str, str] | None
    android: dict[str, Any] | None
    apns: dict[str, Any] | None
    webpush: dict[str, Any] | None
    raw: dict[str, Any]  # the whole ``message`` object


@dataclass(frozen=True)
class _Grant:
    project_id: str
    scopes: frozenset[str]
    expires_at: float


def google_error(status: int, rpc_status: str, message: str, *details: dict[str, Any], **headers: str) -> Response:
    """A Google API error body: ``{"error": {"code", "message", "status", "details"}}``."""
    error: dict[str, Any] = {"code": status, "message": message, "status": rpc_status}
    if details:
        error["details"] = list(details)
    return Response(status, headers=headers, body={"error": error})


def fcm_error(status: int, rpc_status: str, error_code: str, message: str, **headers: str) -> Response:
    return google_error(status, rpc_status, message, {"@type": FCM_ERROR_TYPE, "errorCode": error_code}, **headers)


def _retry_after(seconds: int | None) -> dict[str, str]:
    return {} if seconds is None else {"Retry-After": str(seconds)}


def unregistered() -> Response:
    """The token is no longer valid (app uninstalled, token rotated): drop it."""
    return fcm_error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")


def sender_id_mismatch() -> Response:
    """The token belongs to another Firebase project."""
    return fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch")


def invalid_argument(message: str = "The registration token is not a valid FCM registration token") -> Response:
    return google_error(
        400,
        "INVALID_ARGUMENT",
        message,
        {"@type": FCM_ERROR_TYPE, "errorCode": "INVALID_ARGUMENT"},
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}],
        },
    )


def quota_exceeded(retry_after: int | None = None) -> Response:
    message = "Quota exceeded for quota metric 'Send messages' of service 'fcm.googleapis.com'."
    return fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", message, **_retry_after(retry_after))


def unavailable(retry_after: int | None = None) -> Response:
    message = "The service is currently unavailable."
    return fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", message, **_retry_after(retry_after))


def internal_error() -> Response:
    return fcm_error(500, "INTERNAL", "INTERNAL", "Internal error encountered.")


def _unauthenticated() -> Response:
    message = "Request had invalid authentication credentials. Expected OAuth 2 access token."
    return google_error(401, "UNAUTHENTICATED", message)


def _oauth_error(error: str, description: str) -> Response:
    return Response(400, body={"error": error, "error_description": description})


class FcmService(StandIn):
    """FCM v1 + OAuth2 token endpoint stand-in; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._accounts: dict[str, tuple[str, rsa.RSAPublicKey]] = {}  # client_email -> (project, key)
        self._grants: dict[str, _Grant] = {}  # access token -> grant
        self._unregistered: set[str] = set()
        self._messages: list[FcmMessage] = []

    def service_account(self, project_id: str) -> dict[str, Any]:
        """A service-account key (the JSON the Firebase console downloads) whose tokens this service issues."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = f"firebase-adminsdk-{secrets.token_hex(3)}@{project_id}.iam.gserviceaccount.com"
        with self._changed:
            self._accounts[email] = (project_id, key.public_key())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": secrets.token_hex(20),
            "private_key": pem.decode(),
            "client_email": email,
            "client_id": str(secrets.randbits(64)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": f"{self.url}/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
            "universe_domain": "googleapis.com",
        }

    def service_account_file(self, path: Path, project_id: str) -> Path:
        """Write `service_account(project_id)` to `path`, for ``credentials.Certificate(path)``."""
        path.write_text(json.dumps(self.service_account(project_id), indent=2))
        return path

    def script(self, token: str, *responses: Response) -> None:
        """Answer the next sends to `token` (or fid, topic, condition) with `responses`, then normally."""
        self._queue(token, responses)

    def unregister(self, token: str) -> None:
        """From now on every send to `token` answers UNREGISTERED."""
        with self._changed:
            self._unregistered.add(token)

    @property
    def messages(self) -> list[FcmMessage]:
        return self._snapshot(self._messages)

    def requests_for(self, token: str) -> list[Request]:
        """The send requests addressed to `token` (or fid, topic, condition)."""
        return [r for r in self.requests if _SEND.fullmatch(r.path) and _target(r) == token]

    def clear(self) -> None:
        with self._changed:
            super().clear()
            self._messages.clear()

    def route(self, request: Request) -> Response:
        send = _SEND.fullmatch(request.path)
        if request.method == "POST" and request.path == "/token":
            return self._token(request)
        if request.method == "POST" and send:
            return self._send(send[1], request)
        return google_error(404, "NOT_FOUND", f"{request.method} {request.path} is not an FCM or OAuth2 endpoint")

    def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type')}")
        assertion = form.get("assertion", "")
        try:
            issuer = str(jwt.decode(assertion, options={"verify_signature": False}).get("iss"))
            project_id, public_key = self._accounts[issuer]
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_AUDIENCE, f"{self.url}/token"],
                options={"require": ["iss", "aud", "exp", "iat"]},
            )
        except (jwt.InvalidTokenError, KeyError):
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        access_token = f"ya29.standin-{secrets.token_urlsafe(32)}"
        grant = _Grant(project_id, frozenset(claims.get("scope", "").split()), time.time() + 3600)
        with self._changed:
            self._grants[access_token] = grant
        return Response(200, body={"access_token": access_token, "expires_in": 3600, "token_type": "Bearer"})

    def _send(self, project: str, request: Request) -> Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        grant = self._grants.get(token) if scheme == "Bearer" else None
        if grant is None or grant.expires_at < time.time():
            return _unauthenticated()
        if grant.project_id != project:
            denied = f"Permission 'cloudmessaging.messages.create' denied on resource projects/{project}"
            return google_error(403, "PERMISSION_DENIED", denied)
        if not grant.scopes & FCM_SCOPES:
            return google_error(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.")
        try:
            body = request.json()
            message = body["message"]
            targets = [message[k] for k in TARGETS if message.get(k)]
        except (ValueError, KeyError, TypeError, AttributeError):
            return invalid_argument("Invalid JSON payload received.")
        if len(targets) != 1:
            return invalid_argument("Exactly one of fid, token, topic or condition must be set.")
        return self._answer(targets, lambda _delay: self._accept(project, body, message, targets[0]))

    def _accept(self, project: str, body: Mapping[str, Any], message: dict[str, Any], target: str) -> Response:
        if target in self._unregistered:
            return unregistered()
        if any(not isinstance(v, str) for v in (message.get("data") or {}).values()):
            return invalid_argument("Invalid value at 'message.data': data values must be strings.")
        if body.get("validate_only"):
            return Response(200, body={"name": f"projects/{project}/messages/fake_message_id"})
        name = f"projects/{project}/messages/0:{time.time_ns() // 1000}%{secrets.token_hex(8)}"
        get = message.get
        recorded = FcmMessage(
            name, get("token"), get("fid"), get("topic"), get("notification"), get("data"), get("android"),
            get("apns"), get("webpush"), raw=message,
        )  # fmt: skip
        self._record(self._messages, recorded)
        return Response(200, body={"name": name})


def _target(request: Request) -> str | None:
    try:
        message = request.json()["message"]
        return next((message[k] for k in TARGETS if message.get(k)), None)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
