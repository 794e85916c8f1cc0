"""Resume racing live traffic: many connections, each resuming while notifications are created and read.

However the resume point comes (the `resume` message after connecting, `?after=` on the WebSocket or the
stream, the Last-Event-ID header), a connection gets every change since that point exactly once and
nothing it already got, whatever moment the resume falls on.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect

from tests.figures import report
from tests.server import ServerProcess, make_token
from tests.test_sse import PATH, Sse

ITERATIONS = 30
SEEDED = 6  # notifications before the connection: the resume point falls among them
BURST = 8  # created while the connection resumes, and some of them read (a change: a new seq)
READS = 3
TIMEOUT = 10.0


@dataclass
class Received:
    """What one connection got: (id, seq) of each notification in arrival order, and its `resumed` count."""

    notes: list[tuple[str, int]] = field(default_factory=list)
    before_resumed: int = 0
    resumed: int | None = None

    def take(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "notification":
            self.notes.append((payload["id"], payload["seq"]))
        elif kind == "resumed" and self.resumed is None:
            self.resumed = payload["count"]
            self.before_resumed = len(self.notes)


class Traffic:
    """Creates and reads one user's notifications from SQL, as a service and a second tab would."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], user: uuid.UUID, rng: random.Random) -> None:
        self.conn, self.user, self.rng = conn, user, rng

    async def create(self, title: str) -> str:
        # critical: the in-app rate limit never holds it (a held notification has no event until released)
        cur = await self.conn.execute("SELECT notify.send(%s, 'task', %s, priority => 'critical')", (self.user, title))
        row = await cur.fetchone()
        assert row is not None
        return str(row[0])

    async def burst(self, ids: list[str]) -> None:
        created = []
        for i in range(BURST):
            created.append(await self.create(f"burst {i}"))
            await asyncio.sleep(self.rng.uniform(0, 0.004))
        for target in self.rng.sample(ids + created, READS):
            await self.conn.execute("UPDATE notify.notifications SET read_at = now() WHERE id = %s", (target,))
            await asyncio.sleep(self.rng.uniform(0, 0.004))

    async def final(self) -> dict[str, int]:
        cur = await self.conn.execute("SELECT id::text, seq FROM notify.notifications WHERE user_id = %s", (self.user,))
        return {row[0]: row[1] for row in await cur.fetchall()}


# A connection style: given the server, the user, the resume point and a callback that starts the traffic,
# runs until `done` and fills Received.
Style = Callable[[ServerProcess, uuid.UUID, int, Callable[[], None], asyncio.Event, Received, random.Random],
                 Coroutine[Any, Any, None]]  # fmt: skip


async def ws_message(server: ServerProcess, user: uuid.UUID, after: int, go: Callable[[], None],
                     done: asyncio.Event, got: Received, rng: random.Random) -> None:  # fmt: skip
    """Connect without a point, then send `resume` at a random moment of the traffic."""
    async with connect(f"{server.ws_url}?token={make_token(user)}", compression=None) as ws:
        assert json.loads(await ws.recv())["type"] == "authenticated"
        go()
        await asyncio.sleep(rng.uniform(0, 0.03))
        await ws.send(json.dumps({"type": "resume", "after": after}))
        await _read_ws(ws, done, got)


async def ws_query(server: ServerProcess, user: uuid.UUID, after: int, go: Callable[[], None],
                   done: asyncio.Event, got: Received, rng: random.Random) -> None:  # fmt: skip
    """Connect with ?after= while the traffic already runs."""
    go()
    await asyncio.sleep(rng.uniform(0, 0.03))
    async with connect(f"{server.ws_url}?token={make_token(user)}&after={after}", compression=None) as ws:
        await _read_ws(ws, done, got)


async def _read_ws(ws: Any, done: asyncio.Event, got: Received) -> None:
    while not done.is_set():
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), 0.05))
        except TimeoutError:
            continue
        got.take(message["type"], message.get("data") or message)


@asynccontextmanager
async def _stream(server: ServerProcess, user: uuid.UUID, **options: Any) -> AsyncIterator[Sse]:
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client,
        client.stream("GET", PATH, **options) as response,
    ):
        assert response.status_code == 200
        sse = Sse(response)
        yield sse
        sse.reader.cancel()


async def _read_sse(sse: Sse, done: asyncio.Event, got: Received) -> None:
    while not done.is_set():
        try:
            event = await sse.next(0.05)
        except TimeoutError:
            continue
        assert event is not None, "the stream ended"
        if "event" in event:
            got.take(event["event"], json.loads(event["data"]))


async def sse_query(server: ServerProcess, user: uuid.UUID, after: int, go: Callable[[], None],
                    done: asyncio.Event, got: Received, rng: random.Random) -> None:  # fmt: skip
    """An EventSource's first connection: ?after= and ?token=, while the traffic runs."""
    go()
    await asyncio.sleep(rng.uniform(0, 0.03))
    async with _stream(server, user, params={"token": make_token(user), "after": str(after)}) as sse:
        await _read_sse(sse, done, got)


async def sse_last_event_id(server: ServerProcess, user: uuid.UUID, after: int, go: Callable[[], None],
                            done: asyncio.Event, got: Received, rng: random.Random) -> None:  # fmt: skip
    """An EventSource's reconnect: Last-Event-ID (and a stale ?after=0 it ignores), while the traffic runs."""
    go()
    await asyncio.sleep(rng.uniform(0, 0.03))
    headers = {"Authorization": f"Bearer {make_token(user)}", "Last-Event-ID": str(after)}
    async with _stream(server, user, params={"after": "0"}, headers=headers) as sse:
        await _read_sse(sse, done, got)


async def race_once(server: ServerProcess, owner_url: str, style: Style, rng: random.Random) -> tuple[Received, int]:
    """One connection resuming during a burst; checked against the table's final state. Returns it and its `after`."""
    user = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(owner_url, autocommit=True) as conn:
        traffic = Traffic(conn, user, rng)
        seeded = [await traffic.create(f"seeded {i}") for i in range(SEEDED)]
        before = await traffic.final()
        after = rng.choice([0, *before.values()])
        got = Received()
        done = asyncio.Event()
        burst: list[asyncio.Task[None]] = []
        reader = asyncio.create_task(style(server, user, after, lambda: burst.append(
            asyncio.create_task(traffic.burst(seeded))), done, got, rng))  # fmt: skip
        async with asyncio.timeout(TIMEOUT):
            while not burst:
                await asyncio.sleep(0.001)
            await burst[0]
            while got.resumed is None:
                await asyncio.sleep(0.005)
            # Events of a user keep their order: once this one arrives, everything owed before it has.
            marker = await traffic.create("marker")
            while marker not in {note_id for note_id, _ in got.notes}:
                await asyncio.sleep(0.005)
        done.set()
        await reader
        final = await traffic.final()

    pairs = Counter(got.notes)
    assert all(n == 1 for n in pairs.values()), f"sent twice on one connection: {pairs.most_common(3)} (after {after})"
    owed = {(note_id, seq) for note_id, seq in final.items() if seq > after}
    missing = owed - set(pairs)
    assert not missing, f"never arrived: {sorted(missing, key=lambda p: p[1])} (after {after}, got {got.notes})"
    assert all(seq > after for _, seq in got.notes), f"sent what the client had (after {after}): {got.notes}"
    # A notification's changes arrive in the order they happened.
    last: dict[str, int] = {}
    for note_id, seq in got.notes:
        assert seq > last.get(note_id, 0), f"{note_id} went back to seq {seq}"
        last[note_id] = seq
    assert got.resumed is not None and got.resumed <= got.before_resumed
    return got, after


@pytest.mark.parametrize("style", [ws_message, ws_query, sse_query, sse_last_event_id], ids=lambda s: s.__name__)
async def test_a_resume_racing_live_traffic_sends_each_change_once_and_nothing_twice(
    server: ServerProcess, server_owner_url: str, style: Style
) -> None:
    rng = random.Random(f"resume-race-{style.__name__}")
    overlapping = 0
    for _ in range(ITERATIONS):
        got, after = await race_once(server, server_owner_url, style, rng)
        # A point given at connect: the whole connection is one run in seq order, `resumed` counting the replay.
        if style is not ws_message:
            seqs = [seq for _, seq in got.notes]
            assert seqs == sorted(seqs), f"out of seq order: {got.notes}"
            assert got.resumed == got.before_resumed
        # Live events that went out before the resume came, which the replay then reached.
        overlapping += any(seq > SEEDED for _, seq in got.notes[: got.before_resumed - (got.resumed or 0)])
    report(f"resume race ({style.__name__})", iterations=ITERATIONS, live_before_the_replay=overlapping)
    if style is ws_message:
        assert overlapping > 0, "some resumes came after live events had gone out: the race was run"


async def test_a_resume_to_an_earlier_point_sends_only_what_the_connection_has_not(
    server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(server_owner_url, autocommit=True) as conn:
        traffic = Traffic(conn, user, random.Random(1))
        ids = [await traffic.create(f"n{i}") for i in range(5)]
        async with connect(f"{server.ws_url}?token={make_token(user)}&after={ids[2]}", compression=None) as ws:

            async def until(kind: str) -> list[dict[str, Any]]:
                """Events up to the first of `kind`, without the unread counts (each wake-up sends one)."""
                got: list[dict[str, Any]] = []
                while not got or got[-1]["type"] != kind:
                    event = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    if event["type"] != "unread_count" or kind == "unread_count":
                        got.append(event)
                return got

            events = await until("unread_count")
            assert [e["type"] for e in events] == ["authenticated", "notification", "notification", "resumed",
                                                   "unread_count"]  # fmt: skip
            assert [e["data"]["id"] for e in events[1:3]] == ids[3:]
            # A change of one already sent goes out live, with a new seq.
            await conn.execute("UPDATE notify.notifications SET read_at = now() WHERE id = %s", (ids[4],))
            live = await until("read_status_updated")
            read_seq = (await traffic.final())[ids[4]]
            assert [(e["type"], e.get("data", {}).get("seq")) for e in live] == [
                ("notification", read_seq), ("read_status_updated", None)]  # fmt: skip
            # Back to ids[0]: ids[1] and ids[2] are owed; ids[3:] and the read went out already.
            await ws.send(json.dumps({"type": "resume", "after": ids[0]}))
            replay = await until("resumed")
            assert [e["data"]["id"] for e in replay[:-1]] == ids[1:3]
            assert replay[-1] == {"type": "resumed", "count": 2}
            # And from the very start: only ids[0] is left.
            await ws.send(json.dumps({"type": "resume", "after": 0}))
            replay = await until("resumed")
            assert [e.get("data", {}).get("id") for e in replay] == [ids[0], None]
            assert replay[-1] == {"type": "resumed", "count": 1}
            newest = await traffic.create("live")
            assert [e["data"]["id"] for e in await until("notification")] == [newest]
