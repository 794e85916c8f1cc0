"""Commit → WebSocket receipt latency of notifyd, next to a bare asyncpg LISTEN client (the floor).

    .venv/bin/python bench/realtime.py [--sockets 1000] [--rate 500] [--duration 20]

Makes its own database on the local server (as the test suite does), starts its own notifyd
as a NOINHERIT login role holding the four notify roles, opens N sockets for N random users,
inserts at a fixed rate with notify.send (one transaction each, from 4 connections), and
prints latency percentiles and notifyd's RSS per socket. Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from notifyd.localdb import resolve_server  # noqa: E402
from notifyd.migrate import migrate_url  # noqa: E402
from tests.server import ServerProcess, make_token  # noqa: E402

LOGIN = "notifyd_bench_login"
PASSWORD = "notifyd-bench-password"
INSERTERS = 4
# Policy values raised for this run only (CONTRACT §5: benchmarks print what they used).
BENCH_SETTINGS = {"rate_limit.in_app_per_hour": "1000000000", "rate_limit.global_per_minute": "1000000000"}


def percentiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    return f"p50 {at(50):7.2f} ms  p95 {at(95):7.2f} ms  p99 {at(99):7.2f} ms  max {ordered[-1] * 1000:7.2f} ms"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def make_database(server_url: str, name: str) -> tuple[str, str]:
    """The owner's and the login role's URLs of a freshly migrated database."""
    with psycopg.connect(server_url, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base = psycopg.conninfo.conninfo_to_dict(server_url)
    owner = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    await migrate_url(_as_url(base, name))
    with psycopg.connect(owner, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOGIN,)).fetchone():
            conn.execute(f"CREATE ROLE {LOGIN} LOGIN NOINHERIT PASSWORD '{PASSWORD}'")
        conn.execute(f"GRANT notify_service, notify_authenticated, notify_admin, notify_worker TO {LOGIN}")
        for key, value in BENCH_SETTINGS.items():
            conn.execute("UPDATE notify.settings SET value = %s::jsonb WHERE key = %s", (value, key))
    login = f"postgresql://{LOGIN}:{PASSWORD}@{base.get('host', '127.0.0.1')}:{base.get('port', 5432)}/{name}"
    return _as_url(base, name), login


def _as_url(base: dict[str, Any], dbname: str) -> str:
    auth = base.get("user", "postgres") + (f":{base['password']}" if base.get("password") else "")
    return f"postgresql://{auth}@{base.get('host', '127.0.0.1')}:{base.get('port', 5432)}/{dbname}"


class Results:
    def __init__(self) -> None:
        self.committed: dict[str, float] = {}  # notification id -> commit acknowledged
        self.xid_committed: dict[str, float] = {}
        self.ws_latency: list[float] = []
        self.listen_latency: list[float] = []
        self.ws_received: dict[str, int] = {}
        self.ws_pending: dict[str, float] = {}  # received before the commit ack was recorded
        self.listen_pending: dict[str, float] = {}


async def reader(ws: ClientConnection, results: Results) -> None:
    try:
        async for message in ws:
            now = time.perf_counter()
            event = json.loads(message)
            if event["type"] != "notification":
                continue
            nid = event["data"]["id"]
            results.ws_received[nid] = results.ws_received.get(nid, 0) + 1
            if nid in results.committed:
                results.ws_latency.append(now - results.committed[nid])
            else:
                results.ws_pending[nid] = now
    except ConnectionClosed:
        pass


async def open_sockets(server: ServerProcess, users: list[uuid.UUID]) -> list[ClientConnection]:
    sockets: list[ClientConnection] = []
    for start in range(0, len(users), 100):
        batch = users[start : start + 100]
        opened = await asyncio.gather(
            *(
                connect(f"{server.ws_url}?token={make_token(u, exp_in=3600)}", compression=None, ping_interval=None)
                for u in batch
            )
        )
        for ws in opened:
            assert json.loads(await ws.recv())["type"] == "authenticated"
        sockets += opened
    return sockets


async def insert(login_url: str, users: list[uuid.UUID], rate: float, duration: float, results: Results) -> int:
    conns = [await asyncpg.connect(login_url) for _ in range(INSERTERS)]
    for conn in conns:
        await conn.execute("SET ROLE notify_service")
    total = int(rate * duration)
    start = time.perf_counter() + 0.2
    counter = iter(range(total))

    async def worker(conn: asyncpg.Connection) -> None:
        for i in counter:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            nid, xid = await conn.fetchrow(
                "SELECT notify.send($1, 'system', 'bench')::text, pg_current_xact_id()::text",
                random.choice(users),  # noqa: S311
            )
            now = time.perf_counter()
            results.committed[nid] = now
            results.xid_committed[xid] = now
            # Receipt raced ahead of our commit acknowledgement: latency ~0, recorded as measured.
            if nid in results.ws_pending:
                results.ws_latency.append(results.ws_pending.pop(nid) - now)
            if xid in results.listen_pending:
                results.listen_latency.append(results.listen_pending.pop(xid) - now)

    await asyncio.gather(*(worker(c) for c in conns))
    for conn in conns:
        await conn.close()
    return total


async def bench(args: argparse.Namespace) -> None:
    server_url, _cluster = resolve_server()
    name = f"notifyd_bench_{os.getpid()}"
    owner_url, login_url = await make_database(server_url, name)
    log_path = Path(tempfile.mkdtemp(prefix="notifyd-bench-")) / "notifyd.log"
    server = ServerProcess(login_url, log_path)
    try:
        server.start()
        assert server.proc is not None
        pid = server.proc.pid
        await asyncio.sleep(1)
        rss_before = rss_kb(pid)
        users = [uuid.uuid4() for _ in range(args.sockets)]
        t0 = time.perf_counter()
        sockets = await open_sockets(server, users)
        connect_seconds = time.perf_counter() - t0
        results = Results()
        readers = [asyncio.create_task(reader(ws, results)) for ws in sockets]
        await asyncio.sleep(2)  # past every session's initial unread_count; RSS settles
        rss_idle = rss_kb(pid)

        listener = await asyncpg.connect(owner_url)

        def on_notify(_c: object, _pid: int, _channel: str, payload: str) -> None:
            now = time.perf_counter()
            if payload in results.xid_committed:
                results.listen_latency.append(now - results.xid_committed[payload])
            else:
                results.listen_pending[payload] = now

        await listener.add_listener("notify_notifications", on_notify)
        total = await insert(login_url, users, args.rate, args.duration, results)
        await asyncio.sleep(3)  # stragglers
        rss_end = rss_kb(pid)
        await listener.close()
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()

        delivered = sum(1 for nid in results.committed if results.ws_received.get(nid))
        duplicates = sum(1 for n in results.ws_received.values() if n > 1)
        per_socket_kb = (rss_idle - rss_before) / args.sockets
        print(f"notifyd realtime bench: {args.sockets} sockets, {args.rate:g} inserts/s for {args.duration:g} s")
        print(f"  settings raised for the run: {BENCH_SETTINGS}")
        print(
            f"  inserted {total}, delivered over WebSocket {delivered}, missing {total - delivered}, dups {duplicates}"
        )
        print(f"  {args.sockets} sockets connected and authenticated in {connect_seconds:.1f} s")
        print("  commit ack → receipt:")
        print(f"    bare asyncpg LISTEN (floor): {percentiles(results.listen_latency)}")
        print(f"    notifyd WebSocket          : {percentiles(results.ws_latency)}")
        print(
            f"  notifyd RSS: {rss_before / 1024:.1f} MB before sockets, {rss_idle / 1024:.1f} MB with "
            f"{args.sockets} idle sockets, {rss_end / 1024:.1f} MB after the run"
        )
        if per_socket_kb > 0:
            print(f"  ≈ {per_socket_kb:.1f} KB per idle socket ≈ {1024 * 1024 / per_socket_kb:,.0f} sockets per GB")
    finally:
        server.stop()
        with psycopg.connect(server_url, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0, help="inserts per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of inserting")
    args = parser.parse_args()
    asyncio.run(asyncio.wait_for(bench(args), args.duration + 180))


if __name__ == "__main__":
    main()
