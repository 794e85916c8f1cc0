"""WS /api/v1/notifications/ws: authentication (a token in the query or a first authenticate message), then the
session of notifyd.realtime.session over the socket, and the close frame that says why it ended.

The endpoint is a plain ASGI app that notifyd.app calls before its HTTP middleware and router: each middleware
and routing layer a WebSocket passes through keeps its coroutine frame alive for as long as the socket is open
(~5 KB per idle socket with Starlette's). Of what that middleware does, only two things apply to a WebSocket,
and the endpoint does both itself: the Origin check, and the request id (X-Request-ID, answered in the
handshake and carried by the session's log lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from notifyd.core.requestid import HEADER, REQUEST_ID, scope_request_id
from notifyd.http.hygiene import origin_refused
from notifyd.realtime.hub import Hub
from notifyd.realtime.session import (
    BAD_AFTER,
    CLOSE_AUTH_FAILED,
    CLOSE_TOO_MANY_SESSIONS,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_WAIT,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_SESSIONS,
    Closed,
    RateLimit,
    Session,
    authenticate_token,
    dumps,
    error_frame,
    parse_after,
    parse_message,
)

log = logging.getLogger("notifyd.realtime")

PATH = "/api/v1/notifications/ws"
AUTH_TIMEOUT = 5.0


async def _first_token(ws: WebSocket, rate: RateLimit) -> Any:
    """The token of the query string, or of the first authenticate message within AUTH_TIMEOUT."""
    if "token" in ws.query_params:
        return ws.query_params["token"]
    deadline = time.monotonic() + AUTH_TIMEOUT
    while True:
        try:
            message = await asyncio.wait_for(ws.receive(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise Closed(CLOSE_AUTH_FAILED, error_frame("AUTH_FAILED", "no authentication within 5 s")) from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if not rate.allow():
            await ws.send_text(error_frame("RATE_LIMITED", "authenticate first"))
            continue
        command = parse_message(message.get("text"))
        if command is not None and command.get("type") == "authenticate":
            return command.get("token")
        await ws.send_text(error_frame("INVALID_MESSAGE", "authenticate first"))


async def _close(ws: WebSocket, closed: Closed) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_WAIT):
            if closed.last is not None:
                await ws.send_text(closed.last)
            await ws.close(closed.code, closed.reason)


async def websocket_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app of PATH; scope["app"] is notifyd's application."""
    hub: Hub = scope["app"].state.hub
    if await origin_refused(scope, receive, send, hub.settings):
        return
    request_id = scope_request_id(scope)
    REQUEST_ID.set(request_id)  # this task's context is the session's: its log lines carry the id
    ws = WebSocket(scope, receive, send)
    metrics = hub.metrics
    await ws.accept(headers=[(HEADER.encode(), request_id.encode())])
    if hub.open_connections >= hub.settings.ws_max_connections:
        await _close(ws, Closed(CLOSE_TRY_AGAIN_LATER))
        return
    hub.open_connections += 1
    metrics.open_sockets.inc()
    session: Session | None = None
    rate = RateLimit()
    try:
        caller = authenticate_token(await _first_token(ws, rate), hub)
        session = Session(hub, caller, compact=ws.query_params.get("compact") == "1")
        after = ws.query_params.get("after")
        # Registered before reading anything, so no change falls between read and live.
        if not hub.admit(session):
            refusal = TOO_MANY_SESSIONS.format(limit=hub.settings.ws_max_connections_per_user)
            raise Closed(CLOSE_TOO_MANY_SESSIONS, error_frame(TOO_MANY_CONNECTIONS, refusal), refusal)
        session.schedule_expiry(caller)
        session.push("authenticated", dumps({"type": "authenticated", "user_id": str(session.user_id)}))
        resume_after = parse_after(after) if after is not None else None
        if after is not None and resume_after is None:
            session.push("error", error_frame("INVALID_MESSAGE", BAD_AFTER))
        session.start_writing(lambda _kind, text: ws.send_text(text))
        # The commands run in this task, not in one of their own (a task, its context and its coroutine are
        # ~1 KB per idle socket): a kill or an end from elsewhere cancels it, and `killed` says why.
        this = asyncio.current_task()
        assert this is not None
        session.runner = this
        try:
            await session.run(ws, resume_after, rate)
        except asyncio.CancelledError:
            if not session.killed.done():
                raise  # not the session's end: the server's
            this.uncancel()
        except (Closed, WebSocketDisconnect):
            session.end()  # stop taking events at once; the close may wait for the client
            raise
        except Exception as failure:  # a failed command ends the session, as a failed write does
            log.error("WebSocket session failed: %r", failure)
            session.end()
        finally:
            session.runner = None
        closed = session.killed.result() if session.killed.done() else None
        if closed is not None:
            raise closed
        error = session.write_error
        if isinstance(error, Closed):
            raise error
        if error is not None and not isinstance(error, WebSocketDisconnect | OSError):
            log.error("WebSocket session failed: %r", error)
    except Closed as closed:
        writing = session.stop_writing() if session is not None else None
        if writing is not None:
            await asyncio.wait([writing])  # its send must not interleave with the close
        await _close(ws, closed)
    except WebSocketDisconnect:
        pass
    finally:
        if session is not None:
            session.stop_writing()
            if session.expiry is not None:
                session.expiry.cancel()
            hub.unregister(session)
        hub.open_connections -= 1
        metrics.open_sockets.dec()
