"""Tracking tokens: sealed by the worker's channels into push payloads and e-mail links, opened by the tracking
routes (notifyd.rest.tracking_api).

A token is sealed with notifyd.core.crypto.seal_token, one purpose per kind, and names the notification, the
user and the delivery; the click token also carries the link, so the redirect goes only there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from notifyd.core.config import Settings
from notifyd.core.crypto import open_token, seal_token
from notifyd.domain.deliveries import Delivery

RECEIPT_PURPOSE = "receipt"
OPEN_PURPOSE = "open"
CLICK_PURPOSE = "click"
OPEN_PATH = "/t/open/{token}"
CLICK_PATH = "/t/click/{token}"
MAX_TOKEN = 2048


@dataclass(frozen=True)
class Tracked:
    delivery_id: uuid.UUID
    notification_id: uuid.UUID
    user_id: uuid.UUID
    url: str | None = None


def _claims(delivery: Delivery) -> dict[str, str]:
    return {"d": str(delivery.id), "n": str(delivery.notification["id"]), "u": str(delivery.recipient["user_id"])}


def receipt_token(settings: Settings, delivery: Delivery) -> str | None:
    """What the push payload carries for the service worker's receipts; None without a recipient to name."""
    if delivery.recipient.get("user_id") is None:
        return None
    return seal_token(settings.jwt_secret, RECEIPT_PURPOSE, _claims(delivery))


def open_pixel_url(settings: Settings, delivery: Delivery) -> str:
    token = seal_token(settings.jwt_secret, OPEN_PURPOSE, _claims(delivery))
    return f"{settings.public_base_url}{OPEN_PATH.format(token=token)}"


def click_url(settings: Settings, delivery: Delivery, url: str) -> str:
    """A link through the click redirect that goes to `url` and nowhere else (the URL is signed)."""
    token = seal_token(settings.jwt_secret, CLICK_PURPOSE, {**_claims(delivery), "url": url})
    return f"{settings.public_base_url}{CLICK_PATH.format(token=token)}"


def read_token(settings: Settings, purpose: str, token: str) -> Tracked | None:
    """What a token this server sealed for `purpose` names, or None for anything else."""
    if not token.isascii() or len(token) > MAX_TOKEN:
        return None  # open_token's hmac.compare_digest raises on non-ASCII text
    payload = open_token(settings.jwt_secret, purpose, token)
    if payload is None:
        return None
    url = payload.get("url")
    try:
        ids = uuid.UUID(payload["d"]), uuid.UUID(payload["n"]), uuid.UUID(payload["u"])
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
    if purpose == CLICK_PURPOSE and not _web_link(url):
        return None
    return Tracked(*ids, url=url if isinstance(url, str) else None)


def _web_link(url: object) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
