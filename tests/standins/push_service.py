"""A Web Push service (RFC 8030 delivery, RFC 8291 aes128gcm payloads, RFC 8292 VAPID), as browsers' vendors run it.

`subscribe(application_server_key)` plays the browser's ``PushManager.subscribe``: it makes the P-256 key
pair and auth secret a browser would, and returns the subscription JSON a page would post to notifyd;
`adopt(...)` takes a subscription whose keys a real browser made (browser tests stub PushManager.subscribe).
A push to the endpoint is checked the way real services check it, decrypted with the subscription's
private key, and recorded as a `PushMessage`:

- ``Authorization: vapid t=<JWT>, k=<key>`` (RFC 8292). pywebpush 2.5 / py_vapid 1.9.6 send
  ``vapid t=<jwt>,k=<key>`` (no space) for aes128gcm; both spellings are accepted. Absent or not the
  ``vapid`` scheme: 401. A key other than the subscription's applicationServerKey, a bad ES256
  signature, ``aud`` other than this origin, ``exp`` past or more than 24 h ahead, ``sub`` neither
  ``mailto:`` nor ``https:``: 403 (RFC 8292 §4.2; Mozilla answers some of these with 401).
- ``TTL`` required (400), ``Urgency`` one of very-low/low/normal/high (400), ``Topic`` at most 32
  base64url characters (400), ``Content-Encoding: aes128gcm`` for a non-empty body (415), body at most
  4096 bytes (413; that is 3,993 bytes of plaintext with pywebpush's single record), undecryptable (400).
- Accepted: 201 with a ``Location`` header. `unsubscribe(endpoint)` makes later pushes 410 Gone, as
  after the user revoked permission; an endpoint this service never issued is 404.

Scripting: `script(endpoint, Response(410), Response(429, headers={"Retry-After": "2"}), ...)`.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import jwt as vapid_jwt

from tests.standins.http import Request, Response, StandIn

MAX_BODY = 4096
URGENCIES = ("very-low", "low", "normal", "high")
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PushMessage:
    """A push the service accepted, decrypted as the browser would see it."""

    endpoint: str
    plaintext: bytes
    json: Any  # the plaintext parsed as JSON, None when it is not JSON
    ttl: int
    urgency: str
    topic: str | None
    vapid_key: str  # the ``k`` parameter: base64url of the sender's 65-byte public key
    claims: dict[str, Any]  # the verified VAPID JWT claims (aud, exp, sub)


@dataclass
class _Subscription:
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    server_key: bytes
    gone: bool = False


def _server_key(application_server_key: str) -> bytes:
    server_key = b64url_decode(application_server_key)
    # Browsers reject anything but an uncompressed P-256 point (InvalidAccessError).
    if len(server_key) != 65:
        raise ValueError("applicationServerKey must be a 65-byte uncompressed P-256 point")
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), server_key)
    return server_key


def _problem(status: int, message: str) -> Response:
    """Error body in the shape Mozilla's autopush uses."""
    return Response(status, body={"code": status, "error": message, "message": message})


def _first_problem(*checks: tuple[bool, int, str]) -> Response | None:
    """The answer for the first failed check, in the order a push service applies them."""
    return next((_problem(status, message) for bad, status, message in checks if bad), None)


class PushService(StandIn):
    """Web Push service stand-in; see the module docstring for what it checks."""

    def __init__(self) -> None:
        super().__init__()
        self._subscriptions: dict[str, _Subscription] = {}
        self._messages: list[PushMessage] = []

    def subscribe(self, application_server_key: str) -> dict[str, Any]:
        """What ``PushManager.subscribe({applicationServerKey})`` resolves to, as ``subscription.toJSON()``."""
        private_key = ec.generate_private_key(ec.SECP256R1())
        endpoint = f"{self.url}/push/{secrets.token_urlsafe(24)}"
        auth_secret = secrets.token_bytes(16)
        self._add(_Subscription(endpoint, private_key, auth_secret, _server_key(application_server_key)))
        p256dh = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(p256dh), "auth": b64url(auth_secret)},
        }

    def adopt(self, endpoint: str, private_key: str, auth: str, application_server_key: str) -> None:
        """A subscription whose keys were made elsewhere (a browser test's stubbed ``PushManager.subscribe``).

        `endpoint` must be under this service's URL; `private_key` is base64url of the 32-byte P-256 scalar
        (the ``d`` of its JWK), `auth` base64url of the 16-byte auth secret.
        """
        if not endpoint.startswith(f"{self.url}/push/"):
            raise ValueError(f"an endpoint of this service starts with {self.url}/push/")
        scalar = int.from_bytes(b64url_decode(private_key), "big")
        key = ec.derive_private_key(scalar, ec.SECP256R1())
        self._add(_Subscription(endpoint, key, b64url_decode(auth), _server_key(application_server_key)))

    def _add(self, subscription: _Subscription) -> None:
        with self._changed:
            self._subscriptions[subscription.endpoint] = subscription

    def unsubscribe(self, endpoint: str) -> None:
        """The user revoked the subscription: from now on the endpoint answers 410 Gone."""
        self._subscriptions[endpoint].gone = True

    def script(self, endpoint: str, *responses: Response) -> None:
        """Answer the next pushes to `endpoint` with `responses`, in order, then behave normally again."""
        self._queue(endpoint, responses)

    @property
    def messages(self) -> list[PushMessage]:
        return self._snapshot(self._messages)

    def requests_for(self, endpoint: str) -> list[Request]:
        path = endpoint.removeprefix(self.url)
        return [r for r in self.requests if r.path == path]

    def clear(self) -> None:
        with self._changed:
            super().clear()
            self._messages.clear()

    def route(self, request: Request) -> Response:
        subscription = self._subscriptions.get(self.url + request.path)
        if request.method != "POST" or subscription is None:
            return _problem(404, "no such subscription")
        return self._answer([subscription.endpoint], lambda _delay: self._deliver(subscription, request))

    def _deliver(self, subscription: _Subscription, request: Request) -> Response:
        if subscription.gone:
            return _problem(410, "subscription expired or unsubscribed")
        vapid = self._verify_vapid(subscription, request.headers.get("Authorization"))
        if isinstance(vapid, Response):
            return vapid
        headers = request.headers
        ttl, urgency, topic = headers.get("TTL", ""), headers.get("Urgency", "normal"), headers.get("Topic")
        failed = _first_problem(
            (not ttl.isdigit(), 400, "missing or invalid TTL header"),
            (urgency not in URGENCIES, 400, f"invalid Urgency {urgency!r}"),
            (topic is not None and not _TOPIC.fullmatch(topic), 400, "Topic must be 1-32 base64url characters"),
            (len(request.body) > MAX_BODY, 413, f"payload larger than {MAX_BODY} bytes"),
            (bool(request.body) and headers.get("Content-Encoding") != "aes128gcm", 415, "use aes128gcm"),
        )
        plaintext = None if failed else self._decrypt(subscription, request.body)
        if failed or plaintext is None:
            return failed or _problem(400, "payload could not be decrypted")
        try:
            parsed = json.loads(plaintext)
        except ValueError:
            parsed = None
        key, claims = vapid
        message = PushMessage(subscription.endpoint, plaintext, parsed, int(ttl), urgency, topic, key, claims)
        self._record(self._messages, message)
        return Response(201, headers={"Location": f"{self.url}/message/{secrets.token_urlsafe(16)}"})

    def _verify_vapid(self, subscription: _Subscription, header: str | None) -> tuple[str, dict[str, Any]] | Response:
        scheme, _, rest = (header or "").partition(" ")
        params = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
        token, key = params.get("t"), params.get("k")
        if scheme.lower() != "vapid" or not token or not key:
            return _problem(401, "missing VAPID authorization (vapid t=..., k=...)")
        try:
            key_matches = b64url_decode(key) == subscription.server_key
            claims = vapid_jwt.decode(token, key)
            alg = json.loads(b64url_decode(token.split(".")[0])).get("alg")
        except (InvalidSignature, ValueError):
            return _problem(403, "invalid VAPID JWT signature")
        now, exp, sub = time.time(), claims.get("exp"), claims.get("sub")
        failed = _first_problem(
            (not key_matches, 403, "VAPID key differs from the applicationServerKey of the subscription"),
            (alg != "ES256", 403, "VAPID JWT must be ES256"),
            (claims.get("aud") != self.url, 403, f"VAPID aud must be {self.url}"),
            (not isinstance(exp, int) or not now < exp <= now + 86400, 403, "VAPID exp must be within 24 h"),
            (not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")), 403, "VAPID sub: mailto:|https:"),
        )
        return failed or (key, claims)

    @staticmethod
    def _decrypt(subscription: _Subscription, body: bytes) -> bytes | None:
        if not body:
            return b""
        try:
            return bytes(
                http_ece.decrypt(
                    body,
                    private_key=subscription.private_key,
                    auth_secret=subscription.auth_secret,
                    version="aes128gcm",
                )
            )
        except (http_ece.ECEException, InvalidTag, ValueError):
            return None
