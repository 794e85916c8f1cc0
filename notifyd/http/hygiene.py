"""HTTP hygiene for every route: security headers, a request body limit; and the WebSocket origin check, which
the WebSocket endpoint runs itself (it is served before the middleware: notifyd.realtime.websocket).

Pure ASGI middleware, so that streamed answers (export, SSE) pass through untouched and a body is
refused before it is read.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifyd.core.config import Settings
from notifyd.core.origins import websocket_origin_allowed

# Pages: nothing loads but their own inline style (and images of this origin), nothing frames them, forms
# post back here. A page that needs more (the dev demo) sets its own policy, which is kept.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
EVERY_RESPONSE = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
PAGE_ONLY = {
    "content-security-policy": PAGE_CSP,
    "x-frame-options": "DENY",
}
TOO_LARGE = "the request body is larger than {limit} bytes (MAX_BODY_BYTES)"
ORIGIN_REFUSED = "this origin may not open the WebSocket (WS_ALLOWED_ORIGINS)"


class SecurityHeaders:
    """nosniff and no-referrer on every answer; a CSP with frame-ancestors 'none' on HTML pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                wanted = dict(EVERY_RESPONSE)
                if headers.get("content-type", "").startswith("text/html"):
                    wanted.update(PAGE_ONLY)
                for name, value in wanted.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuses a body over `limit` bytes with 413: by Content-Length before reading, else while it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            await too_large(send, self.limit)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised inside the handler's read: the JSON error handler answers it (errors._http_error).
                    raise HTTPException(413, TOO_LARGE.format(limit=self.limit))
            return message

        await self.app(scope, limited, send)


async def too_large(send: Send, limit: int) -> None:
    body = json.dumps({"error": {"code": "PAYLOAD_TOO_LARGE", "message": TOO_LARGE.format(limit=limit)}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def origin_refused(scope: Scope, receive: Receive, send: Send, settings: Settings) -> bool:
    """True once a WebSocket handshake whose Origin is not allowed has been refused (HTTP 403, before accept)."""
    if websocket_origin_allowed(settings, Headers(scope=scope).get("origin")):
        return False
    await receive()  # websocket.connect
    await send({"type": "websocket.close", "code": 1008, "reason": ORIGIN_REFUSED})
    return True
