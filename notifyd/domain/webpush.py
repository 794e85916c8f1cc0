"""The Web Push channel (RFC 8030/8291/8292): one encrypted, VAPID-signed POST per device.

Each push is encrypted here (RFC 8291 aes128gcm, one record) with a fresh ECDH key per message: that
key agreement is the one cost per push by design. The HMAC-SHA256 steps go straight to hashlib, not
through pywebpush and http_ece, which re-parse the keys and build HKDF objects per call (twice the CPU
for the same bytes). The VAPID JWT is signed once per key and push service and reused until near its
exp (vapid.Signatures);
the POST goes out on the channel's pooled keep-alive connections (aiohttp), PARALLEL_SENDS at once.
Each subscription is signed with the VAPID key it was made with (a push service refuses any other),
so keys can rotate without losing old subscribers. The endpoint is checked against
PUSH_ENDPOINT_ALLOWLIST again at send time: a row written before the list narrowed must not make
the worker POST to a host it no longer trusts.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import os
import re
import struct
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from notifyd.core.config import Settings
from notifyd.core.crypto import unb64url
from notifyd.domain import vapid
from notifyd.domain.deliveries import Delivery, Failed, Gone, Outcome, ProviderSession, Retry, Sent, send_each
from notifyd.domain.push import delivery_headers, retry_after_seconds
from notifyd.domain.tracking import receipt_token

log = logging.getLogger("notifyd.webpush")

# aes128gcm in one record: 4,096 bytes on the wire is 3,993 bytes of plaintext (FIELD-NOTES).
MAX_PLAINTEXT = 3993
ELLIPSIS = "…"
DEFAULT_PORTS = {"https": 443, "http": 80}
# Chromium shows two action buttons on a notification: the service worker gets at most that many.
MAX_ACTIONS = 2
ERROR_TEXT_LIMIT = 300
# Pushes in flight at once per worker process (its jobs together), each on a pooled connection. A push
# service answers in tens of milliseconds: the rate is at most PARALLEL_SENDS / round trip (16 allowed
# ~250/s at 50 ms; 128 allows ~2,500/s), and on loopback 128 costs no more CPU per push than 16.
PARALLEL_SENDS = 128

NOT_ALLOWED = "the endpoint's host is not in PUSH_ENDPOINT_ALLOWLIST (any more)"
NO_DEVICE = "the delivery has no Web Push subscription"
NO_KEY = "the subscription has no VAPID key"
TOO_LARGE = f"the payload does not fit in {MAX_PLAINTEXT} bytes even without body and data"
REDIRECTED = "the push service answered with a redirect (not followed)"

# Hostnames as URLs carry them (urlsplit lowercases): DNS labels, IPv4, or IPv6 without brackets.
_HOSTNAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*|[0-9a-f:.]+")
_PORT_GLOB = re.compile(r"[0-9*]+")


# --- which endpoints the worker may POST to ------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    # Every push checks its endpoint against the same few entries: built once, not ~15 µs per entry per push.
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def _pattern_matches(pattern: str, scheme: str, host: str, port: int) -> bool:
    """`[scheme://]host-glob[:port-glob]`: https and its default port unless the entry says otherwise."""
    entry = pattern.strip().lower().rstrip("/")
    entry_scheme, has_scheme, rest = entry.partition("://")
    if not has_scheme:
        entry_scheme, rest = "https", entry
    if entry_scheme not in DEFAULT_PORTS or "/" in rest or "@" in rest:
        return False
    host_glob, has_port, port_glob = rest.rpartition(":")
    if not has_port or not _PORT_GLOB.fullmatch(port_glob):
        host_glob, port_glob = rest, str(DEFAULT_PORTS[entry_scheme])
    host_glob = host_glob.removeprefix("[").removesuffix("]")
    return (
        entry_scheme == scheme
        and bool(host_glob)
        and _glob(host_glob).fullmatch(host) is not None
        and _glob(port_glob).fullmatch(str(port)) is not None
    )


def endpoint_allowed(endpoint: str, patterns: Sequence[str]) -> bool:
    """Whether the worker may POST to this endpoint: http(s), a plain host, and an allowlist entry that matches."""
    try:
        url = urlsplit(endpoint)
        port = url.port
    except ValueError:
        return False
    host = url.hostname
    if url.scheme not in DEFAULT_PORTS or host is None or "@" in url.netloc or _HOSTNAME.fullmatch(host) is None:
        return False
    effective_port = port if port is not None else DEFAULT_PORTS[url.scheme]
    return any(_pattern_matches(p, url.scheme, host, effective_port) for p in patterns)


# --- what is sent --------------------------------------------------------------------------------------


def _encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _shortened(payload: dict[str, Any], field: str) -> dict[str, Any] | None:
    """The payload with `field` cut (ending in …) to the longest text that fits, or None if nothing fits."""
    text = payload.get(field) or ""

    def cut(length: int) -> dict[str, Any]:
        return {**payload, field: text[:length].rstrip() + ELLIPSIS}

    low, high = 0, len(text) - 1  # text[:len(text)] is the whole text, which did not fit
    if high < 0 or len(_encode(cut(0))) > MAX_PLAINTEXT:
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if len(_encode(cut(middle))) <= MAX_PLAINTEXT:
            low = middle
        else:
            high = middle - 1
    return cut(low)


def push_actions(data: Mapping[str, Any]) -> list[dict[str, str]]:
    """data.actions as showNotification takes them, [{"action", "title"}]: the title is the label (else the action)."""
    offered = data.get("actions")
    actions = []
    for item in offered if isinstance(offered, list) else []:
        if isinstance(item, dict) and isinstance(item.get("action"), str) and item["action"]:
            titles = (item.get(k) for k in ("title", "label"))
            title = next((t for t in titles if isinstance(t, str) and t), item["action"])
            actions.append({"action": item["action"], "title": title})
    return actions[:MAX_ACTIONS]


def push_payload(notification: Mapping[str, Any], receipt: str | None = None) -> bytes:
    """What the service worker receives; within MAX_PLAINTEXT when it can be: body cut first, then data dropped.

    id, url and receipt always stay: the service worker can fetch the rest, open the right page and
    report the push received and clicked (POST /api/v1/notifications/receipts with the receipt token).
    """
    data = notification.get("data") or {}
    url = next((data[k] for k in ("url", "action_url") if isinstance(data.get(k), str)), None)
    full: dict[str, Any] = {
        "id": str(notification["id"]),
        "seq": notification.get("seq"),
        "type": notification.get("type"),
        "priority": notification.get("priority"),
        "title": notification.get("title"),
        "body": notification.get("body"),
        "url": url,
        "data": data,
        "actions": push_actions(data),
        "receipt": receipt,
    }
    candidates = [full, {**full, "data": {}}, {**full, "data": {}, "actions": []}]
    for candidate in candidates:
        if len(_encode(candidate)) <= MAX_PLAINTEXT:
            return _encode(candidate)
        shortened = _shortened(candidate, "body")
        if shortened is not None:
            return _encode(shortened)
    last = _shortened({**candidates[-1], "body": None}, "title")
    return _encode(last if last is not None else {**candidates[-1], "body": None})


# --- how it is encrypted (RFC 8291 on RFC 8188's aes128gcm) ----------------------------------------------

RECORD_SIZE = 4096
SALT_BYTES = 16
KEY_INFO = b"WebPush: info\x00"
CEK_INFO = b"Content-Encoding: aes128gcm\x00\x01"
NONCE_INFO = b"Content-Encoding: nonce\x00\x01"
LAST_RECORD = b"\x02"  # the padding delimiter of the one and last record, no padding after it


def _hkdf_sha256(salt: bytes, secret: bytes, info_and_counter: bytes, length: int) -> bytes:
    """HKDF (RFC 5869) for outputs of at most one SHA-256 block: extract, then the first expand step."""
    return hmac.digest(hmac.digest(salt, secret, "sha256"), info_and_counter, "sha256")[:length]


def encrypt(
    p256dh: str,
    auth: str,
    plaintext: bytes,
    *,
    salt: bytes | None = None,
    ephemeral: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """The body of one push: `plaintext` encrypted for the subscription's keys (base64url, as browsers give them).

    Every push gets a new random salt and ECDH key; passing them is for RFC 8291's worked example only.
    Raises ValueError for keys that are not a P-256 point and a 16-byte secret.
    """
    receiver = unb64url(p256dh)
    secret = unb64url(auth)
    if len(secret) != SALT_BYTES:
        raise ValueError(f"the auth secret is {len(secret)} bytes, not {SALT_BYTES}")
    receiver_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), receiver)
    ephemeral = ec.generate_private_key(ec.SECP256R1()) if ephemeral is None else ephemeral
    sender = ephemeral.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    shared = ephemeral.exchange(ec.ECDH(), receiver_key)
    ikm = _hkdf_sha256(secret, shared, KEY_INFO + receiver + sender + b"\x01", 32)
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = _hkdf_sha256(salt, ikm, CEK_INFO, 16)
    nonce = _hkdf_sha256(salt, ikm, NONCE_INFO, 12)
    header = salt + struct.pack("!IB", RECORD_SIZE, len(sender)) + sender
    return header + AESGCM(key).encrypt(nonce, plaintext + LAST_RECORD, None)


# --- what the push service answered ----------------------------------------------------------------------


def _answer_outcome(response: aiohttp.ClientResponse, text: str) -> Outcome:
    status = response.status
    error = f"{status} {response.reason or ''}: {text[:ERROR_TEXT_LIMIT]}".strip()
    if status in (200, 201, 202):
        return Sent(response.headers.get("Location"))
    if status in (404, 410):
        return Gone(error)
    if status in (429, 503):
        return Retry(error, retry_after_seconds(response.headers.get("Retry-After"), datetime.now(UTC)))
    if status >= 500:
        return Retry(error)
    if 300 <= status < 400:
        return Failed(REDIRECTED)
    return Failed(error)


class WebPushChannel:
    """The `push` queue: Web Push deliveries, PARALLEL_SENDS at once over the channel's keep-alive connections."""

    queue = "push"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._signatures = vapid.Signatures(str(settings.vapid_subject))
        self._http = ProviderSession(PARALLEL_SENDS, settings.provider_timeout)
        self._slots = asyncio.Semaphore(PARALLEL_SENDS)

    def not_configured(self) -> str | None:
        return vapid.not_configured(self.settings)

    async def _post(self, delivery: Delivery, payload: bytes, ttl: int, headers: dict[str, str]) -> Outcome:
        """Encrypts, POSTs, and says what the answer means."""
        sub, key = delivery.subscription, delivery.vapid_key
        assert sub is not None and sub.endpoint is not None and key is not None
        url = urlsplit(sub.endpoint)
        assert sub.p256dh is not None and sub.auth is not None
        try:
            body = encrypt(sub.p256dh, sub.auth, payload)
        except ValueError as error:
            return Failed(f"the subscription's keys cannot encrypt: {error}")
        authorization = self._signatures.authorization(key, f"{url.scheme}://{url.netloc}", time.time())
        sent = {**headers, "TTL": str(ttl), "Content-Encoding": "aes128gcm", "Authorization": authorization}
        try:
            # A push service never redirects; following one would POST wherever it points.
            async with self._http.get().post(sub.endpoint, data=body, headers=sent, allow_redirects=False) as answer:
                return _answer_outcome(answer, (await answer.read()).decode("utf-8", "replace"))
        except (aiohttp.ClientError, TimeoutError) as error:
            # Timeouts, refused connections, resets: the push service may be back soon. The endpoint's
            # path names the device: it stays out of the ledger's error text.
            text = str(error).replace(url.path, "/…")
            return Retry(f"{type(error).__name__}: {text[:ERROR_TEXT_LIMIT]}")

    async def _send_one(self, delivery: Delivery) -> Outcome:
        sub = delivery.subscription
        if sub is None or sub.endpoint is None or sub.p256dh is None or sub.auth is None:
            return Failed(NO_DEVICE)
        if delivery.vapid_key is None:
            return Failed(NO_KEY)
        if not endpoint_allowed(sub.endpoint, self.settings.push_endpoint_allowlist):
            return Failed(NOT_ALLOWED)
        payload = push_payload(delivery.notification, receipt_token(self.settings, delivery))
        if len(payload) > MAX_PLAINTEXT:
            return Failed(TOO_LARGE)
        ttl, headers = delivery_headers(delivery.notification, datetime.now(UTC))
        # Encrypting inside the slot: a job's 200 pushes are encrypted as connections free up, not all first.
        async with self._slots:
            try:
                return await self._post(delivery, payload, ttl, headers)
            except Exception as error:  # one delivery's surprise must not fail the others
                log.exception("Web Push delivery %s failed unexpectedly", delivery.id)
                return Retry(f"unexpected error: {type(error).__name__}")

    async def send(self, deliveries: Sequence[Delivery]) -> Mapping[uuid.UUID, Outcome]:
        return await send_each(deliveries, self._send_one)

    async def close(self) -> None:
        await self._http.close()
