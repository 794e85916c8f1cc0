"""A real-time session: resume, live events, mark_read, ack and limits, over the WebSocket of
notifyd.realtime.websocket or the Server-Sent Events of notifyd.realtime.sse.

Each session has one bounded outbound queue drained by one writer task, so the hub never waits
on a client: a session whose queue is full is closed (1013) and the client resumes by seq. Idle
sessions are the many, so an idle one holds little: the queue is a plain deque (an asyncio.Queue,
four deques and an Event, costs ~3 KB more), the writer task exists only while the queue has
events (~1 KB), and the WebSocket endpoint runs the client's commands in its own task (a second task
cost ~1 KB and 12 tracked objects more per idle socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from starlette.websockets import WebSocket, WebSocketDisconnect

from notifyd.core.auth import AuthError, Caller, decode_token
from notifyd.core.models import MAX_SEEN_IDS
from notifyd.db.pool import as_caller, as_worker
from notifyd.db.queries import query
from notifyd.realtime.hub import Hub

CLOSE_AUTH_FAILED = 4001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN_LATER = 1013  # server full, or client too slow
# The user already has WS_MAX_CONNECTIONS_PER_USER sessions open in this process: the new one is refused.
CLOSE_TOO_MANY_SESSIONS = 4008
TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"  # the error code of that refusal (WebSocket and SSE alike)
TOO_MANY_SESSIONS = "at most {limit} open sockets and streams per user (WS_MAX_CONNECTIONS_PER_USER)"

# seq is a PostgreSQL bigint: a number outside 0..SEQ_MAX names no notification (and asyncpg cannot send it).
SEQ_MAX = 2**63 - 1
_SEQ_DIGITS = re.compile(r"[0-9]{1,19}")
BAD_AFTER = f"after must be a seq (0 to {SEQ_MAX}) or a notification id"
# Room for a mark-all-read of ~1,000 unread (a notification and a read event each); a reader
# further behind than that is closed (1013) and resumes by seq.
SEND_QUEUE_LIMIT = 2048
RESUME_PAGE = 500
# Token bucket: RATE_PER_SECOND sustained, RATE_BURST at once; beyond that a message is refused
# (RATE_LIMITED). Refusals leak away at the same rate; FLOOD_STRIKES of them outstanding means
# the client ignores the errors, and it is closed (1008).
RATE_PER_SECOND = 10.0
RATE_BURST = 10.0
FLOOD_STRIKES = 30.0
# A client that stops reading still gets its close frame once it drains; a socket that has not
# taken it within this long is dropped (a reading client takes it in milliseconds).
CLOSE_WAIT = 5.0
# The commands that change one notification's inbox state, and the answer each gets.
STATE_ANSWERS = {"archive": "archived", "unarchive": "unarchived", "snooze": "snoozed"}
BAD_IDS = f"notification_ids must be a list of at most {MAX_SEEN_IDS} notification ids, or absent for all"
BAD_UNTIL = "until must be an ISO 8601 time with a time zone offset"


def dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))


def error_frame(code: str, message: str) -> str:
    return dumps({"type": "error", "code": code, "message": message})


class Closed(Exception):
    """Ends the session with a close code, after an optional last message."""

    def __init__(self, code: int, last: str | None = None, reason: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.last = last
        self.reason = reason


class RateLimit:
    __slots__ = ("at", "strikes", "tokens")

    def __init__(self) -> None:
        self.tokens = RATE_BURST
        self.strikes = 0.0
        self.at = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        elapsed, self.at = now - self.at, now
        self.tokens = min(RATE_BURST, self.tokens + elapsed * RATE_PER_SECOND)
        self.strikes = max(0.0, self.strikes - elapsed * RATE_PER_SECOND)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.strikes += 1
        if self.strikes > FLOOD_STRIKES:
            raise Closed(CLOSE_POLICY)
        return False


class Outbox(ABC):
    """A stream's bounded outbound queue and the writer task that drains it, in order, through whatever transport
    the endpoint gives, until the stream is killed (with a close to send) or ended. A user's Session is one; so is
    an admin's activity stream (notifyd/realtime/admin.py)."""

    # No __dict__: one object fewer per session for the collector to walk (see notifyd/realtime/collector.py).
    __slots__ = ("_drained", "_send", "caller", "expiry", "hub", "killed", "queue", "runner", "write_error", "writing")

    def __init__(self, hub: Hub, caller: Caller) -> None:
        self.hub = hub
        self.caller = caller
        # (kind, text, committed) to send, at most SEND_QUEUE_LIMIT; the deque (~0.7 KB even empty) exists only
        # while it holds events, the future only while a resume waits for room. committed: when (time.monotonic)
        # the live notification of the frame was committed, for notifyd_commit_to_socket_seconds; else None.
        self.queue: deque[tuple[str, str, float | None]] | None = None
        self._drained: asyncio.Future[None] | None = None  # a resume waits for room
        self._send: Callable[[str, str], Awaitable[None]] | None = None
        # The task sending the queue, while it has events; why it failed, if it did (the endpoint logs it).
        self.writing: asyncio.Task[None] | None = None
        self.write_error: BaseException | None = None
        # The session's end: the close to send, or None when one of its tasks ended it.
        self.killed: asyncio.Future[Closed | None] = asyncio.get_running_loop().create_future()
        # The task running the client's commands when it waits on the client rather than on `killed` (the
        # WebSocket endpoint's own): cancelled when the session is killed or ended from elsewhere.
        self.runner: asyncio.Task[Any] | None = None
        self.expiry: asyncio.TimerHandle | None = None

    @abstractmethod
    def leave(self) -> None:
        """Takes the stream out of the hub: nothing is offered to it any more."""

    @abstractmethod
    async def resume(self, after: str | int | None) -> None:
        """What the client missed since `after` (without it, nothing before now), then live events."""

    def push(self, kind: str, text: str, committed: float | None = None) -> None:
        if self.queue is None:
            self.queue = deque()
        elif len(self.queue) >= SEND_QUEUE_LIMIT:
            self.kill(Closed(CLOSE_TRY_AGAIN_LATER), slow=True)
            return
        self.queue.append((kind, text, committed))
        self._write()

    def kill(self, closed: Closed, *, slow: bool = False) -> None:
        if not self.killed.done():
            if slow:
                self.hub.metrics.slow_clients_closed.inc()
            # Stop taking events at once; the close itself may wait for the client.
            self.leave()
            self.killed.set_result(closed)
            self._stop_runner()

    def end(self, _task: object = None) -> None:
        """Ends the session without a close of its own (a done callback of its tasks)."""
        if not self.killed.done():
            self.leave()
            self.killed.set_result(None)
            self._stop_runner()

    def _stop_runner(self) -> None:
        # From the runner itself (a command's answer found the queue full) there is nothing to interrupt:
        # run() looks at `killed` before it waits for the next command.
        if self.runner is not None and self.runner is not asyncio.current_task():
            self.runner.cancel()

    def schedule_expiry(self, caller: Caller) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        if caller.expires_at is not None:
            delay = max(0.0, caller.expires_at - time.time())
            self.expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self.kill(Closed(CLOSE_AUTH_FAILED, error_frame("AUTH_FAILED", "token expired")))

    def start_writing(self, send: Callable[[str, str], Awaitable[None]]) -> None:
        """From now on the queue goes out in order through send(kind, text), text being the WebSocket message."""
        self._send = send
        self._write()

    def stop_writing(self) -> asyncio.Task[None] | None:
        """Sends nothing more; returns the writer task, cancelled, to await before a last message."""
        self._send = None
        if self.writing is not None:
            self.writing.cancel()
        return self.writing

    def _write(self) -> None:
        if self.writing is None and self._send is not None and self.queue:
            self.writing = asyncio.create_task(self._drain(self._send))
            self.writing.add_done_callback(self._written)

    async def _drain(self, send: Callable[[str, str], Awaitable[None]]) -> None:
        metrics = self.hub.metrics
        while self.queue:
            kind, text, committed = self.queue.popleft()
            _wake(self._drained)
            await send(kind, text)
            metrics.events_sent.labels(kind).inc()
            if committed is not None:
                metrics.commit_to_socket.observe(time.monotonic() - committed)
        self.queue = None

    def _written(self, task: asyncio.Task[None]) -> None:
        self.writing = None
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.write_error = error
            self.end()
        else:
            self._write()  # what was pushed between its last check and its end


class Session(Outbox):
    """One authenticated user's event stream: the hub calls offer(), the writer task sends it over
    whatever transport the endpoint gives (a WebSocket, or Server-Sent Events in notifyd/realtime/sse.py)."""

    __slots__ = ("answered_reads", "compact", "delivered_seq", "pending", "resumed_from", "sent_seq", "user_id")

    def __init__(self, hub: Hub, caller: Caller, *, compact: bool = False) -> None:
        assert caller.user_id is not None
        super().__init__(hub, caller)
        self.user_id: uuid.UUID = caller.user_id
        self.compact = compact
        # The client holds every change with a seq in (resumed_from, sent_seq]: this connection sent it, or it
        # was before the `after` the client resumed from. None until the first resume (nothing sent yet).
        # Per user, seqs follow commit order and the hub misses no commit, so live events from a resume on are
        # gap-free: one range says it all, however many events went out.
        self.resumed_from: int | None = None
        self.sent_seq = 0
        # The hub offers a read_status_updated right after its notification: sent only if that was.
        self.delivered_seq: int | None = None
        # While resuming, live events wait here and are filtered by seq afterwards.
        self.pending: list[tuple[str, int | None, str, str | None, float | None]] | None = []
        # mark_read answers directly; the hub's copy of that answer is dropped once. Made at the first mark_read.
        self.answered_reads: set[str] | None = None

    def leave(self) -> None:
        self.hub.unregister(self)

    # -- called by the hub (never blocks) -------------------------------------------------

    def offer(
        self,
        kind: str,
        seq: int | None,
        text: str,
        notification_id: str | None = None,
        committed: float | None = None,
    ) -> None:
        if self.pending is not None:
            if len(self.pending) >= SEND_QUEUE_LIMIT:
                self.kill(Closed(CLOSE_TRY_AGAIN_LATER), slow=True)
            else:
                self.pending.append((kind, seq, text, notification_id, committed))
            return
        self._deliver(kind, seq, text, notification_id, committed)

    def _deliver(
        self, kind: str, seq: int | None, text: str, notification_id: str | None, committed: float | None
    ) -> None:
        if kind == "read_status_updated" and self.answered_reads and notification_id in self.answered_reads:
            self.answered_reads.discard(notification_id)
            return
        if kind == "notification" and seq is not None:
            if seq <= self.sent_seq:
                self.delivered_seq = None
                return
            self.sent_seq = self.delivered_seq = seq
        elif kind == "read_status_updated" and seq != self.delivered_seq:
            # Its notification was a duplicate, so the client knows this read already.
            return
        self.push(kind, text, committed)

    # -- the session ----------------------------------------------------------------------

    async def resume(self, after: str | int | None) -> None:
        """Everything since `after` in seq order that this connection has not sent (or nothing before now, on a
        first resume without it), then `resumed`, then live."""
        self.pending = self.pending if self.pending is not None else []
        async with as_caller(self.hub.pool, self.caller) as conn:
            current_max = int(await conn.fetchval(query("ws_max_seq")))
            start: int | None = None
            if isinstance(after, int):
                start = after
            elif isinstance(after, str):
                found = await conn.fetchval(query("ws_seq_of"), uuid.UUID(after))
                if found is None:
                    self.push("error", error_frame("NOT_FOUND", "no such notification to resume after"))
                else:
                    start = int(found)
        if start is None:
            if self.resumed_from is None:  # a first resume without a point: live from now on
                self.resumed_from = self.sent_seq = current_max
        else:
            await self._replay(start, current_max)
        pending, self.pending = self.pending, None
        for kind, seq, text, notification_id, committed in pending:
            self._deliver(kind, seq, text, notification_id, committed)
        await self.send_unread_count()

    async def _replay(self, start: int, current_max: int) -> None:
        """The changes after seq `start` but those in (resumed_from, sent_seq], which this connection already sent.

        Live events keep coming into `pending` meanwhile; whatever the replay reaches is dropped from them.
        """
        # A point beyond the newest seq is the newest: what commits from now on is the client's.
        start = min(start, current_max)
        if self.resumed_from is None:
            ranges: list[tuple[int, int | None]] = [(start, None)]
        else:
            # Below the range sent: what the client missed before this connection; above it: what is newer.
            below = [(start, self.resumed_from)] if start < self.resumed_from else []
            ranges = [*below, (max(start, self.sent_seq), None)]
        sent = 0
        reached = start
        for low, high in ranges:
            position = low
            while True:
                async with as_caller(self.hub.pool, self.caller) as conn:
                    page = await conn.fetch(query("ws_resume_page"), position, high, RESUME_PAGE)
                for row in page:
                    # A resume may be larger than the queue: it waits for the client.
                    while len(self.queue or ()) >= SEND_QUEUE_LIMIT:
                        self._drained = asyncio.get_running_loop().create_future()
                        await self._drained
                    self.push("notification", dumps({"type": "notification", "data": row["data"]}))
                    position = int(row["seq"])
                sent += len(page)
                if len(page) < RESUME_PAGE:
                    break
            reached = max(reached, position)
        # The range grows down to `start` (sent now, or the client's own) and up to the newest sent.
        self.resumed_from = start if self.resumed_from is None else min(self.resumed_from, start)
        self.sent_seq = max(self.sent_seq, reached)
        self.push("resumed", dumps({"type": "resumed", "count": sent}))

    async def send_unread_count(self) -> None:
        """The badge (seen_updated: the seen watermark, the unseen count), then the unread count. A user who never
        marked anything seen gets no seen_updated: every unread notification of theirs is unseen."""
        async with as_caller(self.hub.pool, self.caller) as conn:
            seen = await conn.fetchval(query("ws_resume_seen_state"))
            counts = await conn.fetchval(query("ws_unread_count"))
        if seen is not None:
            self.push("seen_updated", dumps({"type": "seen_updated", **seen}))
        self.push("unread_count", dumps({"type": "unread_count", **counts}))

    async def mark_seen(self, notification_ids: Any) -> None:
        """Marks the given notifications seen (none given: all the inbox shows); answers with the badge. The other
        sessions get the hub's seen_updated."""
        try:
            ids = seen_ids(notification_ids)
        except ValueError:
            self.push("error", error_frame("INVALID_MESSAGE", BAD_IDS))
            return
        async with as_caller(self.hub.pool, self.caller) as conn:
            await conn.fetchval(query("ws_mark_seen"), ids)
            seen = await conn.fetchval(query("ws_seen_state"))
        self.push("seen_updated", dumps({"type": "seen_updated", **seen}))

    async def change_state(self, kind: str, notification_id: Any, until: Any = None) -> None:
        """archive, unarchive or snooze one notification; answers archived, unarchived or snoozed. The other
        sessions get the changed notification (a new seq) from the hub."""
        try:
            target = uuid.UUID(str(notification_id))
        except ValueError:
            self.push("error", error_frame("INVALID_MESSAGE", "notification_id must be a uuid"))
            return
        event: dict[str, Any] = {"type": STATE_ANSWERS[kind], "notification_id": str(target)}
        if kind == "snooze":
            wake = _instant(until)
            if wake is None:
                self.push("error", error_frame("INVALID_MESSAGE", BAD_UNTIL))
                return
        try:
            async with as_caller(self.hub.pool, self.caller) as conn:
                if kind == "archive":
                    event["archived_at"] = await conn.fetchval(query("ws_archive"), target)
                elif kind == "unarchive":
                    await conn.fetchval(query("ws_unarchive"), target)
                else:
                    event["snoozed_until"] = await conn.fetchval(query("ws_snooze"), target, wake)
        except asyncpg.NoDataFoundError:
            self.push("error", error_frame("NOT_FOUND", "notification not found"))
            return
        except asyncpg.InvalidParameterValueError as error:
            self.push("error", error_frame("INVALID_MESSAGE", error.message))
            return
        self.push(event["type"], dumps(event))

    async def mark_read(self, notification_id: Any) -> None:
        try:
            target = uuid.UUID(str(notification_id))
        except ValueError:
            self.push("error", error_frame("INVALID_MESSAGE", "notification_id must be a uuid"))
            return
        async with as_caller(self.hub.pool, self.caller) as conn:
            read_at = await conn.fetchval(query("ws_mark_read"), target)
            counts = await conn.fetchval(query("ws_unread_count")) if read_at is not None else None
        if read_at is None or counts is None:
            self.push("error", error_frame("NOT_FOUND", "notification not found"))
            return
        if self.answered_reads is None:
            self.answered_reads = set()
        self.answered_reads.add(str(target))
        event = {
            "type": "read_status_updated",
            "notification_id": str(target),
            "read_at": read_at.isoformat(),
            "unread_count": counts["count"],
        }
        self.push("read_status_updated", dumps(event))

    async def ack(self, notification_id: Any) -> None:
        """The client got this notification: its in-app delivery is 'delivered', once; no answer when it worked."""
        try:
            target = uuid.UUID(str(notification_id))
        except ValueError:
            self.push("error", error_frame("INVALID_MESSAGE", "notification_id must be a uuid"))
            return
        # As notify_worker with the session's own user: an ack of someone else's notification finds nothing.
        async with as_worker(self.hub.pool) as conn:
            recorded = await conn.fetchval(query("ws_ack"), target, self.user_id)
        if recorded is None:
            self.push("error", error_frame("NOT_FOUND", "notification not found"))

    async def run(self, ws: WebSocket, after: str | int | None, rate: RateLimit) -> None:
        """The initial resume (or baseline), then the client's commands, until the session is killed or ended; one
        task, so they never overlap."""
        await self.resume(after)
        while not self.killed.done():
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if not rate.allow():
                self.push("error", error_frame("RATE_LIMITED", f"at most {RATE_PER_SECOND:g} messages per second"))
                continue
            command = parse_message(message.get("text"))
            kind = command.get("type") if command is not None else None
            if kind == "ping":
                self.push("pong", dumps({"type": "pong", "timestamp": datetime.now(UTC).isoformat()}))
            elif kind == "mark_read" and command is not None:
                await self.mark_read(command.get("notification_id"))
            elif kind == "ack" and command is not None:
                await self.ack(command.get("notification_id"))
            elif kind == "mark_seen" and command is not None:
                await self.mark_seen(command.get("notification_ids"))
            elif kind in STATE_ANSWERS and command is not None:
                await self.change_state(kind, command.get("notification_id"), command.get("until"))
            elif kind == "resume" and command is not None:
                after = parse_after(command.get("after"))
                if after is None:
                    self.push("error", error_frame("INVALID_MESSAGE", BAD_AFTER))
                else:
                    await self.resume(after)
            elif kind == "authenticate" and command is not None:
                # A fresh token extends the session; another user's token ends it.
                caller = authenticate_token(command.get("token"), self.hub)
                if caller.user_id != self.user_id:
                    raise Closed(CLOSE_AUTH_FAILED, error_frame("AUTH_FAILED", "token is for another user"))
                self.caller = caller
                self.schedule_expiry(caller)
                self.push("authenticated", dumps({"type": "authenticated", "user_id": str(self.user_id)}))
            else:
                self.push("error", error_frame("INVALID_MESSAGE", "expected JSON with a known type"))


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def seen_ids(value: Any) -> list[uuid.UUID] | None:
    """mark_seen's ids: absent or null is None (all the inbox shows); else a list of at most MAX_SEEN_IDS uuids.

    Raises ValueError for anything else."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_SEEN_IDS or not all(isinstance(v, str) for v in value):
        raise ValueError(BAD_IDS)
    return [uuid.UUID(v) for v in value]


def _instant(value: Any) -> datetime | None:
    """An ISO 8601 time with its offset (a snooze's end); None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def parse_message(text: Any) -> dict[str, Any] | None:
    """A client message: a JSON object (NaN and Infinity are not JSON); None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        return None
    return value if isinstance(value, dict) else None


def parse_seq(value: Any) -> int | None:
    """A seq: a JSON integer, or ASCII digits (a query string, Last-Event-ID), within 0..SEQ_MAX; else None."""
    if isinstance(value, str) and _SEQ_DIGITS.fullmatch(value):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= SEQ_MAX:
        return value
    return None


def parse_after(value: Any) -> int | str | None:
    """A seq or a notification uuid; None if neither (a float, a bool, a number out of range, ...)."""
    seq = parse_seq(value)
    if seq is not None:
        return seq
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return str(uuid.UUID(value))
    return None


def authenticate_token(token: Any, hub: Hub) -> Caller:
    if not isinstance(token, str) or not token:
        raise Closed(CLOSE_AUTH_FAILED, error_frame("AUTH_FAILED", "a token is required"))
    try:
        caller = decode_token(token, hub.settings)
    except AuthError as error:
        raise Closed(CLOSE_AUTH_FAILED, error_frame("AUTH_FAILED", error.message)) from None
    if caller.role != "authenticated" or caller.user_id is None:
        raise Closed(CLOSE_AUTH_FAILED, error_frame("AUTH_FAILED", "only end-user tokens may open a WebSocket"))
    return caller
