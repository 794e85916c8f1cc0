"""GET /api/v1/notifications/stream: the WebSocket's events and resume as Server-Sent Events; and
GET /api/v1/admin/activity/stream: an admin's live activity (notifyd/realtime/admin.py).

A user's stream is a notifyd.realtime.session.Session like a WebSocket's: registered with the same LISTEN hub, resumed
by the same seq query, with the same bounded queue (a client too slow for it is disconnected and resumes by
Last-Event-ID). Only the framing differs, and the client sends nothing: marking read goes through REST. An admin's
stream is run the same way, with its own reads and its own event ids (PostgreSQL snapshots).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field
from starlette import status
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from notifyd.core.auth import Caller, decode_token
from notifyd.core.models import Channel, Priority, TypeName
from notifyd.db.pool import as_caller
from notifyd.db.queries import query
from notifyd.http.errors import CODES, ApiError, error_response
from notifyd.http.openapi import Endpoint
from notifyd.http.shared import ADMINS_ONLY, USERS_ONLY, authenticate
from notifyd.realtime.admin import CHECKPOINT, ActivityFilter, AdminStream
from notifyd.realtime.hub import MAX_WATCHERS, Hub
from notifyd.realtime.session import (
    BAD_AFTER,
    CLOSE_WAIT,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_SESSIONS,
    Outbox,
    Session,
    parse_after,
)

log = logging.getLogger("notifyd.sse")

PATH = "/api/v1/notifications/stream"
ADMIN_PATH = "/api/v1/admin/activity/stream"
# EventSource reconnects after this many milliseconds, sending the last id it saw as Last-Event-ID.
RETRY_MS = 3000
SERVER_FULL = "too many open streams; retry later"
SERVER_FULL_HEADERS = {"Retry-After": "5"}
WATCHERS_FULL = f"this process has {MAX_WATCHERS} admin activity streams open; retry later"
# An admin stream's event id: a PostgreSQL snapshot as text (xmin:xmax:xip,...), which PostgreSQL checks further.
_SNAPSHOT = re.compile(r"[0-9]{1,20}:[0-9]{1,20}:(?:[0-9]{1,20}(?:,[0-9]{1,20})*)?")
MAX_SNAPSHOT_LENGTH = 8192
BAD_RESUME = "after (or Last-Event-ID) must be an event id of this stream (a PostgreSQL snapshot such as 1234:1240:)"
# A slot of the user's frees only when one of their own streams or sockets ends (a dead one within a heartbeat).
USER_FULL_HEADERS = {"Retry-After": "30"}
# no-store: never cached; X-Accel-Buffering: nginx must pass each event on at once.
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
# The session's queue takes a "ping" like any event, so the heartbeat never overtakes one being written.
PING = "ping"


class StreamQuery(BaseModel):
    token: str | None = Field(None, description="the user JWT, for EventSource, which cannot set headers")
    after: str | None = Field(
        None, description="resume after this seq or notification id (the Last-Event-ID header wins)"
    )
    compact: bool = Field(
        False,
        description="1: a notification event's data is the WebSocket message, with the user's unread count; "
        "no unread_count event follows it unless a notification was read or deleted",
    )


class AdminStreamQuery(BaseModel):
    # A delivery's status and a time range are the client's to apply: one changes as it goes, the other is past.
    model_config = ConfigDict(extra="forbid")

    token: str | None = Field(None, description="an admin JWT, for EventSource, which cannot set headers")
    after: str | None = Field(
        None, description="resume after this event id (the Last-Event-ID header wins); without it: from now"
    )
    user_id: uuid.UUID | None = None
    type: TypeName | None = None
    priority: Priority | None = None
    channel: Channel | None = Field(None, description="only notifications with a delivery on this channel")


def frame(kind: str, text: str, *, compact: bool = False) -> bytes:
    """One SSE event from a WebSocket message: a notification's data is its `data` (compact: the whole message,
    which carries the unread count too), with id = its seq."""
    if kind == PING:
        return b": ping\n\n"
    if kind == "notification":
        data = json.loads(text)["data"]
        if not compact:
            text = json.dumps(data, separators=(",", ":"))
        return f"event: notification\nid: {data['seq']}\ndata: {text}\n\n".encode()
    return plain_frame(kind, text)


def plain_frame(kind: str, text: str) -> bytes:
    # Compact JSON has no newlines, so one data line carries it whole.
    return f"event: {kind}\ndata: {text}\n\n".encode()


def admin_frame(kind: str, text: str) -> bytes:
    """An admin stream's event; a checkpoint is an id alone (EventSource keeps it as its Last-Event-ID)."""
    if kind == PING:
        return b": ping\n\n"
    if kind == CHECKPOINT:
        return f"id: {text}\n\n".encode()
    return plain_frame(kind, text)


async def _resume_then_ping(session: Outbox, after: int | str | None, interval: float) -> None:
    await session.resume(after)
    while True:
        await asyncio.sleep(interval)
        session.push(PING, "")


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStream(StreamingResponse):
    """Runs one user's session until the client leaves, the token expires or the client falls too far behind."""

    media_type = "text/event-stream"

    def __init__(self, hub: Hub, caller: Caller, after: int | str | None, *, compact: bool = False) -> None:
        super().__init__(content=iter(()), headers=HEADERS)
        self.hub, self.caller, self.after, self.compact = hub, caller, after, compact

    def admit(self) -> Outbox | Response:
        """The session, registered with the hub; or the refusal to answer instead."""
        hub = self.hub
        session = Session(hub, self.caller, compact=self.compact)
        if hub.admit(session):
            return session
        refusal = TOO_MANY_SESSIONS.format(limit=hub.settings.ws_max_connections_per_user)
        return error_response(status.HTTP_429_TOO_MANY_REQUESTS, TOO_MANY_CONNECTIONS, refusal, USER_FULL_HEADERS)

    def frame(self, kind: str, text: str) -> bytes:
        return frame(kind, text, compact=self.compact)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub

        async def body(chunk: bytes) -> None:
            message: Message = {"type": "http.response.body", "body": chunk, "more_body": True}
            await send(message)

        async def event(kind: str, text: str) -> None:
            await body(self.frame(kind, text))

        # Admitted before the resume reads anything, so no change falls between read and live; checked here,
        # with no await between the count and the registration, so two streams opened at once cannot both pass.
        session = self.admit()
        if isinstance(session, Response):
            await session(scope, receive, send)
            return
        hub.open_connections += 1
        tasks: list[asyncio.Task[Any]] = []
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await body(f"retry: {RETRY_MS}\n\n".encode())
            session.schedule_expiry(self.caller)
            session.start_writing(event)
            tasks = [
                asyncio.create_task(_resume_then_ping(session, self.after, hub.settings.ws_heartbeat_interval)),
                asyncio.create_task(_disconnected(receive)),
                asyncio.create_task(hub.draining.wait()),
            ]
            done, _ = await asyncio.wait([*tasks, session.killed], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            writing = session.stop_writing()
            # The writer must have stopped before the last event goes out on the same connection.
            await asyncio.gather(*tasks, *([writing] if writing is not None else []), return_exceptions=True)
            for error in [*(task.exception() for task in tasks if task in done), session.write_error]:
                if error is not None and not isinstance(error, OSError):
                    log.error("event stream failed: %r", error)
        finally:
            for task in tasks:
                task.cancel()
            session.stop_writing()
            if session.expiry is not None:
                session.expiry.cancel()
            session.leave()
            hub.open_connections -= 1
        closed = session.killed.result() if session.killed.done() else None
        # A client that stopped reading (too slow) gets its end once it drains; do not wait forever.
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT):
                if closed is not None and closed.last is not None:
                    await event("error", closed.last)
                await send({"type": "http.response.body", "body": b"", "more_body": False})


class AdminEventStream(EventStream):
    """Runs one admin's activity stream (notifyd/realtime/admin.py) as EventStream runs a user's session."""

    def __init__(self, hub: Hub, caller: Caller, activity_filter: ActivityFilter, start: str) -> None:
        super().__init__(hub, caller, None)
        self.filter, self.start = activity_filter, start

    def admit(self) -> Outbox | Response:
        watcher = AdminStream(self.hub, self.caller, self.filter, self.start)
        if self.hub.watch(watcher):
            return watcher
        return error_response(status.HTTP_503_SERVICE_UNAVAILABLE, CODES[503], WATCHERS_FULL, SERVER_FULL_HEADERS)

    def frame(self, kind: str, text: str) -> bytes:
        return admin_frame(kind, text)


async def stream_caller(request: Request, role: str, refusal: str) -> Caller:
    """The caller of the Authorization header, or of ?token= (EventSource cannot set headers); 403 unless `role`.

    Credentials first: a request without them is a 401 whatever else its query holds."""
    token = request.query_params.get("token")
    if token is not None and "authorization" not in request.headers:
        caller = decode_token(token, request.app.state.settings)
    else:
        caller = await authenticate(request)
    if caller.role != role:
        raise ApiError(status.HTTP_403_FORBIDDEN, refusal)
    return caller


def room(hub: Hub) -> None:
    """503 when the process has WS_MAX_CONNECTIONS sockets and streams open."""
    if hub.open_connections >= hub.settings.ws_max_connections:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, SERVER_FULL, headers=SERVER_FULL_HEADERS)


async def stream(request: Request) -> Response:
    caller = await stream_caller(request, "authenticated", USERS_ONLY)
    params = StreamQuery.model_validate(dict(request.query_params))
    raw_after = request.headers.get("last-event-id") or params.after
    after = parse_after(raw_after) if raw_after else None
    if raw_after and after is None:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, BAD_AFTER)
    hub: Hub = request.app.state.hub
    room(hub)
    return EventStream(hub, caller, after, compact=params.compact)


async def admin_stream(request: Request) -> Response:
    caller = await stream_caller(request, "admin", ADMINS_ONLY)
    params = AdminStreamQuery.model_validate(dict(request.query_params))
    after = request.headers.get("last-event-id") or params.after
    if after and (len(after) > MAX_SNAPSHOT_LENGTH or not _SNAPSHOT.fullmatch(after)):
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, BAD_RESUME)
    hub: Hub = request.app.state.hub
    room(hub)
    try:
        async with as_caller(request.app.state.pool, caller) as conn:
            start = await conn.fetchval(query("admin_stream_start"), after or None)
    except asyncpg.DataError:  # the digits make no snapshot (xmin after xmax, an xip outside them, ...)
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, BAD_RESUME) from None
    activity_filter = ActivityFilter(params.user_id, params.type, params.priority, params.channel)
    return AdminEventStream(hub, caller, activity_filter, start)


ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", PATH, stream,
             "Server-Sent Events: the WebSocket's notification, unread_count, read_status_updated and seen_updated "
             "events; "
             "resume by Last-Event-ID (a seq) or ?after=", "user", ok_media_type="text/event-stream",
             query_model=StreamQuery, headers=(("Last-Event-ID", "resume after this seq (sent by EventSource)"),),
             errors=(status.HTTP_429_TOO_MANY_REQUESTS,)),
    Endpoint("GET", ADMIN_PATH, admin_stream,
             "Server-Sent Events: the console's activity rows as notifications are made and change, and as their "
             "deliveries move (admins; an org admin sees their org); resume by Last-Event-ID or ?after=", "user",
             ok_media_type="text/event-stream", query_model=AdminStreamQuery,
             headers=(("Last-Event-ID", "resume after this event id (sent by EventSource)"),),
             errors=(status.HTTP_403_FORBIDDEN, status.HTTP_503_SERVICE_UNAVAILABLE)),
]  # fmt: skip
