"""The LISTEN hub: one dedicated connection wakes one fan-out read for every WebSocket session of this process.

NOTIFY only says "something changed" (its payload is a transaction id); the rows are read from the
table by changed_xid: every row whose transaction the previous read's snapshot did not see (from
that snapshot's xmin on), so a lost NOTIFY, a dropped connection or a restart loses nothing: the
next read catches up. A long transaction holds xmin back, but the rows behind it that the previous
snapshot saw are filtered out in the database, before their JSON is built. The read is not
filtered by the sessions' users (sending thousands of ids per wake-up costs more than the few
changed rows): rows of users without a session here are skipped in Python. Sessions still drop
anything at or below the last seq they were given.

The reads run on a connection of the hub's own that is notify_worker for its whole life: a wake-up costs its
two statements, not a pooled connection's transaction that sets the role and claims first (three more round
trips, each one on the path from commit to socket). The worker's policies need no claims.

Admins' activity streams (notifyd/realtime/admin.py) are not fanned out from that read: each reads for itself, as
its admin, so that RLS and not a filter here keeps an org admin to their org. The hub only wakes them, on the same
NOTIFY or every POLL_INTERVAL (what moves their deliveries sends no NOTIFY), and only while one is open: without an
admin stream a send costs nothing more.

Both connections keep session state (LISTEN; the role), so they go to DATABASE_DIRECT_URL, the primary itself:
through a transaction pooler LISTEN is accepted and then receives nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from typing import Protocol

import asyncpg

from notifyd.core.config import Settings
from notifyd.core.metrics import Metrics
from notifyd.db.queries import query
from notifyd.realtime.collector import Collector

log = logging.getLogger("notifyd.hub")

CHANNEL = "notify_notifications"
APPLICATION_NAME = "notifyd-listen"
READER_NAME = "notifyd-fan-out"
# Catch-up read even without a NOTIFY (Procrastinate's pattern): covers a NOTIFY lost to a
# half-open connection before the probe notices.
POLL_INTERVAL = 3.0
# Half-open TCP is invisible to asyncpg: a periodic query under a timeout finds it.
PROBE_INTERVAL = 5.0
PROBE_TIMEOUT = 3.0
CONNECT_TIMEOUT = 5.0
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 5.0
# Users whose events are offered between two yields to the event loop: the writer tasks of those sessions send
# and end before the next users' are made, so a bulk send's first sessions need not wait for its last ones, and
# few of those tasks live long enough to be promoted into the collector's oldest generation.
OFFER_CHUNK = 256
# Admin activity streams open in one process at most: each costs a read per wake-up.
MAX_WATCHERS = 32
# The least time between two rounds of the admin streams' reads: a flood of NOTIFYs costs them at most 1/WATCH_GAP
# reads a second each.
WATCH_GAP = 0.25


class Subscriber(Protocol):
    """A WebSocket session as the hub sees it."""

    user_id: uuid.UUID
    # The client takes the unread count from the notification frames (?compact=1): no unread_count event
    # follows frames that carry it.
    compact: bool

    def offer(
        self,
        kind: str,
        seq: int | None,
        text: str,
        notification_id: str | None = None,
        committed: float | None = None,
    ) -> None:
        """Takes one event; never blocks (a full session closes itself). committed: when (time.monotonic) the
        live notification of a `notification` event was committed."""


class Watcher(Protocol):
    """An admin's activity stream as the hub sees it."""

    async def refresh(self) -> None:
        """Reads, as its admin, what changed in its scope since its last read, and sends it."""


class Hub:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, metrics: Metrics) -> None:
        self.settings = settings
        self.pool = pool
        self.metrics = metrics
        self.is_listening = False
        self.open_connections = 0
        self._sessions: dict[uuid.UUID, set[Subscriber]] = {}
        self.session_count = 0
        self.collector = Collector()
        # Highest seq fanned out per user: rows read again (after a read that failed half-way) are skipped here.
        self._user_seq: dict[uuid.UUID, int] = {}
        # The snapshot of the previous read (pg_snapshot as text): what it saw is not read again.
        self._snapshot: str | None = None
        # Users sent notifications whose unread_count is not sent yet.
        self._counts_due: set[uuid.UUID] = set()
        # Users whose seen watermark moved, with it, whose seen_updated is not sent yet.
        self._seen_due: dict[uuid.UUID, int] = {}
        # The fan-out's reading connection (notify_worker), made at the first read and again after a failed one.
        self._reader: asyncpg.Connection | None = None
        self._wake: asyncio.Queue[None] = asyncio.Queue()
        self._watchers: set[Watcher] = set()
        self._watch_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listening_once = asyncio.Event()
        # Set when the server shuts down: event streams end then (WebSockets are closed by uvicorn).
        self.draining = asyncio.Event()

    # -- sessions --------------------------------------------------------------------------

    def admit(self, session: Subscriber) -> bool:
        """Registers the session, unless its user has WS_MAX_CONNECTIONS_PER_USER sessions here already."""
        sessions = self._sessions.setdefault(session.user_id, set())
        if len(sessions) >= self.settings.ws_max_connections_per_user:
            return False
        sessions.add(session)
        self.session_count += 1
        return True

    def unregister(self, session: Subscriber) -> None:
        sessions = self._sessions.get(session.user_id)
        if sessions is None or session not in sessions:
            return
        sessions.remove(session)
        self.session_count -= 1
        self.collector.closed += 1
        if not sessions:
            del self._sessions[session.user_id]
            self._user_seq.pop(session.user_id, None)

    def watch(self, watcher: Watcher) -> bool:
        """Registers an admin's activity stream and has it read at once, unless MAX_WATCHERS are open here."""
        if len(self._watchers) >= MAX_WATCHERS:
            return False
        self._watchers.add(watcher)
        self._watch_wake.set()
        return True

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="notifyd-listen"),
            asyncio.create_task(self._fan_out_forever(), name="notifyd-fan-out"),
            asyncio.create_task(self._watch_forever(), name="notifyd-admin-streams"),
        ]
        # Readiness waits for LISTEN anyway; waiting briefly here just avoids a not-ready blip.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening_once.wait(), CONNECT_TIMEOUT)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drop_reader()
        self.is_listening = False

    # -- LISTEN ----------------------------------------------------------------------------

    def _on_notify(self, *_: object) -> None:
        # A sync callback keeps order and backpressure-free; the payload (an xid) is not needed.
        self._wake.put_nowait(None)
        if self._watchers:
            self._watch_wake.set()

    async def _listen_forever(self) -> None:
        attempt = 0
        connected_before = False
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.settings.direct_url,
                    timeout=CONNECT_TIMEOUT,
                    server_settings={"application_name": APPLICATION_NAME},
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, event=lost: event.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                if self._snapshot is None:
                    self._snapshot = str(await conn.fetchval(query("hub_snapshot"), timeout=PROBE_TIMEOUT))
                self.is_listening = True
                self._listening_once.set()
                attempt = 0
                if connected_before:
                    self.metrics.listen_reconnects.inc()
                    log.info("LISTEN connection re-made; catching up from the table")
                connected_before = True
                # Whatever committed while nobody listened is read now, from the old snapshot.
                self._wake.put_nowait(None)
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), PROBE_INTERVAL)
                    if not lost.is_set():
                        await conn.fetchval(query("database_alive"), timeout=PROBE_TIMEOUT)
                log.warning("LISTEN connection lost")
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure means: reconnect
                log.warning("LISTEN connection failed: %r", error)
            finally:
                self.is_listening = False
                if conn is not None:
                    # terminate, not close: close waits on a server that may be gone.
                    conn.terminate()
            delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311
            attempt += 1
            await asyncio.sleep(delay)

    # -- fan-out ---------------------------------------------------------------------------

    async def _fan_out_forever(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: in Python 3.11 wait_for runs the wait in a task of its own per wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_INTERVAL):
                    await self._wake.get()
            # Coalesce a burst of wake-ups into one read.
            while not self._wake.empty():
                self._wake.get_nowait()
            if self._snapshot is None:
                continue
            try:
                await self.fan_out()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the loop must outlive any one failed read
                # The snapshot did not move: the next wake-up or poll reads the same rows again.
                log.warning("fan-out read failed: %r", error)
                self._drop_reader()
                await asyncio.sleep(BACKOFF_FIRST)
            # After the events are offered, never between a commit and its events.
            self.collector.tend(self.session_count)

    async def _watch_forever(self) -> None:
        """Each admin stream reads for itself after a NOTIFY, or every POLL_INTERVAL, while any is open."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_INTERVAL):
                    await self._watch_wake.wait()
            self._watch_wake.clear()
            for watcher in list(self._watchers):
                if watcher not in self._watchers:
                    continue  # closed while an earlier one read
                try:
                    await watcher.refresh()
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # its read is tried again at the next round; the others go on
                    log.warning("admin activity read failed: %r", error)
            await asyncio.sleep(WATCH_GAP)

    async def _reading_connection(self) -> asyncpg.Connection:
        if self._reader is None:
            conn = await asyncpg.connect(
                self.settings.direct_url,
                timeout=CONNECT_TIMEOUT,
                server_settings={"application_name": READER_NAME},
            )
            try:
                await conn.execute(query("hub_become_worker"))
            except BaseException:
                conn.terminate()
                raise
            self._reader = conn
        return self._reader

    def _drop_reader(self) -> None:
        # terminate, not close: a failed read may mean the server is gone.
        if self._reader is not None:
            self._reader.terminate()
            self._reader = None

    async def fan_out(self) -> None:
        """One read of the changed rows for every session here; events to each session of their users.

        Event texts are built once per event from the row's JSON text, shared by all of a user's sessions.
        The unread counts of the users the rows go to are read next, before anything is
        offered: every notification event carries its user's count, so a compact session needs no second frame.
        """
        conn = await self._reading_connection()
        rows = await conn.fetch(query("hub_fan_out"), self._snapshot, timeout=30)
        changes: dict[uuid.UUID, list[asyncpg.Record]] = {}
        for change in rows:
            user = change["user_id"]
            # No row changed: the row carries only the snapshot. A user's rows come in seq order,
            # so comparing with the previous read's last seq drops what a held-back snapshot re-read.
            if user is None or user not in self._sessions or change["seq"] <= self._user_seq.get(user, 0):
                continue
            changes.setdefault(user, []).append(change)
        # Moved seen watermarks (notify.mark_seen): one seen_updated per user, after that user's counts.
        seen = {user: seq for user, seq in _seen_marks(rows[0]["seen"]) if user in self._sessions}
        # Owed until read: a failed count is sent with the next read's.
        self._counts_due.update(changes)
        self._seen_due.update(seen)
        self._counts_due.update(seen)
        counts: dict[uuid.UUID, asyncpg.Record] = {}
        if self._counts_due:
            counted = await conn.fetch(query("hub_unread_counts"), list(self._counts_due), timeout=30)
            counts = {r["user_id"]: r for r in counted}
        self._snapshot = rows[0]["snapshot"]
        # One unread_count per user per wake-up, after that user's notifications; a compact session skips it
        # when its notification frames carry the count and nothing was read or deleted (a change of the count
        # its client may show without looking at the notification).
        due, self._counts_due = self._counts_due, set()
        seen_due, self._seen_due = self._seen_due, {}
        for offered, user in enumerate(due):
            if offered % OFFER_CHUNK == OFFER_CHUNK - 1:
                await asyncio.sleep(0)
            found = counts.get(user)
            count, by_type, unseen = (
                (found["count"], found["by_type"], found["unseen"]) if found is not None else (0, "{}", 0)
            )
            user_changes = changes.get(user, [])
            self._offer(user, user_changes, count, by_type, unseen)
            # Not for a user whose last session closed during a yield: unregister forgot them.
            if user_changes and user in self._sessions:
                self._user_seq[user] = user_changes[-1]["seq"]
            counted = bool(user_changes) and not any(c["read_at"] is not None or c["deleted"] for c in user_changes)
            text = f'{{"type":"unread_count","count":{count},"by_type":{by_type}}}'
            seen_text = None
            if user in seen_due:
                seen_text = f'{{"type":"seen_updated","seen_seq":{seen_due[user]},"unseen_count":{unseen}}}'
            for session in list(self._sessions.get(user, ())):
                if not (counted and session.compact):
                    session.offer("unread_count", None, text)
                if seen_text is not None:
                    session.offer("seen_updated", None, seen_text)

    def _offer(self, user: uuid.UUID, changes: list[asyncpg.Record], count: int, by_type: str, unseen: int) -> None:
        """A user's changed rows, in seq order, to each of their sessions, each with the user's unread and unseen
        counts."""
        sessions = list(self._sessions.get(user, ()))
        for change in changes:
            seq = change["seq"]
            lag = max(0.0, change["lag"])
            self.metrics.catch_up_lag.observe(lag)
            committed = time.monotonic() - lag  # the commit, on the clock the session measures its send with
            notification = (
                f'{{"type":"notification","data":{change["data"]},"unread_count":{count},"unread_by_type":{by_type},'
                f'"unseen_count":{unseen}}}'
            )
            read_status = None
            if change["read_at"] is not None:
                read_status = (
                    f'{{"type":"read_status_updated","notification_id":"{change["id"]}",'
                    f'"read_at":"{change["read_at"]}","unread_count":{count}}}'
                )
            for session in sessions:
                session.offer("notification", seq, notification, committed=committed)
                if read_status is not None:
                    session.offer("read_status_updated", seq, read_status, change["id"])


def _seen_marks(text: str | None) -> list[tuple[uuid.UUID, int]]:
    """The fan-out read's moved seen watermarks: [[user_id, seen_seq], ...] as JSON text, or NULL for none."""
    if text is None:
        return []
    return [(uuid.UUID(user), int(seq)) for user, seq in json.loads(text)]
