"""Several notifyd processes on one database: three `serve` and two `worker`, one of each SIGKILLed mid-traffic.

Clients are spread over the serve processes (users with sessions on all three); a client whose process dies
reconnects to another and resumes with the `resume` message from the last seq it saw. Every notification
reaches every session of its user exactly once, and every e-mail goes out once although a worker died.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import psutil
import psycopg
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import database_url
from tests.figures import report
from tests.server import ServerProcess, make_token, wait_for
from tests.standins.http import Response
from tests.standins.resend import ResendService
from tests.test_faults import Sender, pending
from tests.test_worker import FAST, resend_env

USERS = 10
SESSIONS = 30  # three per user, one on each serve process
EMAILS = 150
# Per process: serve holds its pool (at most 10), its LISTEN connection and the hub's reading connection; a worker
# its asyncpg pool (WORKER_CONCURRENCY + 2), Procrastinate's pool (4) and Procrastinate's LISTEN connection.
SERVE_CONNECTIONS = 10 + 2
WORKER_CONNECTIONS = (8 + 2) + 4 + 1


class MovingSessions:
    """WebSocket sessions spread over `servers`; one whose process dies moves to the next live one and resumes."""

    def __init__(self, servers: list[ServerProcess], users: list[uuid.UUID]) -> None:
        self.servers = servers
        self.placement = [(users[i % len(users)], i % len(servers)) for i in range(SESSIONS)]
        self.received: list[Counter[str]] = [Counter() for _ in range(SESSIONS)]
        self.moves: list[tuple[int, int, int]] = []  # (session, from server, to server)
        self._stop = threading.Event()
        self._live = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self._ready.wait(timeout=30), "every session is live"

    def _alive(self, index: int) -> bool:
        proc = self.servers[index].proc
        return proc is not None and proc.poll() is None

    async def _session(self, number: int) -> None:
        user, at = self.placement[number]
        last_seq: int | None = None  # None: never connected; the first connection starts from now
        while not self._stop.is_set():
            try:
                async with connect(f"{self.servers[at].ws_url}?token={make_token(user)}", compression=None) as ws:
                    if last_seq is not None:
                        # As the contract has it: connect, then resume from the last seq seen.
                        await ws.send(json.dumps({"type": "resume", "after": last_seq}))
                    resumed_from, last_seq = last_seq, last_seq or 0
                    live = False
                    while not self._stop.is_set():
                        try:
                            message = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                        except TimeoutError:
                            continue
                        if message["type"] == "notification":
                            self.received[number][message["data"]["id"]] += 1
                            last_seq = max(last_seq, message["data"]["seq"])
                        elif not live and message["type"] == (
                            "resumed" if resumed_from is not None else "unread_count"
                        ):
                            live = True
                            if resumed_from is None:
                                self._live += 1  # one event loop: no lock needed
                                if self._live == SESSIONS:
                                    self._ready.set()
                    return
            except (ConnectionClosed, OSError):
                if self._stop.is_set():
                    return
                # As a load balancer would: the next process that still runs.
                moved_from = at
                at = (at + 1) % len(self.servers)
                while not self._alive(at):
                    at = (at + 1) % len(self.servers)
                self.moves.append((number, moved_from, at))

    async def _run(self) -> None:
        await asyncio.gather(*(self._session(n) for n in range(SESSIONS)))

    def all_arrived(self, committed: dict[str, uuid.UUID]) -> bool:
        return all(
            self.received[n][note] >= 1
            for note, user in committed.items()
            for n, (owner, _) in enumerate(self.placement)
            if owner == user
        )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def connections(db: psycopg.Connection[Any]) -> tuple[int, int]:
    """notifyd's connections to the test's database: all of them, and the serve processes' LISTEN ones."""
    row = db.execute(
        "SELECT count(*), count(*) FILTER (WHERE application_name = 'notifyd-listen') FROM pg_stat_activity "
        "WHERE datname = current_database() AND usename = 'notifyd_test_login'"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_three_servers_and_two_workers_one_of_each_killed_deliver_everything_once(
    db: psycopg.Connection[Any], own_server: Any, own_worker: Any, resend_service: ResendService
) -> None:
    worker_env = {**FAST, **resend_env(resend_service)}
    with ThreadPoolExecutor(5) as pool:
        serving = [pool.submit(own_server) for _ in range(3)]
        working = [pool.submit(own_worker, **worker_env) for _ in range(2)]
        servers: list[ServerProcess] = [f.result() for f in serving]
        workers = [f.result() for f in working]
    users = [uuid.uuid4() for _ in range(USERS)]
    sessions = MovingSessions(servers, users)
    total, listening = connections(db)
    assert listening == 3, "each serve process holds one LISTEN connection"
    assert total <= 3 * SERVE_CONNECTIONS + 2 * WORKER_CONNECTIONS, total

    email_users = [uuid.uuid4() for _ in range(EMAILS)]
    db.execute("SELECT notify.upsert_recipient_v2(u, u::text || '@example.com') FROM unnest(%s::uuid[]) AS u",
               (email_users,))  # fmt: skip
    resend_service.script(*[Response(delay=0.05)] * EMAILS)  # slow enough that the kill finds some in flight
    sender = Sender(database_url(db, login=False), users)
    try:
        db.execute("SELECT notify.send_bulk(%s, 'security', 'New login', 'from Berlin', 'critical', "
                   "channels => '{email}')", (email_users,))  # fmt: skip
        time.sleep(1.0)
        in_flight = pending(db)
        workers[0].kill()
        killed_server = servers[1]
        assert killed_server.proc is not None
        killed_server.proc.kill()
        killed_server.proc.wait()
        time.sleep(2.0)
    finally:
        sender.stop()

    deadline = time.monotonic() + 30
    while not sessions.all_arrived(sender.committed) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # a late duplicate would show now
    sessions.stop()
    twice = [(n, note, k) for n, counts in enumerate(sessions.received) for note, k in counts.items() if k > 1]
    missing = [
        (n, note)
        for note, user in sender.committed.items()
        for n, (owner, _) in enumerate(sessions.placement)
        if owner == user and sessions.received[n][note] == 0
    ]
    moved = {n for n, _, _ in sessions.moves}
    on_killed = {n for n, (_, at) in enumerate(sessions.placement) if at == 1}

    wait_for(lambda: pending(db) == 0, 60, what="the surviving worker to finish the deliveries")
    keys = Counter(e.idempotency_key for e in resend_service.emails)
    # Resend (and its stand-in) accepts a key once; a delivery sent again under another key shows per address.
    per_address = Counter(address for e in resend_service.emails for address in e.to)
    sent = db.execute(
        "SELECT count(*) FROM notify.notification_deliveries WHERE channel = 'email' AND status = 'sent'"
    ).fetchone()
    total_after, listening_after = connections(db)
    report("three serve, two workers", sessions=SESSIONS, notifications=len(sender.committed),
           deliveries_to_sessions=sum(sum(c.values()) for c in sessions.received), lost=len(missing),
           duplicates=len(twice), sessions_moved=len(moved), emails=EMAILS, emails_in_flight_at_kill=in_flight,
           emails_sent_twice=sum(1 for k in per_address.values() if k > 1), connections_before=total,
           connections_after=total_after)  # fmt: skip
    assert not missing and not twice, (missing[:5], twice[:5])
    assert moved == on_killed, "exactly the killed process's clients moved"
    assert in_flight > 0, "the worker was killed with deliveries in flight"
    assert sent is not None and sent[0] == EMAILS
    assert len(keys) == EMAILS and set(keys.values()) == {1}, "Resend got each delivery's idempotency key once"
    assert len(per_address) == EMAILS and set(per_address.values()) == {1}, "each address got its e-mail once"
    assert listening_after == 2, "the killed process's LISTEN connection is gone"
    assert workers[1].proc is not None and workers[1].proc.poll() is None


class TwoWorkerServer(ServerProcess):
    """`notifyd serve --workers 2`: one port, two serve processes under one parent."""

    arguments = ("--workers", "2")

    def children(self) -> list[psutil.Process]:
        assert self.proc is not None
        # psutil ships no type information: its calls are untyped, hence the annotation.
        children: list[psutil.Process] = psutil.Process(self.proc.pid).children()
        return children


def owner_of(server: TwoWorkerServer, client_port: int) -> int:
    """The pid of the serve process holding the server side of the client's connection from `client_port`."""
    for child in server.children():
        if any(c.raddr and c.raddr.port == client_port for c in child.net_connections("tcp")):
            return int(child.pid)
    raise AssertionError(f"no serve process holds the connection from port {client_port}")


async def test_serve_workers_2_runs_two_processes_that_both_answer_and_both_deliver(
    db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    server = TwoWorkerServer(database_url(db, login=True), tmp_path / "serve.log")
    server.start()
    try:
        wait_for(lambda: len(server.children()) == 2 and connections(db)[1] == 2, what="two processes, each listening")
        user = uuid.uuid4()
        sockets: dict[int, list[Any]] = {}  # serve pid -> sessions on it
        async with AsyncExitStack() as stack:
            for _ in range(40):  # the kernel hands each connection to one of the two; until both have some
                ws = await stack.enter_async_context(connect(f"{server.ws_url}?token={make_token(user)}"))
                while json.loads(await ws.recv())["type"] != "unread_count":
                    pass
                pid = await asyncio.to_thread(owner_of, server, ws.local_address[1])
                sockets.setdefault(pid, []).append(ws)
                if len(sockets) == 2 and min(len(s) for s in sockets.values()) >= 2:
                    break
            assert len(sockets) == 2, "both processes took WebSocket sessions"
            row = await asyncio.to_thread(
                lambda: db.execute("SELECT notify.send(%s, 'task', 'Both')", (user,)).fetchone()
            )
            assert row is not None
            note = str(row[0])
            for ws in (w for ws_list in sockets.values() for w in ws_list):
                while (event := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "notification":
                    pass
                assert event["data"]["id"] == note
        # A child that dies is replaced; the port keeps answering.
        first, second = server.children()
        first.kill()
        wait_for(lambda: len(server.children()) == 2 and first.pid not in {c.pid for c in server.children()},
                 what="the dead serve process replaced")  # fmt: skip
        wait_for(server.ready, what="the port answering after the replacement")
        assert second.is_running()
        assert server.proc is not None
        server.proc.terminate()  # SIGTERM: the parent stops both, each gracefully
        assert server.proc.wait(15) == 0
        assert not second.is_running()
    finally:
        server.stop()
