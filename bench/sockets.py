"""Many WebSocket clients, held by several child processes (one Python process holds a few thousand well).

Each child opens its share of the sockets (one per user, a token each; open once the session is live: its
first unread_count has come), reads every socket and records,
per notification, the CLOCK_MONOTONIC time it arrived (comparable across the processes of this machine).
A notification is keyed by its data.b when the bench set one (a bulk send's key), else by its id. Sockets
of `not_reading` users are opened with a 4 KB receive buffer and never read: slow clients. Sockets of
`compact` users are opened with ?compact=1; frames and notifications are counted per mode (frames per
notification).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
import time
import uuid
from collections import defaultdict
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

OPEN_CONCURRENCY = 64


# notifyd's session is live once its first unread_count has come (see _hold); the bare server only greets.
LIVE = "unread_count"


class Fleet:
    def __init__(
        self,
        ws_url: str,
        users: list[uuid.UUID],
        per_process: int,
        not_reading: frozenset[uuid.UUID] = frozenset(),
        live: str = LIVE,
        compact: frozenset[uuid.UUID] = frozenset(),
    ) -> None:
        self.ws_url = ws_url
        self.users = users
        self.not_reading = not_reading
        context = multiprocessing.get_context("spawn")
        self.children: list[tuple[Any, Connection]] = []
        for start in range(0, len(users), per_process):
            parent, child = context.Pipe()
            share = users[start : start + per_process]
            process = context.Process(
                target=_child,
                args=(
                    child,
                    ws_url,
                    share,
                    [u for u in share if u in not_reading],
                    live,
                    [u for u in share if u in compact],
                ),
                daemon=True,
            )
            process.start()
            self.children.append((process, parent))
        self.open_seconds = 0.0
        self.opened = 0

    def wait_open(self, timeout: float = 150) -> None:
        """Blocks until every child has opened its sockets; raises if any socket failed."""
        started = time.monotonic()
        for _, conn in self.children:
            if not conn.poll(max(1.0, timeout - (time.monotonic() - started))):
                raise RuntimeError("sockets not opened in time")
            kind, opened, _seconds, failure = conn.recv()
            assert kind == "opened"
            self.opened += opened
            if failure:
                raise RuntimeError(f"a socket failed to open: {failure}")
        self.open_seconds = time.monotonic() - started

    def _ask(self, command: str) -> list[Any]:
        for _, conn in self.children:
            conn.send(command)
        return [conn.recv() for _, conn in self.children]

    def events(self) -> int:
        """Notification events received so far by all sockets."""
        return sum(self._ask("count"))

    def frames_per_notification(self) -> dict[bool, float | None]:
        """Frames read per notification received since the sockets opened, for compact (True) and default sockets."""
        totals = {True: [0, 0], False: [0, 0]}
        for part in self._ask("frames"):
            for mode, (frames, notes) in part.items():
                totals[mode][0] += frames
                totals[mode][1] += notes
        return {mode: frames / notes if notes else None for mode, (frames, notes) in totals.items()}

    def wait_events(self, at_least: int, timeout: float) -> bool:
        """Polls until the sockets have received at_least notification events in all; False at the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.events() >= at_least:
                return True
            time.sleep(0.05)
        return False

    def collect(self) -> dict[str, list[float]]:
        """Receipt times per key since the last collect (which forgets them)."""
        merged: dict[str, list[float]] = defaultdict(list)
        for part in self._ask("collect"):
            for key, times in part.items():
                merged[key].extend(times)
        return merged

    def pids(self) -> list[int]:
        return [process.pid for process, _ in self.children]

    def close(self) -> None:
        for process, conn in self.children:
            try:
                conn.send("close")
                if conn.poll(30):
                    conn.recv()
            except (OSError, EOFError):
                pass
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()


def _child(
    conn: Connection, ws_url: str, users: list[uuid.UUID], not_reading: list[uuid.UUID], live: str,
    compact: list[uuid.UUID],
) -> None:  # fmt: skip
    asyncio.run(_hold(conn, ws_url, users, frozenset(not_reading), live, frozenset(compact)))


async def _hold(
    conn: Connection, ws_url: str, users: list[uuid.UUID], not_reading: frozenset[uuid.UUID], live: str,
    compact: frozenset[uuid.UUID],
) -> None:  # fmt: skip
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed

    from tests.server import make_token

    loop = asyncio.get_running_loop()
    receipts: dict[str, list[float]] = defaultdict(list)
    events = 0
    # Per mode (compact or not): [frames, notifications] since the sockets opened.
    frames = {True: [0, 0], False: [0, 0]}
    sockets: list[ClientConnection] = []
    readers: list[asyncio.Task[None]] = []
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    host_port = urlsplit(ws_url)

    async def read(ws: ClientConnection, counts: list[int]) -> None:
        nonlocal events
        try:
            async for message in ws:
                now = time.monotonic()
                event = json.loads(message)
                counts[0] += 1
                if event.get("type") != "notification":
                    continue
                counts[1] += 1
                events += 1
                data = event["data"]
                key = (data.get("data") or {}).get("b") or data["id"]
                receipts[str(key)].append(now)
        except ConnectionClosed:
            pass

    async def open_one(user: uuid.UUID) -> None:
        url = f"{ws_url}?token={make_token(user, exp_in=7200)}" + ("&compact=1" if user in compact else "")
        async with gate:
            if user in not_reading:
                raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                raw.setblocking(False)
                await loop.sock_connect(raw, (host_port.hostname, host_port.port))
                ws = await connect(
                    url, sock=raw, compression=None, ping_interval=None, open_timeout=120, max_queue=1, close_timeout=1
                )
            else:
                ws = await connect(url, compression=None, ping_interval=None, open_timeout=120, close_timeout=2)
            # Open means live: the session's baseline is read after "authenticated", and its first unread_count
            # follows that read. Without `after`, a notification committed before the baseline is not owed to
            # the socket, so one counted open at its handshake (or at "authenticated") may never receive it.
            async with asyncio.timeout(120):
                while json.loads(await ws.recv()).get("type") != live:
                    pass
        sockets.append(ws)
        if user not in not_reading:
            readers.append(asyncio.create_task(read(ws, frames[user in compact])))

    started = time.monotonic()
    outcomes = await asyncio.gather(*(open_one(u) for u in users), return_exceptions=True)
    failures = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    conn.send(("opened", len(sockets), time.monotonic() - started, failures[0] if failures else None))
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "count":
            conn.send(events)
        elif command == "frames":
            conn.send(frames)
        elif command == "collect":
            conn.send(dict(receipts))
            receipts.clear()
        elif command == "close":
            for task in readers:
                task.cancel()
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            conn.send("closed")
            return


class Listener:
    """A bare asyncpg LISTEN client in a process of its own (the floor of commit → receipt, and a NOTIFY counter):
    records, per channel and payload, the CLOCK_MONOTONIC times each NOTIFY arrived."""

    def __init__(self, database_url: str, channels: list[str]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_listen_child, args=(child, database_url, channels), daemon=True)
        self.process.start()
        if not self.conn.poll(60) or self.conn.recv() != "listening":
            raise RuntimeError("the LISTEN client did not start")

    def collect(self) -> dict[tuple[str, str], list[float]]:
        """Arrival times per (channel, payload) since the last collect."""
        self.conn.send("collect")
        received: dict[tuple[str, str], list[float]] = self.conn.recv()
        return received

    def close(self) -> None:
        try:
            self.conn.send("close")
            self.conn.poll(10)
        except (OSError, EOFError):
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


def _listen_child(conn: Connection, database_url: str, channels: list[str]) -> None:
    asyncio.run(_listen(conn, database_url, channels))


async def _listen(conn: Connection, database_url: str, channels: list[str]) -> None:
    import asyncpg

    loop = asyncio.get_running_loop()
    arrived: dict[tuple[str, str], list[float]] = defaultdict(list)
    pg = await asyncpg.connect(database_url)
    for channel in channels:
        await pg.add_listener(channel, lambda _c, _pid, ch, payload: arrived[(ch, payload)].append(time.monotonic()))
    conn.send("listening")
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "collect":
            conn.send(dict(arrived))
            arrived.clear()
        elif command == "close":
            await pg.close()
            conn.send("closed")
            return
