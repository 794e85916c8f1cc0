"""The LISTEN hub: one dedicated connection wakes one fan-out read for every WebSocket session of this process.

NOTIFY only says "something changed" (its payload is a transaction id); the rows are read from the
table by `changed_xid >= watermark`, where the watermark is the xmin of the previous read's
snapshot, so a lost NOTIFY, a dropped connection or a restart loses nothing: the next read
catches up. Rows may be read twice (a long transaction holds xmin back); sessions drop
anything at or below the last seq they were given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from typing import Any, Protocol

import asyncpg

from notifyd.config import Settings
from notifyd.db import as_worker
from notifyd.metrics import Metrics
from notifyd.queries import query

log = logging.getLogger("notifyd.hub")

CHANNEL = "notify_notifications"
APPLICATION_NAME = "notifyd-listen"
# Catch-up read even without a NOTIFY (Procrastinate's pattern): covers a NOTIFY lost to a
# half-open connection before the probe notices.
POLL_INTERVAL = 3.0
# Half-open TCP is invisible to asyncpg: a periodic query under a timeout finds it.
PROBE_INTERVAL = 5.0
PROBE_TIMEOUT = 3.0
CONNECT_TIMEOUT = 5.0
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 5.0


class Subscriber(Protocol):
    """A WebSocket session as the hub sees it."""

    user_id: uuid.UUID

    def offer(self, kind: str, seq: int | None, text: str, notification_id: str | None = None) -> None:
        """Takes one event; never blocks (a full session closes itself)."""


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))


class Hub:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, metrics: Metrics) -> None:
        self.settings = settings
        self.pool = pool
        self.metrics = metrics
        self.is_listening = False
        self.open_connections = 0
        self._sessions: dict[uuid.UUID, set[Subscriber]] = {}
        # Highest seq fanned out per user: rows re-read behind a held-back watermark are skipped here.
        self._user_seq: dict[uuid.UUID, int] = {}
        self._watermark: str | None = None
        self._wake: asyncio.Queue[None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._listening_once = asyncio.Event()

    # -- sessions --------------------------------------------------------------------------

    def register(self, session: Subscriber) -> None:
        self._sessions.setdefault(session.user_id, set()).add(session)

    def unregister(self, session: Subscriber) -> None:
        sessions = self._sessions.get(session.user_id)
        if sessions is None:
            return
        sessions.discard(session)
        if not sessions:
            del self._sessions[session.user_id]
            self._user_seq.pop(session.user_id, None)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="notifyd-listen"),
            asyncio.create_task(self._fan_out_forever(), name="notifyd-fan-out"),
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
        self.is_listening = False

    # -- LISTEN ----------------------------------------------------------------------------

    def _on_notify(self, *_: object) -> None:
        # A sync callback keeps order and backpressure-free; the payload (an xid) is not needed.
        self._wake.put_nowait(None)

    async def _listen_forever(self) -> None:
        attempt = 0
        connected_before = False
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.settings.database_url,
                    timeout=CONNECT_TIMEOUT,
                    server_settings={"application_name": APPLICATION_NAME},
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, event=lost: event.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                if self._watermark is None:
                    self._watermark = str(await conn.fetchval(query("hub_watermark"), timeout=PROBE_TIMEOUT))
                self.is_listening = True
                self._listening_once.set()
                attempt = 0
                if connected_before:
                    self.metrics.listen_reconnects.inc()
                    log.info("LISTEN connection re-made; catching up from the table")
                connected_before = True
                # Whatever committed while nobody listened is read now, from the old watermark.
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.get(), POLL_INTERVAL)
            # Coalesce a burst of wake-ups into one read.
            while not self._wake.empty():
                self._wake.get_nowait()
            if self._watermark is None:
                continue
            try:
                await self.fan_out()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the loop must outlive any one failed read
                # The watermark did not move: the next wake-up or poll reads the same rows again.
                log.warning("fan-out read failed: %r", error)
                await asyncio.sleep(BACKOFF_FIRST)

    async def fan_out(self) -> None:
        """One read for every user with a session here; events to each of their sessions."""
        users = list(self._sessions)
        async with as_worker(self.pool) as conn:
            row = await conn.fetchrow(query("hub_fan_out"), self._watermark, users, timeout=30)
        assert row is not None
        self._watermark = row["watermark"]
        unread: dict[str, dict[str, Any]] = row["unread"]
        touched: dict[uuid.UUID, None] = {}
        for change in row["rows"]:
            user = uuid.UUID(change["user_id"])
            sessions = self._sessions.get(user)
            seq = int(change["seq"])
            if not sessions or seq <= self._user_seq.get(user, 0):
                continue
            self._user_seq[user] = seq
            self.metrics.catch_up_lag.observe(max(0.0, float(change["lag"])))
            touched[user] = None
            counts = unread.get(change["user_id"], {"count": 0, "by_type": {}})
            notification = _dumps({"type": "notification", "data": change["data"]})
            read_status = None
            if change["read_at"] is not None and change["deleted_at"] is None:
                read_status = _dumps(
                    {
                        "type": "read_status_updated",
                        "notification_id": change["id"],
                        "read_at": change["read_at"],
                        "unread_count": counts["count"],
                    }
                )
            for session in list(sessions):
                session.offer("notification", seq, notification)
                if read_status is not None:
                    session.offer("read_status_updated", seq, read_status, change["id"])
        # One unread_count per user per wake-up, after that user's notifications.
        for user in touched:
            counts = unread.get(str(user), {"count": 0, "by_type": {}})
            text = _dumps({"type": "unread_count", "count": counts["count"], "by_type": counts["by_type"]})
            for session in list(self._sessions.get(user, ())):
                session.offer("unread_count", None, text)
