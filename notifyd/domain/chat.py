"""The `chat` channel: a notification posted to a Slack, Microsoft Teams or Discord incoming webhook.

One channel, three platforms (a connection's platform says which), each message shaped the platform's way:
Slack Block Kit (header, text, a link button), a Teams message whose attachment is an Adaptive Card
(what Office 365 connectors and the Workflows app both take), a Discord embed with a link button. The
action link goes through notifyd's click redirect, as an e-mail's does. The URL of a connection is its
credential: it is stored encrypted and sent only to its platform's hosts (the *_WEBHOOK_HOSTS settings).
A 404 or 410 means the webhook was deleted: the connection is deactivated, as a gone push device is.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from notifyd.core.config import Settings
from notifyd.domain.deliveries import Delivery, Failed, Outcome, send_each
from notifyd.domain.email import open_link
from notifyd.domain.hooks import JsonPosts
from notifyd.domain.tracking import click_url
from notifyd.domain.webpush import endpoint_allowed

BUTTON_LABEL = "Open"
ELLIPSIS = "…"
NO_CONNECTION = "the delivery has no chat connection"

# The platforms' documented limits: Slack's header block 150 characters and section text 3000; Discord's
# embed title 256 and description 4096; a Teams card has no fixed limit below the 28 KB message.
SLACK_HEADER = 150
SLACK_TEXT = 3000
DISCORD_TITLE = 256
DISCORD_DESCRIPTION = 4096
TEAMS_TEXT = 10_000
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters: a body cannot ping <!channel> or forge a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(title: str, body: str, link: str | None) -> dict[str, Any]:
    header = {"type": "header", "text": {"type": "plain_text", "text": _cut(title, SLACK_HEADER)}}
    blocks: list[dict[str, Any]] = [header]
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(_slack_escape(body), SLACK_TEXT)}})
    if link:
        button = {"type": "button", "text": {"type": "plain_text", "text": BUTTON_LABEL}, "url": link}
        blocks.append({"type": "actions", "elements": [button]})
    # text: what notifications and screen readers show where blocks are not rendered.
    return {"text": _slack_escape(title), "blocks": blocks}


def teams_message(title: str, body: str, link: str | None) -> dict[str, Any]:
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [{"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True}]
        + ([{"type": "TextBlock", "text": _cut(body, TEAMS_TEXT), "wrap": True}] if body else []),
    }
    if link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": BUTTON_LABEL, "url": link}]
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
    }


def discord_message(title: str, body: str, link: str | None, created_at: str | None) -> dict[str, Any]:
    embed: dict[str, Any] = {"title": _cut(title, DISCORD_TITLE)}
    if body:
        embed["description"] = _cut(body, DISCORD_DESCRIPTION)
    if created_at:
        embed["timestamp"] = created_at
    message: dict[str, Any] = {"embeds": [embed], "allowed_mentions": {"parse": []}}  # no @everyone from a body
    if link:
        embed["url"] = link
        button = {"type": 2, "style": 5, "label": BUTTON_LABEL, "url": link}  # a link button in an action row
        message["components"] = [{"type": 1, "components": [button]}]
    return message


def chat_message(platform: str, notification: Mapping[str, Any], link: str | None) -> dict[str, Any]:
    title = str(notification.get("title") or "")
    body = str(notification.get("body") or "")
    if platform == "slack":
        return slack_message(title, body, link)
    if platform == "teams":
        return teams_message(title, body, link)
    return discord_message(title, body, link, notification.get("created_at"))


def post_url(platform: str, url: str) -> str:
    """Discord sends a webhook message's components only when asked to (with_components=true)."""
    if platform != "discord":
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, "with_components=true") if q)
    return urlunsplit(parts._replace(query=query))


class ChatChannel:
    """The `chat` queue: Slack, Teams and Discord messages over the channel's keep-alive connections."""

    queue = "chat"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # 404 and 410: the webhook was deleted (or its channel archived).
        self._posts = JsonPosts(settings.provider_timeout, gone=(404, 410))

    def not_configured(self) -> str | None:
        if self.settings.secrets is None:
            return "NOTIFICATION_ENCRYPTION_KEY is not set: chat webhook URLs cannot be read"
        return None

    async def _send_one(self, delivery: Delivery) -> Outcome:
        target = delivery.target
        if target is None or target.platform is None:
            return Failed(NO_CONNECTION)
        hosts = self.settings.chat_webhook_hosts.get(target.platform, ())
        if not endpoint_allowed(target.url, hosts):
            setting = f"{target.platform.upper()}_WEBHOOK_HOSTS"
            return Failed(f"the URL's host is not a {target.platform} webhook host ({setting})")
        link = open_link(delivery.notification.get("data") or {})
        tracked = link and click_url(self.settings, delivery, link)
        message = chat_message(target.platform, delivery.notification, tracked)
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        # The URL is the credential: its path stays out of the ledger's error text.
        return await self._posts.post(delivery, post_url(target.platform, target.url), body,
                                      {"Content-Type": "application/json"}, urlsplit(target.url).path)  # fmt: skip

    async def send(self, deliveries: Sequence[Delivery]) -> Mapping[uuid.UUID, Outcome]:
        return await send_each(deliveries, self._send_one)

    async def close(self) -> None:
        await self._posts.close()
