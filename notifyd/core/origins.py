"""Which pages may open notifyd's WebSocket: WS_ALLOWED_ORIGINS, plus notifyd's own origin.

A browser always sends `Origin` with a WebSocket handshake and lets any page open a socket to any host;
the server is the only one that can refuse. Tokens travel in the URL or the first message, never in
cookies, so a foreign page cannot borrow a user's session; the allow-list still keeps other sites'
pages (and their users' tokens, should one leak) off the socket. A client that sends no Origin is not a
browser (a service, a CLI) and is let through: the Origin header is a browser's promise, nothing more.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from notifyd.core.config import Settings


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lowercased, as browsers write it in the Origin header."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower()


def websocket_origin_allowed(settings: Settings, origin: str | None) -> bool:
    """Whether a WebSocket handshake with this Origin header may go on (False: refuse it with 403)."""
    if not settings.ws_allowed_origins or origin is None:
        return True
    allowed = {origin_of(o) for o in settings.ws_allowed_origins} | {origin_of(settings.public_base_url)}
    return origin.strip().lower().rstrip("/") in allowed
