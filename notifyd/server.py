"""Runs the app under uvicorn with WebSocket settings chosen for many idle sockets, secrets kept out of logs."""

from __future__ import annotations

import asyncio
import gc
import socket
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import Message
from uvicorn._types import ASGIReceiveEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from notifyd.app import create_app
from notifyd.core.config import Settings
from notifyd.core.requestid import configure_logging
from notifyd.http.headlimit import head_limited
from notifyd.realtime.hub import Hub
from notifyd.supervisor import inherited_socket

# Inbound WebSocket frames are small JSON commands: anything larger is refused (close 1009).
WS_MAX_MESSAGE_BYTES = 4096


class Inbox:
    """What uvicorn's WebSocket protocol uses of its receive queue (put_nowait, get, empty) for its one reader, the
    app: an asyncio.Queue holds four deques and an Event (~3 KB per socket, idle or not); this a list and, only
    while the app waits, a future."""

    __slots__ = ("messages", "waiter")

    def __init__(self) -> None:
        self.messages: list[ASGIReceiveEvent] = []
        self.waiter: asyncio.Future[None] | None = None

    def put_nowait(self, message: ASGIReceiveEvent) -> None:
        self.messages.append(message)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def empty(self) -> bool:
        return not self.messages

    async def get(self) -> ASGIReceiveEvent:
        while not self.messages:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.messages.pop(0)


class Writable:
    """What the protocol uses of its `writable` asyncio.Event (set by the transport's flow control, awaited before
    each send), holding its waiters' list only while the transport's buffer is full rather than a deque always."""

    __slots__ = ("open", "waiters")

    def __init__(self) -> None:
        self.open = True
        self.waiters: list[asyncio.Future[None]] = []

    def set(self) -> None:
        self.open = True
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self.open = False

    async def wait(self) -> None:
        while not self.open:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with a lighter receive queue and writable flag (Inbox, Writable), and
    letting go of the handshake's request and response once the accepting response is written: uvicorn never
    reads them again, and their headers would otherwise live as long as the socket (measured: ~3 KB of an idle
    socket's ~35 KB)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Writable()  # type: ignore[assignment]

    async def send(self, message: Message) -> None:  # type: ignore[override]
        await super().send(message)  # type: ignore[arg-type]
        if message["type"] == "websocket.accept" and self.handshake_complete:
            del self.request, self.response


def config(settings: Settings, extra_routes: list[BaseRoute] | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings, extra_routes),
        # The app's __call__ returns its coroutine rather than being one (notifyd.app.App), which uvicorn's guess
        # would take for ASGI 2.
        interface="asgi3",
        host=settings.host,
        port=settings.port,
        # httptools with a cap on request heads (why not h11: notifyd/http/headlimit.py).
        http=head_limited(settings.max_header_bytes, settings.max_header_count),
        # Measured (FIELD-NOTES): per-message deflate costs ~70 KB per idle socket.
        ws=WebSocketProtocol,
        ws_per_message_deflate=False,
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        ws_ping_interval=settings.ws_heartbeat_interval,
        ws_ping_timeout=settings.ws_heartbeat_interval,
        log_config=None,
        # The client address behind a proxy, only for the peers FORWARDED_ALLOW_IPS lists: uvicorn would
        # otherwise trust X-Forwarded-For from 127.0.0.1 (and read FORWARDED_ALLOW_IPS its own way).
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=list(settings.forwarded_allow_ips),
        timeout_graceful_shutdown=5,
    )


class Server(uvicorn.Server):
    """uvicorn's server, ending the app's event streams when it shuts down: they never end by themselves, and
    uvicorn would wait out the whole grace period for them."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # The app, pool and hub are up; their objects live as long as the process, so the collector need not
        # walk them again: a full collection at 4,000 sockets took ~400 ms with them.
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        hub: Hub | None = getattr(app.state, "hub", None) if isinstance(app, Starlette) else None
        if hub is not None:
            hub.draining.set()
        await super().shutdown(sockets)


def run(settings: Settings, extra_routes: list[BaseRoute] | None = None) -> bool:
    """Serves until stopped; False if the startup failed (nothing was served)."""
    configure_logging(settings.log_format)
    server = Server(config(settings, extra_routes))
    # Under `serve --workers N` the parent bound the socket; on its own, uvicorn binds host:port.
    shared = inherited_socket()
    server.run(sockets=[shared] if shared is not None else None)
    return server.started
