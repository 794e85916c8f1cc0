"""What the two push channels (Web Push and FCM) share: TTL, Urgency and Topic from a notification, Retry-After."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

# (TTL seconds, Urgency) per priority: a critical alert may wait a day for the device, a low one an hour.
DELIVERY_POLICY: dict[str, tuple[int, str]] = {
    "critical": (24 * 3600, "high"),
    "high": (12 * 3600, "high"),
    "normal": (6 * 3600, "normal"),
    "low": (3600, "low"),
}
# A Topic is at most 32 base64url characters: 24 bytes of a hash.
TOPIC_HASH_BYTES = 24


def delivery_headers(notification: Mapping[str, Any], now: datetime) -> tuple[int, dict[str, str]]:
    """TTL and the Urgency/Topic headers: from the priority, never outliving the notification."""
    ttl, urgency = DELIVERY_POLICY.get(str(notification.get("priority")), DELIVERY_POLICY["normal"])
    expires_at = notification.get("expires_at")
    if expires_at:
        ttl = max(0, min(ttl, int((datetime.fromisoformat(expires_at) - now).total_seconds())))
    headers = {"Urgency": urgency}
    group_key = notification.get("group_key")
    if group_key:
        # The push service keeps only the newest message of a topic that is waiting for the device.
        digest = hashlib.sha256(str(group_key).encode("utf-8")).digest()[:TOPIC_HASH_BYTES]
        headers["Topic"] = base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
    return ttl, headers


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
