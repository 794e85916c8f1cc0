"""Secrets at rest (push keys, FCM tokens, VAPID private keys): AES-256-GCM under NOTIFICATION_ENCRYPTION_KEY.

Each ciphertext names the key that made it, so the key can rotate: the current key encrypts, the
current and the old keys (NOTIFICATION_ENCRYPTION_OLD_KEYS) decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc1"
NONCE_BYTES = 12
KEY_BYTES = 32


class SecretsError(Exception):
    """A key that cannot be used, or a ciphertext no configured key opens."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_key(text: str, name: str = "NOTIFICATION_ENCRYPTION_KEY") -> bytes:
    """32 bytes from base64 (standard or URL-safe alphabet)."""
    try:
        key = base64.b64decode(text.strip().replace("-", "+").replace("_", "/") + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        raise SecretsError(f"{name} is not base64") from None
    if len(key) != KEY_BYTES:
        raise SecretsError(f"{name} must be {KEY_BYTES} random bytes in base64, got {len(key)} bytes")
    return key


def new_key() -> str:
    """A fresh key for NOTIFICATION_ENCRYPTION_KEY."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def key_id(key: bytes) -> str:
    # Names the key without revealing it.
    return hashlib.sha256(b"notifyd key id\x00" + key).hexdigest()[:8]


def token_hash(value: str) -> bytes:
    """The lookup key of a device (endpoint or FCM token): the same device is found again without decrypting."""
    return hashlib.sha256(value.encode("utf-8")).digest()


class SecretBox:
    def __init__(self, current: bytes, old: tuple[bytes, ...] = ()) -> None:
        self._current_id = key_id(current)
        self._keys = {key_id(k): AESGCM(k) for k in (*old, current)}

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self._current_id].encrypt(nonce, plaintext.encode("utf-8"), PREFIX.encode())
        return f"{PREFIX}.{self._current_id}.{b64url(nonce + sealed)}"

    def decrypt(self, ciphertext: str) -> str:
        try:
            prefix, kid, body = ciphertext.split(".")
        except ValueError:
            raise SecretsError("not a notifyd ciphertext") from None
        if prefix != PREFIX:
            raise SecretsError("not a notifyd ciphertext")
        aead = self._keys.get(kid)
        if aead is None:
            raise SecretsError(f"encrypted with key {kid}, which is neither the current nor an old key")
        raw = unb64url(body)
        try:
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], PREFIX.encode()).decode("utf-8")
        except InvalidTag:
            raise SecretsError(f"ciphertext under key {kid} is corrupt") from None


def signature(secret: str, purpose: str, message: bytes) -> str:
    """An HMAC-SHA256 tag over message, with a key derived per purpose (tokens of one kind never pass as another)."""
    key = hmac.new(secret.encode("utf-8"), purpose.encode("utf-8"), hashlib.sha256).digest()
    return b64url(hmac.new(key, message, hashlib.sha256).digest())


def seal_token(secret: str, purpose: str, payload: dict[str, str]) -> str:
    """An opaque signed token carrying payload; the same payload always gives the same token."""
    body = b64url(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    return f"{body}.{signature(secret, purpose, body.encode('ascii'))}"


def open_token(secret: str, purpose: str, token: str) -> dict[str, str] | None:
    """The payload of a token sealed for this purpose, or None if it is not one."""
    body, _, tag = token.partition(".")
    if not body or not token.isascii() or not hmac.compare_digest(tag, signature(secret, purpose, body.encode())):
        return None
    try:
        payload = json.loads(unb64url(body))
    except (ValueError, binascii.Error):
        return None
    return payload if isinstance(payload, dict) else None
