"""An admin's live activity (GET /api/v1/admin/activity/stream in notifyd/realtime/sse.py): the notifications of the
admin's scope as they are made and change, and the delivery statuses of those it sent lately as they move.

Each stream reads for itself, as its admin (db.as_caller), when the hub wakes it (notifyd/realtime/hub.py): the
query filters by user, type, priority and channel but not by org, so RLS alone keeps an org admin to their org.
A read returns what changed since the previous read's snapshot, as the hub's own fan-out read does; that snapshot
(pg_snapshot as text) is the stream's event id, so a client that reconnects with Last-Event-ID misses nothing.
A delivery's change sends no NOTIFY and moves no notification: a stream reads again the deliveries of the newest
notifications it sent (WATCH_LIMIT, until every channel of one has settled), at each wake-up or every poll.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from notifyd.core.auth import Caller
from notifyd.db.pool import as_caller
from notifyd.db.queries import query
from notifyd.realtime.hub import Hub
from notifyd.realtime.session import Outbox, dumps

# Changed notifications one read sends at most; more (a bulk send, a long disconnect) and the stream says `reset`:
# the client reads the list again, and the stream goes on from this read.
ACTIVITY_LIMIT = 500
TOO_MUCH = f"more than {ACTIVITY_LIMIT} notifications changed at once: read the list again"
# Notifications whose deliveries a stream follows: the newest it sent (the console shows at most 100 rows).
WATCH_LIMIT = 100
# Delivery statuses that do not move on by themselves: a notification whose channels all have one is not followed.
SETTLED = frozenset({"delivered", "failed", "bounced", "skipped", "suppressed", "cancelled"})
# A frame with only an event id: where a client that reconnects resumes from (notifyd/realtime/sse.py).
CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class ActivityFilter:
    """What a stream narrows to, beside the admin's scope (None: any)."""

    user_id: uuid.UUID | None = None
    type: str | None = None
    priority: str | None = None
    channel: str | None = None


class AdminStream(Outbox):
    """One admin's activity stream: `activity` events (the console's activity row, sent again when it changes),
    `checkpoint` ids, `resumed` after the first read and `reset` when too much changed at once."""

    __slots__ = ("filter", "resumed", "snapshot", "watched")

    def __init__(self, hub: Hub, caller: Caller, activity_filter: ActivityFilter, snapshot: str) -> None:
        super().__init__(hub, caller)
        self.filter = activity_filter
        # The previous read's snapshot (at first, where the stream starts): what it sees was sent or was before.
        self.snapshot = snapshot
        # Notifications sent whose deliveries may still move: id -> their channels as last sent, oldest first.
        self.watched: dict[uuid.UUID, str] = {}
        self.resumed = False

    def leave(self) -> None:
        self.hub.unwatch(self)

    async def resume(self, after: str | int | None) -> None:
        """Nothing to do here: the stream starts at the snapshot it was made with, and the hub reads it at once."""

    async def refresh(self) -> None:
        """What changed since the previous read, as the admin, then its snapshot as the event id."""
        f = self.filter
        async with as_caller(self.hub.pool, self.caller) as conn:
            rows = await conn.fetch(
                query("admin_activity"), self.snapshot, f.user_id, f.type, f.priority, f.channel,
                ACTIVITY_LIMIT + 1, list(self.watched),
            )  # fmt: skip
        snapshot: str = rows[0]["snapshot"]
        sent = 0
        reset = sum(1 for row in rows if row["changed"]) > ACTIVITY_LIMIT
        if reset:
            self.watched.clear()
            self.push("reset", dumps({"type": "reset", "message": TOO_MUCH}))
        else:
            for row in rows:
                key, channels = row["id"], row["channels"]
                if key is None or (not row["changed"] and self.watched.get(key) == channels):
                    continue
                self.watched.pop(key, None)
                if not SETTLED.issuperset(json.loads(channels).values()):
                    self.watched[key] = channels
                self.push("activity", row["row"])
                sent += 1
            while len(self.watched) > WATCH_LIMIT:
                del self.watched[next(iter(self.watched))]
        first = not self.resumed
        self.snapshot = snapshot
        if sent or first or reset:
            self.push(CHECKPOINT, snapshot)
        if first:
            self.resumed = True
            self.push("resumed", dumps({"type": "resumed", "count": sent}))
