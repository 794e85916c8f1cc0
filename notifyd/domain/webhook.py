"""The `webhook` channel: a notification POSTed as JSON to an endpoint, signed per Standard Webhooks.

Each request carries webhook-id (the delivery's id: the same on every retry and replay, so the receiver
can drop a repeat), webhook-timestamp and webhook-signature. During a secret rotation's overlap the
signature header holds two signatures, the new secret's and the old one's, space-separated, as the
specification lets a receiver verify either.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from notifyd.core.config import Settings
from notifyd.domain.deliveries import Delivery, Failed, Outcome, send_each
from notifyd.domain.email import open_link
from notifyd.domain.hooks import JsonPosts
from notifyd.domain.outbound import PublicOnlyResolver, url_refused

EVENT_TYPE = "notification.created"
USER_AGENT = "notifyd-webhooks/1"
NO_ENDPOINT = "the delivery has no webhook endpoint"
NO_SECRET = "the endpoint has no signing secret"


def webhook_body(delivery: Delivery) -> bytes:
    """The JSON body: {type, timestamp, data}, data being the notification as the user's inbox has it."""
    n = delivery.notification
    data = n.get("data") or {}
    payload: dict[str, Any] = {
        "type": EVENT_TYPE,
        "timestamp": n.get("created_at"),
        "data": {
            "id": str(n["id"]),
            "user_id": str(delivery.recipient.get("user_id")),
            "type": n.get("type"),
            "priority": n.get("priority"),
            "title": n.get("title"),
            "body": n.get("body"),
            "url": open_link(data),
            # Sensitive fields are masked here as everywhere: the database holds only the mask.
            "data": data,
            "group_key": n.get("group_key"),
            "created_at": n.get("created_at"),
        },
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: datetime, body: bytes) -> str:
    """webhook-signature: one `v1,…` per secret, space-separated (two during a rotation's overlap)."""
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets)


def webhook_headers(delivery: Delivery, body: bytes, now: datetime) -> dict[str, str]:
    assert delivery.target is not None
    msg_id = str(delivery.id)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature_header(delivery.target.secrets, msg_id, now, body),
    }


class WebhookChannel:
    """The `webhook` queue: signed POSTs to the endpoints users and org admins registered."""

    queue = "webhook"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        allowlist = settings.webhook_endpoint_allowlist
        self._posts = JsonPosts(settings.provider_timeout, lambda: PublicOnlyResolver(allowlist))

    def not_configured(self) -> str | None:
        if self.settings.secrets is None:
            return "NOTIFICATION_ENCRYPTION_KEY is not set: webhook secrets cannot be read"
        return None

    async def _send_one(self, delivery: Delivery) -> Outcome:
        target = delivery.target
        if target is None:
            return Failed(NO_ENDPOINT)
        if not target.secrets:
            return Failed(NO_SECRET)
        refused = url_refused(target.url, self.settings.webhook_endpoint_allowlist)
        if refused is not None:
            return Failed(refused)
        body = webhook_body(delivery)
        return await self._posts.post(delivery, target.url, body, webhook_headers(delivery, body, datetime.now(UTC)))

    async def send(self, deliveries: Sequence[Delivery]) -> Mapping[uuid.UUID, Outcome]:
        return await send_each(deliveries, self._send_one)

    async def close(self) -> None:
        await self._posts.close()
