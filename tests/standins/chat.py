"""Slack, Microsoft Teams and Discord incoming webhooks in one stand-in, each checking the payload it documents.

`webhook(platform)` issues a URL the way each platform shapes it (Slack ``/services/T…/B…/secret``, Teams
``/webhookb2/…``, Discord ``/api/webhooks/<id>/<token>``); `remove(url)` deletes it, after which a post
answers as the platform does for a deleted webhook (Slack 404 ``no_service``, Teams 404, Discord 404
``Unknown Webhook``). A URL never issued is 404 too. Every post must be ``Content-Type: application/json``.

- Slack: ``text`` or ``blocks``; each block a known type; a ``header`` is plain_text of at most 150
  characters; a ``section``'s text at most 3000; an ``actions`` block of buttons, each plain_text of at
  most 75 characters and a url of at most 3000. Wrong: 400 ``invalid_blocks``; else 200 ``ok``.
- Teams: ``{"type": "message", "attachments": [...]}``, each attachment
  ``application/vnd.microsoft.card.adaptive`` whose content is an AdaptiveCard with a version and a body
  of elements that have a type; an ``Action.OpenUrl`` needs a url. Wrong: 400; else 202 (Workflows).
- Discord: ``content`` or ``embeds`` (at most 10; title at most 256, description 4096); components only
  with ``?with_components=true`` on the URL, a link button being type 2, style 5, a url and no custom_id.
  Wrong: 400 with Discord's error JSON; else 204.

Accepted posts are recorded in `messages` as `ChatMessage(platform, path, json)`.
Scripting: `script(url, Response(429, headers={"Retry-After": "1"}), Response(500), ...)`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from tests.standins.http import Request, Response, StandIn

PLATFORMS = ("slack", "teams", "discord")
SLACK_BLOCK_TYPES = {"header", "section", "actions", "divider", "context", "image"}
CARD = "application/vnd.microsoft.card.adaptive"


@dataclass(frozen=True)
class ChatMessage:
    platform: str
    path: str
    json: Any


class _Refused(Exception):
    pass


def _require(condition: object, why: str) -> None:
    if not condition:
        raise _Refused(why)


def _plain_text(value: Any, limit: int, where: str) -> None:
    _require(isinstance(value, dict) and value.get("type") == "plain_text", f"{where} must be plain_text")
    text = value.get("text")
    _require(isinstance(text, str) and 0 < len(text) <= limit, f"{where} must be 1 to {limit} characters")


def check_slack(body: Any, _query: dict[str, list[str]]) -> None:
    _require(isinstance(body, dict) and (isinstance(body.get("text"), str) or "blocks" in body), "no text")
    for block in body.get("blocks", []):
        kind = block.get("type") if isinstance(block, dict) else None
        _require(kind in SLACK_BLOCK_TYPES, f"unknown block type {kind!r}")
        if kind == "header":
            _plain_text(block.get("text"), 150, "header text")
        elif kind == "section":
            text = block.get("text") or {}
            _require(text.get("type") in ("plain_text", "mrkdwn"), "section text type")
            _require(0 < len(text.get("text", "")) <= 3000, "section text must be 1 to 3000 characters")
        elif kind == "actions":
            elements = block.get("elements")
            _require(isinstance(elements, list) and 0 < len(elements) <= 25, "actions need 1 to 25 elements")
            for element in elements:
                _require(element.get("type") == "button", "only buttons are checked here")
                _plain_text(element.get("text"), 75, "button text")
                url = element.get("url")
                _require(isinstance(url, str) and len(url) <= 3000, "button url must be at most 3000 characters")


def check_teams(body: Any, _query: dict[str, list[str]]) -> None:
    _require(isinstance(body, dict) and body.get("type") == "message", 'type must be "message"')
    attachments = body.get("attachments")
    _require(isinstance(attachments, list) and attachments, "attachments must be a non-empty list")
    for attachment in attachments:
        _require(attachment.get("contentType") == CARD, f"contentType must be {CARD}")
        card = attachment.get("content")
        _require(isinstance(card, dict) and card.get("type") == "AdaptiveCard", "content must be an AdaptiveCard")
        _require(isinstance(card.get("version"), str), "an AdaptiveCard has a version")
        elements = card.get("body")
        _require(isinstance(elements, list) and all("type" in e for e in elements), "card body elements need a type")
        for action in card.get("actions", []):
            _require(action.get("type") != "Action.OpenUrl" or isinstance(action.get("url"), str), "OpenUrl needs url")


def check_discord(body: Any, query: dict[str, list[str]]) -> None:
    _require(isinstance(body, dict) and (body.get("content") or body.get("embeds")), "Cannot send an empty message")
    embeds = body.get("embeds", [])
    _require(isinstance(embeds, list) and len(embeds) <= 10, "at most 10 embeds")
    for embed in embeds:
        _require(len(embed.get("title", "")) <= 256, "embed title is at most 256 characters")
        _require(len(embed.get("description", "")) <= 4096, "embed description is at most 4096 characters")
    components = body.get("components")
    if components:
        _require(query.get("with_components") == ["true"], "components need ?with_components=true on a webhook")
        for row in components:
            _require(row.get("type") == 1, "a top-level component is an action row")
            for button in row.get("components", []):
                _require(button.get("type") == 2 and button.get("style") == 5, "only link buttons without an app")
                _require(isinstance(button.get("url"), str) and "custom_id" not in button, "a link button has a url")


CHECKS = {"slack": check_slack, "teams": check_teams, "discord": check_discord}
OK = {"slack": Response(200, body="ok"), "teams": Response(202), "discord": Response(204)}
GONE = {
    "slack": Response(404, body="no_service"),
    "teams": Response(404, body="Webhook not found"),
    "discord": Response(404, body={"message": "Unknown Webhook", "code": 10015}),
}


class ChatPlatforms(StandIn):
    def __init__(self) -> None:
        super().__init__()
        self._hooks: dict[str, str] = {}  # path -> platform
        self._removed: set[str] = set()
        self._messages: list[ChatMessage] = []

    def webhook(self, platform: str) -> str:
        assert platform in PLATFORMS
        token = secrets.token_hex(12)
        path = {
            "slack": f"/slack/services/T{token[:8].upper()}/B{token[8:16].upper()}/{token}",
            "teams": f"/teams/webhookb2/{token}@{token[:8]}/IncomingWebhook/{token[8:]}",
            "discord": f"/discord/api/webhooks/{int(token[:12], 16)}/{token}",
        }[platform]
        with self._changed:
            self._hooks[path] = platform
        return f"{self.url}{path}"

    def remove(self, url: str) -> None:
        with self._changed:
            self._removed.add(url.removeprefix(self.url))

    def script(self, url: str, *responses: Response) -> None:
        self._queue(url.removeprefix(self.url), responses)

    @property
    def messages(self) -> list[ChatMessage]:
        return self._snapshot(self._messages)

    def route(self, request: Request) -> Response:
        with self._changed:
            platform = self._hooks.get(request.path)
            removed = request.path in self._removed
        if platform is None or request.method != "POST":
            return Response(404, body="not found")
        if removed:
            return GONE[platform]
        return self._answer([request.path], lambda _delay: self._accept(platform, request))

    def _accept(self, platform: str, request: Request) -> Response:
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            return Response(400, body="invalid_payload: Content-Type must be application/json")
        try:
            body = json.loads(request.body)
            CHECKS[platform](body, request.query)
        except (ValueError, AttributeError, TypeError) as error:
            return Response(400, body=f"invalid_payload: {error}")
        except _Refused as error:
            return Response(400, body=f"invalid_blocks: {error}")
        self._record(self._messages, ChatMessage(platform, request.path, body))
        return OK[platform]
