"""VAPID key pairs: made here, stored encrypted in notify.vapid_keys, rotated by the worker.

A key is the raw form browsers and `VAPID_*` use: the public key is base64url of the 65-byte
uncompressed P-256 point (the browser's applicationServerKey), the private key base64url of
its 32 raw bytes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import Vapid

from notifyd.core.config import Settings
from notifyd.core.crypto import b64url, unb64url
from notifyd.db.pool import as_worker
from notifyd.db.queries import query
from notifyd.domain.deliveries import VapidKey

log = logging.getLogger("notifyd.vapid")

# A VAPID JWT's exp: pywebpush's 12 h (RFC 8292 allows at most 24 h). It is signed again once less than
# RENEW_BEFORE is left, so that no push service sees one about to expire (clocks drift, requests queue).
JWT_LIFETIME = 12 * 3600
RENEW_BEFORE = 3600


def generate() -> tuple[str, str]:
    """A new key pair: (public key, private key)."""
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return b64url(public), b64url(private.private_numbers().private_value.to_bytes(32, "big"))


def public_key_of(private_key: str) -> str:
    """The public key that belongs to a private key (to check a VAPID_* pair)."""
    value = int.from_bytes(unb64url(private_key), "big")
    public = ec.derive_private_key(value, ec.SECP256R1()).public_key()
    return b64url(public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


def not_configured(settings: Settings) -> str | None:
    """Why Web Push keys cannot be kept, or None."""
    if settings.secrets is None:
        return "Web Push is not configured: NOTIFICATION_ENCRYPTION_KEY is not set (it encrypts keys at rest)"
    if settings.vapid_subject is None:
        return "Web Push is not configured: VAPID_SUBJECT (a mailto: or https: contact) is not set"
    return None


def environment_pair(settings: Settings) -> tuple[str, str] | None:
    """The VAPID_PUBLIC_KEY/VAPID_PRIVATE_KEY pair, checked to belong together, or None when they are not set."""
    if not (settings.vapid_private_key and settings.vapid_public_key):
        return None
    if public_key_of(settings.vapid_private_key) != settings.vapid_public_key:
        raise SystemExit("notifyd: VAPID_PUBLIC_KEY is not the public key of VAPID_PRIVATE_KEY")
    return settings.vapid_public_key, settings.vapid_private_key


@asynccontextmanager
async def _one_maintainer(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A transaction holding the VAPID keys' lock: a serve and workers starting at once add one key, not one each."""
    async with as_worker(pool) as conn:
        await conn.execute(query("lock_vapid_keys"))
        yield conn


async def _store(conn: asyncpg.Connection, settings: Settings, public_key: str, private_key: str) -> None:
    assert settings.secrets is not None
    await conn.fetchval(query("add_vapid_key"), public_key, settings.secrets.encrypt(private_key))


async def seed(pool: asyncpg.Pool, settings: Settings) -> None:
    """Stores the VAPID_* pair when serve starts, so that browsers can subscribe before any worker has run."""
    pair = environment_pair(settings)
    if pair is None or not_configured(settings) is not None:
        return
    async with _one_maintainer(pool) as conn:
        await _store(conn, settings, *pair)


async def maintain(pool: asyncpg.Pool, settings: Settings) -> str | None:
    """Seeds the VAPID_* pair, makes a new key when the current one is due, retires unused ones.

    Returns the public key new subscribers get, or None when Web Push is not configured.
    """
    reason = not_configured(settings)
    if reason is not None:
        log.warning("%s", reason)
        return None
    pair = environment_pair(settings)
    async with _one_maintainer(pool) as conn:
        if pair is not None:
            await _store(conn, settings, *pair)
        if await conn.fetchval(query("vapid_rotation_due")):
            public, private = generate()
            await _store(conn, settings, public, private)
            log.info("new VAPID key %s… for new subscribers", public[:12])
        retired = await conn.fetchval(query("retire_vapid_keys"))
        current = await conn.fetchrow(query("current_vapid_key"))
    if retired:
        log.info("retired %d VAPID key(s) no subscription uses", retired)
    return None if current is None else str(current["public_key"])


class Signatures:
    """VAPID Authorization headers, one per (key, push service origin), signed once and reused until near exp.

    Loading the key and an ES256 signature cost ~230 µs, as much CPU as encrypting the push: RFC 8292 lets
    the JWT, whose claims are only aud, exp and sub, be reused for every push to that origin until it expires.
    """

    def __init__(self, subject: str) -> None:
        self._subject = subject
        self._signers: dict[uuid.UUID, Vapid] = {}
        self._headers: dict[tuple[uuid.UUID, str], tuple[str, int]] = {}

    def authorization(self, key: VapidKey, origin: str, now: float) -> str:
        """`vapid t=<JWT>,k=<public key>` for pushes to `origin` (scheme://host[:port]) signed with `key`."""
        cached = self._headers.get((key.id, origin))
        if cached is not None and cached[1] - RENEW_BEFORE > now:
            return cached[0]
        signer = self._signers.get(key.id)
        if signer is None:
            signer = self._signers[key.id] = Vapid.from_raw(key.private_key.encode("ascii"))
        exp = int(now) + JWT_LIFETIME
        header = str(signer.sign({"sub": self._subject, "aud": origin, "exp": exp})["Authorization"])
        # Expired entries go when a new one is made: the cache holds (keys in use) × (push services).
        self._headers = {k: v for k, v in self._headers.items() if v[1] - RENEW_BEFORE > now}
        self._headers[(key.id, origin)] = (header, exp)
        return header
