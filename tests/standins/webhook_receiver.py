"""A receiver of Standard Webhooks, as a customer's server runs one: it verifies every request with the library.

`endpoint()` opens a path (``/hooks/<random>``) and returns its URL; `trust(url, secret)` gives it a secret
(a receiver can trust two while a rotation lasts). A POST is verified with ``standardwebhooks.Webhook`` for
each trusted secret, as a receiver does: no secret verifies it (signature, missing headers, a timestamp more
than five minutes off) -> 401, recorded in `rejected`. A verified request -> 204, recorded in `messages`
with the secrets that verified it; a path never opened -> 404.

Scripting: `script(url, Response(500), Response(301, headers={"Location": ...}), ...)`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.standins.http import Request, Response, StandIn


@dataclass(frozen=True)
class WebhookMessage:
    """A request the receiver verified."""

    path: str
    webhook_id: str
    timestamp: str
    signatures: list[str]  # the webhook-signature header split (two during a rotation's overlap)
    verified_by: list[str]  # the trusted secrets whose signature it carries
    json: Any


class WebhookReceiver(StandIn):
    def __init__(self) -> None:
        super().__init__()
        self._secrets: dict[str, list[str]] = {}
        self._messages: list[WebhookMessage] = []
        self._rejected: list[Request] = []

    def endpoint(self) -> str:
        path = f"/hooks/{secrets.token_hex(8)}"
        with self._changed:
            self._secrets[path] = []
        return f"{self.url}{path}"

    def trust(self, url: str, *secrets_: str) -> None:
        """The secrets this endpoint verifies with from now on (replacing the ones before)."""
        with self._changed:
            self._secrets[self._path(url)] = list(secrets_)

    def script(self, url: str, *responses: Response) -> None:
        self._queue(self._path(url), responses)

    @property
    def messages(self) -> list[WebhookMessage]:
        return self._snapshot(self._messages)

    @property
    def rejected(self) -> list[Request]:
        return self._snapshot(self._rejected)

    def _path(self, url: str) -> str:
        return url.removeprefix(self.url)

    def route(self, request: Request) -> Response:
        with self._changed:
            trusted = self._secrets.get(request.path)
        if trusted is None or request.method != "POST":
            return Response(404, body={"error": "no such endpoint"})
        return self._answer([request.path], lambda _delay: self._verify(request, trusted))

    def _verify(self, request: Request, trusted: list[str]) -> Response:
        headers = dict(request.headers.items())
        verified_by = []
        for secret in trusted:
            try:
                Webhook(secret).verify(request.body, headers)
            except WebhookVerificationError:
                continue
            verified_by.append(secret)
        if not verified_by:
            self._record(self._rejected, request)
            return Response(401, body={"error": "signature verification failed"})
        message = WebhookMessage(
            path=request.path,
            webhook_id=request.headers["webhook-id"],
            timestamp=request.headers["webhook-timestamp"],
            signatures=request.headers["webhook-signature"].split(" "),
            verified_by=verified_by,
            json=json.loads(request.body),
        )
        self._record(self._messages, message)
        return Response(204)
