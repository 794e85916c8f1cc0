"""The hub's fan-out of a bulk send, in process against the real database: every session of every recipient gets
its notification once, in seq order, with its unread count, across the yields the hub makes between users."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import psycopg

from notifyd.core.config import Settings
from notifyd.core.metrics import Metrics
from notifyd.db.queries import query
from notifyd.realtime.hub import OFFER_CHUNK, Hub
from tests.conftest import database_url


class Recorder:
    """A session as the hub sees it: keeps what it is offered."""

    def __init__(self, user_id: uuid.UUID, *, compact: bool) -> None:
        self.user_id = user_id
        self.compact = compact
        self.events: list[tuple[str, int | None, dict[str, Any]]] = []

    def offer(
        self,
        kind: str,
        seq: int | None,
        text: str,
        notification_id: str | None = None,
        committed: float | None = None,
    ) -> None:
        # A live notification carries when it was committed (for notifyd_commit_to_socket_seconds), nothing else.
        assert (committed is not None) == (kind == "notification"), (kind, committed)
        self.events.append((kind, seq, json.loads(text)))


async def test_a_bulk_send_reaches_every_session_once_in_seq_order_with_its_count(db: psycopg.Connection[Any]) -> None:
    url = database_url(db, login=True)
    users = [uuid.uuid4() for _ in range(2 * OFFER_CHUNK + 10)]  # more users than one chunk between yields
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    hub = Hub(Settings(database_url=url, jwt_secret="s" * 32), pool, Metrics())
    sender = await asyncpg.connect(url)
    try:
        hub._snapshot = str(await sender.fetchval(query("hub_snapshot")))
        # Two sessions for the first user (one compact), one for each other user.
        sessions = [Recorder(user, compact=False) for user in users] + [Recorder(users[0], compact=True)]
        assert all(hub.admit(session) for session in sessions)
        await sender.execute("SET ROLE notify_service")
        await sender.execute("SELECT notify.send_bulk($1, 'system', 'first')", users)
        await sender.execute("SELECT notify.send_bulk($1, 'system', 'second')", users[:3])
        await hub.fan_out()
        await hub.fan_out()  # nothing new: nothing offered twice
    finally:
        await hub.stop()
        await sender.close()
        await pool.close()
    for session in sessions:
        notifications = [(seq, event) for kind, seq, event in session.events if kind == "notification"]
        expected = ["first", "second"] if session.user_id in users[:3] else ["first"]
        assert [event["data"]["title"] for _, event in notifications] == expected, session.user_id
        seqs = [seq for seq, _ in notifications if seq is not None]
        assert len(seqs) == len(notifications) and seqs == sorted(set(seqs))
        assert notifications[-1][1]["unread_count"] == len(expected)
        counts = [event for kind, _, event in session.events if kind == "unread_count"]
        # One count per wake-up after the notifications; a compact session has it in its notification frames.
        assert counts == ([] if session.compact else [{"type": "unread_count", "count": len(expected),
                                                       "by_type": {"system": len(expected)}}])  # fmt: skip
        assert session.events[-1][0] == ("notification" if session.compact else "unread_count")
