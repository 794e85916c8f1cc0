"""Scenario 2, end to end: commit acknowledged → notification received over a WebSocket, vs a bare LISTEN client.

N sockets (one per random user, held by child processes) on one notifyd; sends to random users at
1,667/s and 5,000/s (open loop, 16 connections, one notify.send per transaction, type 'system'), then
batched at 1,667 (100,000 a minute) and 10,000 notifications/s (send_bulk to 100 random users per
transaction). The floor is a bare
asyncpg client LISTENing on notify_notifications in a process of its own: commit ack → NOTIFY arrival
(payload: the transaction id). The sustained rate is what the sockets received per second from the first
send's slot to the last receipt; its floor is the rate the senders committed. Then the peer, bench/relay.py
(one LISTEN connection whose NOTIFY payload is the message, written to the user's sockets), with as many
sockets, the same users, senders and single-row rates (its send: the pgmq-like queue insert NOTIFYing the
message); per delivered message, the serving process's CPU time (utime + stime) over the run and its drain.
Each server first gets WARM_UP_SENDS sends that are not counted.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from bench.common import NOMINAL_RATE, Call, Database, Row, Scale, Table, achieved_rate, cpu_seconds, ms, paced
from bench.creation import service_connection
from bench.memory import start_peer, stop_peer
from bench.sockets import Fleet, Listener

SENDERS = 16
RATES = (NOMINAL_RATE, 5_000.0)
BATCHED_RATES = (NOMINAL_RATE, 10_000.0)
BATCH = 100
SINGLE = "SELECT notify.send($1, 'system', 'bench')::text, pg_current_xact_id()::text"
BULK = "SELECT notify.send_bulk($1, 'system', 'bench', data => $2::jsonb)::text, pg_current_xact_id()::text"
DRAIN_TIMEOUT = 15.0
WARM_UP_SENDS, WARM_UP_RATE = 200, 400.0
# The relay's send: the peer's queue insert, NOTIFYing the recipient's id and then the message itself, keyed
# "relay<msg_id>" (bench.relay writes the message as it came; the sockets key it by its data.id).
RELAY_SEND = (
    "WITH m AS (INSERT INTO bench.queue (vt, message) VALUES (now(), jsonb_build_object('user_id', $1::uuid, "
    "'type', 'system', 'title', 'bench')) RETURNING msg_id) "
    "SELECT 'relay' || msg_id, pg_notify('bench_relay', $1::uuid::text || json_build_object('type', 'notification', "
    "'data', json_build_object('id', 'relay' || msg_id))::text) FROM m"
)


def latencies(calls: list[Call], receipts: dict[str, list[float]], key: Callable[[Call], str]) -> list[float]:
    """Receipt − commit ack, per receipt; key(call) is the receipts' key of what the call sent."""
    out: list[float] = []
    for call in calls:
        out.extend(t - call.ended for t in receipts.get(key(call), ()))
    return out


def floor_latencies(calls: list[Call], arrivals: dict[tuple[str, str], list[float]]) -> list[float]:
    out = []
    for call in calls:
        times = arrivals.get(("notify_notifications", call.result[1]))
        if times:
            out.append(times[0] - call.ended)
    return out


async def warm_up(conns: list[asyncpg.Connection], statement: str, users: list[uuid.UUID], fleet: Fleet,
                  received: int) -> int:  # fmt: skip
    """WARM_UP_SENDS sends not counted (each sender's first plans, the server's first wake-ups), drained and
    forgotten; returns the events the sockets have received then."""
    calls = await paced(conns, WARM_UP_RATE, WARM_UP_SENDS / WARM_UP_RATE,
                        lambda c, _i: c.fetchrow(statement, random.choice(users)))  # fmt: skip
    await asyncio.to_thread(fleet.wait_events, received + len(calls), DRAIN_TIMEOUT)
    await asyncio.to_thread(fleet.collect)
    return await asyncio.to_thread(fleet.events)


@dataclass
class Measured:
    """One single-row rate's run: its commit → socket latencies, messages delivered, the server's CPU seconds."""

    latencies: list[float]
    delivered: int
    cpu: float

    def cpu_ms_each(self) -> float | None:
        return 1000 * self.cpu / self.delivered if self.delivered else None


async def run(db: Database, scale: Scale, table: Table) -> None:
    users = [uuid.uuid4() for _ in range(scale.sockets)]
    notifyd = await run_notifyd(db, scale, table, users)
    relay = await run_relay(db, scale, users)
    for rate in RATES:
        ours, peer = notifyd[rate], relay[rate]
        label = f"at {rate:,.0f}/s offered"
        ours_cpu, peer_cpu = ours.cpu_ms_each(), peer.cpu_ms_each()
        table.add(
            Row("2", f"commit → WebSocket p95 {label}, vs the LISTEN → websockets relay (bench/relay.py)",
                ms(ours.latencies, 95), ms(peer.latencies, 95), "ms"),
            Row("2", f"commit → WebSocket p99 {label}, vs the relay", ms(ours.latencies, 99), ms(peer.latencies, 99),
                "ms"),
            Row("2", f"serve CPU per delivered message {label}, vs the relay ({ours.delivered:,} / "
                f"{peer.delivered:,} delivered)", ours_cpu, peer_cpu, "ms", target="≤ 2× relay",
                met=ours_cpu is not None and peer_cpu is not None and ours_cpu <= 2 * peer_cpu),
        )  # fmt: skip
    table.distribution(f"commit → socket at {NOMINAL_RATE:,.0f}/s: notifyd", notifyd[NOMINAL_RATE].latencies)
    table.distribution(f"commit → socket at {NOMINAL_RATE:,.0f}/s: LISTEN → websockets relay",
                       relay[NOMINAL_RATE].latencies)  # fmt: skip


async def run_relay(db: Database, scale: Scale, users: list[uuid.UUID]) -> dict[float, Measured]:
    """bench.relay with the same sockets (one per user), rates, senders and drain as notifyd's single-row runs."""
    proc, port = start_peer("bench.relay", db.cluster.log_dir / "relay.log", db.owner_url)
    fleet = Fleet(f"ws://127.0.0.1:{port}/", users, scale.sockets_per_process, live="authenticated")
    conns: list[asyncpg.Connection] = []
    out: dict[float, Measured] = {}
    try:
        await asyncio.to_thread(fleet.wait_open)
        conns = [await service_connection(db) for _ in range(SENDERS)]
        received = await warm_up(conns, RELAY_SEND, users, fleet, 0)
        for rate in RATES:
            cpu = cpu_seconds(proc.pid)
            calls = await paced(conns, rate, scale.seconds, lambda c, _i: c.fetchrow(RELAY_SEND, random.choice(users)))
            received += len(calls)
            await asyncio.to_thread(fleet.wait_events, received, DRAIN_TIMEOUT)
            cpu = cpu_seconds(proc.pid) - cpu
            receipts = await asyncio.to_thread(fleet.collect)
            ws = latencies(calls, receipts, lambda c: c.result[0])
            out[rate] = Measured(ws, len(ws), cpu)
    finally:
        for conn in conns:
            await conn.close()
        fleet.close()
        stop_peer(proc)
    return out


async def run_notifyd(db: Database, scale: Scale, table: Table, users: list[uuid.UUID]) -> dict[float, Measured]:
    server = db.server()
    assert server.proc is not None
    # Half the sockets opt out of the unread_count event that repeats a notification frame's count.
    fleet = Fleet(server.ws_url, users, scale.sockets_per_process, compact=frozenset(users[::2]))
    listener: Listener | None = None
    conns: list[asyncpg.Connection] = []
    out: dict[float, Measured] = {}
    try:
        await asyncio.to_thread(fleet.wait_open)
        table.add(Row("2", f"{fleet.opened:,} sockets opened and authenticated", fleet.open_seconds, unit="s"))
        listener = Listener(db.owner_url, ["notify_notifications"])
        conns = [await service_connection(db) for _ in range(SENDERS)]
        received = await warm_up(conns, SINGLE, users, fleet, await asyncio.to_thread(fleet.events))
        listener.collect()
        for rate in RATES:
            cpu = cpu_seconds(server.proc.pid)
            calls = await paced(conns, rate, scale.seconds, lambda c, _i: c.fetchrow(SINGLE, random.choice(users)))
            received += len(calls)
            drained = await asyncio.to_thread(fleet.wait_events, received, DRAIN_TIMEOUT)
            cpu = cpu_seconds(server.proc.pid) - cpu
            receipts = await asyncio.to_thread(fleet.collect)
            arrivals = await asyncio.to_thread(listener.collect)
            ws = latencies(calls, receipts, lambda c: c.result[0])
            floor = floor_latencies(calls, arrivals)
            got = sum(1 for c in calls if receipts.get(c.result[0]))
            dups = sum(1 for c in calls if len(receipts.get(c.result[0], ())) > 1)
            last = max((t for times in receipts.values() for t in times), default=time.monotonic())
            sustained = got / (last - min(c.scheduled for c in calls))
            label = f"at {rate:,.0f}/s offered"
            p95_target = rate == NOMINAL_RATE
            out[rate] = Measured(ws, len(ws), cpu)
            if p95_target:
                table.distribution(f"commit → socket at {rate:,.0f}/s: bare LISTEN (the floor)", floor)
            table.add(
                Row("2", f"commit → WebSocket p50 {label}", ms(ws, 50), ms(floor, 50), "ms"),
                Row("2", f"commit → WebSocket p95 {label}", ms(ws, 95), ms(floor, 95), "ms",
                    target="≤ 5 ms" if p95_target else "—", met=(ms(ws, 95) or 1e9) <= 5 if p95_target else None),
                Row("2", f"commit → WebSocket p99 {label}", ms(ws, 99), ms(floor, 99), "ms",
                    target="≤ 25 ms" if p95_target else "—", met=(ms(ws, 99) or 1e9) <= 25 if p95_target else None),
                Row("2", f"received {label} (sent {len(calls):,}, dups {dups}, drained {drained})",
                    float(got), float(len(calls)), "notifications"),
                Row("2", f"sustained single-row end to end {label}", sustained, achieved_rate(calls), "/s",
                    target="≥ 2,500/s" if rate > NOMINAL_RATE else "—",
                    met=sustained >= 2500 if rate > NOMINAL_RATE else None),
            )  # fmt: skip

        frames = await asyncio.to_thread(fleet.frames_per_notification)
        compact = frames[True]
        table.add(
            Row("2", "frames per notification, single-row sends (default), vs the relay", frames[False], 1.0,
                "frames"),
            Row("2", "frames per notification, single-row sends (?compact=1), vs the relay", compact, 1.0,
                "frames", target="1", met=compact is not None and compact <= 1.0),
        )  # fmt: skip

        # Batched: one send_bulk to BATCH random users per transaction, keyed by data.b.
        def bulk(conn: asyncpg.Connection, i: int) -> object:
            return conn.fetchrow(BULK, random.sample(users, BATCH), json.dumps({"b": f"bulk{rate:.0f}-{i}"}))

        for rate in BATCHED_RATES:
            calls = await paced(conns, rate / BATCH, scale.seconds, bulk)
            received += BATCH * len(calls)
            await asyncio.to_thread(fleet.wait_events, received, DRAIN_TIMEOUT)
            receipts = await asyncio.to_thread(fleet.collect)
            arrivals = await asyncio.to_thread(listener.collect)
            ws = latencies(calls, receipts, lambda c: f"bulk{rate:.0f}-{c.index}")  # noqa: B023 - used at once
            floor = floor_latencies(calls, arrivals)
            got = len(ws)
            last = max((t for times in receipts.values() for t in times), default=time.monotonic())
            sustained = got / (last - min(c.scheduled for c in calls))
            label = f"batched ({BATCH} per send_bulk) at {rate:,.0f}/s offered"
            # The targets: 100,000 a minute end to end with p95 under 50 ms, and 10,000/s batched.
            per_minute = rate == NOMINAL_RATE
            table.add(
                Row("2", f"commit → WebSocket p95, {label}", ms(ws, 95), ms(floor, 95), "ms",
                    target="< 50 ms" if per_minute else "—", met=(ms(ws, 95) or 1e9) < 50 if per_minute else None),
                Row("2", f"commit → WebSocket p99, {label}", ms(ws, 99), ms(floor, 99), "ms"),
                Row("2", f"sustained end to end, {label}", sustained, BATCH * achieved_rate(calls), "/s",
                    target="≥ 1,667/s (100,000/min)" if per_minute else "≥ 10,000/s",
                    met=sustained >= (0.98 * NOMINAL_RATE if per_minute else 10_000)),
            )  # fmt: skip
    finally:
        for conn in conns:
            await conn.close()
        if listener is not None:
            listener.close()
        fleet.close()
        server.stop()
    return out
