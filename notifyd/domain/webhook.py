"""The `webhook` channel: a notification POSTed as JSON to an endpoint, signed per Standard Webhooks.

Each request carries webhook-id (the delivery's id: the same on every retry and replay, so the receiver
can drop a repeat), webhook-timestamp and webhook-signature. During a secret rotation's overlap the
signature header holds two signatures, the new secret's and the old one's, space-separated, as the
specification lets a receiver verify either.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
from standardwebhooks.webhooks import Webhook

from notifyd.core.config import Settings
from notifyd.domain.deliveries import Delivery, Failed, Outcome, ProviderSession, Retry, Sent
from notifyd.domain.email import open_link
from notifyd.domain.outbound import PublicOnlyResolver, refused_connection, url_refused
from notifyd.domain.push import retry_after_seconds

log = logging.getLogger("notifyd.webhook")

EVENT_TYPE = "notification.created"
PARALLEL_SENDS = 32
ERROR_TEXT_LIMIT = 300
USER_AGENT = "notifyd-webhooks/1"
NO_ENDPOINT = "the delivery has no webhook endpoint"
NO_SECRET = "the endpoint has no signing secret"
REDIRECTED = "the endpoint answered with a redirect (not followed)"


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


def answer_outcome(status: int, reason: str, text: str, retry_after: str | None) -> Outcome:
    """2xx is taken; 408, 429 and 5xx are tried again (after Retry-After); a redirect or other 4xx is refused."""
    error = f"{status} {reason}: {text[:ERROR_TEXT_LIMIT]}".strip()
    if 200 <= status < 300:
        return Sent()
    if status in (408, 429) or status >= 500:
        return Retry(error, retry_after_seconds(retry_after, datetime.now(UTC)))
    if 300 <= status < 400:
        return Failed(REDIRECTED)
    return Failed(error)


class WebhookChannel:
    """The `webhook` queue: signed POSTs to the endpoints users and org admins registered."""

    queue = "webhook"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        allowlist = settings.webhook_endpoint_allowlist
        self._http = ProviderSession(PARALLEL_SENDS, settings.provider_timeout, lambda: PublicOnlyResolver(allowlist))
        self._slots = asyncio.Semaphore(PARALLEL_SENDS)

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
        headers = webhook_headers(delivery, body, datetime.now(UTC))
        async with self._slots:
            try:
                post = self._http.get().post(target.url, data=body, headers=headers, allow_redirects=False)
                async with post as answer:
                    text = (await answer.read()).decode("utf-8", "replace")
                    return answer_outcome(answer.status, answer.reason or "", text, answer.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as error:
                address = refused_connection(error)
                if address is not None:
                    return Failed(str(address))
                return Retry(f"{type(error).__name__}: {str(error)[:ERROR_TEXT_LIMIT]}")
            except Exception as error:  # one delivery's surprise must not fail the others
                log.exception("webhook delivery %s failed unexpectedly", delivery.id)
                return Retry(f"unexpected error: {type(error).__name__}")

    async def send(self, deliveries: Sequence[Delivery]) -> Mapping[uuid.UUID, Outcome]:
        outcomes = await asyncio.gather(*(self._send_one(d) for d in deliveries))
        return {d.id: o for d, o in zip(deliveries, outcomes, strict=True)}

    async def close(self) -> None:
        await self._http.close()
