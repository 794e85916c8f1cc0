"""Scenario 7, burst: 3× the nominal rate (5,000 notifications/s) for a third of the burst, then 10× (16,670/s) for
60 s, with 1% of the sockets not reading.

N sockets on one notifyd, 1% of them (at least one) opened with a 4 KB receive buffer and never read.
Offered: send_bulk to BATCH random users per transaction at 10 × 1,667 / BATCH transactions/s (open
loop, 16 connections; no 2-core box commits 16,670 single-row notifying transactions a second). Every
100 ms: pg_notification_queue_usage() and notifyd's RSS. Figures: the rate achieved, the send's p99
(from its start, and from its slot in the schedule: the queueing a burst adds), drain time (last
commit → last receipt by a reading socket, all of them received), the queue's peak, RSS before / peak.
At 3× the figure with a target is the creation p99 from the slot (under 1 s); a send the schedule could not
start before the run's end counts as a miss (the open loop drops it).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import asyncpg

from bench.common import NOMINAL_RATE, Database, Row, Scale, Table, ms, paced, rss_kb
from bench.creation import service_connection
from bench.sockets import Fleet

SENDERS = 16
BATCH = 10
MODERATE = 3  # × the nominal rate, first, for a third of the burst's seconds
MODERATE_P99 = 1.0  # seconds, from the slot
BULK = "SELECT notify.send_bulk($1, 'system', 'burst', data => $2::jsonb)"
DRAIN_TIMEOUT = 120.0


async def run(db: Database, scale: Scale, table: Table) -> None:
    server = db.server()
    assert server.proc is not None
    pid = server.proc.pid
    users = [uuid.uuid4() for _ in range(scale.sockets)]
    slow = frozenset(users[: max(1, len(users) // 100)])
    fleet = Fleet(server.ws_url, users, scale.sockets_per_process, not_reading=slow)
    conns: list[asyncpg.Connection] = []
    owner = await asyncpg.connect(db.owner_url)
    peaks = {"queue": 0.0, "rss": 0}
    sampling = True

    async def sample() -> None:
        while sampling:
            peaks["queue"] = max(peaks["queue"], await owner.fetchval("SELECT pg_notification_queue_usage()"))
            peaks["rss"] = max(peaks["rss"], rss_kb(pid))
            await asyncio.sleep(0.1)

    try:
        await asyncio.to_thread(fleet.wait_open)
        conns = [await service_connection(db) for _ in range(SENDERS)]
        await asyncio.sleep(2)
        rss_before = rss_kb(pid)
        baseline = await asyncio.to_thread(fleet.events)
        recipients: dict[int, list[uuid.UUID]] = {}

        def send(conn: asyncpg.Connection, i: int) -> object:
            recipients[i] = random.sample(users, BATCH)
            return conn.fetchval(BULK, recipients[i], json.dumps({"b": f"burst{i}"}))

        moderate_rate = MODERATE * NOMINAL_RATE / BATCH
        moderate = await paced(conns, moderate_rate, scale.burst_seconds / 3, send)
        offered = int(moderate_rate * scale.burst_seconds / 3)
        moderate_p99 = ms([c.ended - c.scheduled for c in moderate], 99)
        table.add(
            Row("7", f"burst at {MODERATE}× nominal ({MODERATE * NOMINAL_RATE:,.0f}/s, {scale.burst_seconds / 3:g} s): "
                f"creation p99 from its slot ({offered - len(moderate):,} of {offered:,} sends dropped)",
                moderate_p99, None, "ms", target=f"< {MODERATE_P99 * 1000:,.0f} ms",
                met=moderate_p99 is not None and moderate_p99 < MODERATE_P99 * 1000 and len(moderate) == offered),
        )  # fmt: skip
        baseline += sum(1 for c in moderate for u in recipients[c.index] if u not in slow)
        await asyncio.to_thread(fleet.wait_events, baseline, DRAIN_TIMEOUT)
        await asyncio.to_thread(fleet.collect)  # the 10× burst's receipts alone from here on
        recipients.clear()
        sampler = asyncio.create_task(sample())
        calls = await paced(conns, 10 * NOMINAL_RATE / BATCH, scale.burst_seconds, send)
        last_commit = max(c.ended for c in calls)
        expected = sum(1 for c in calls for u in recipients[c.index] if u not in slow)
        drained = await asyncio.to_thread(fleet.wait_events, baseline + expected, DRAIN_TIMEOUT)
        sampling = False
        await sampler
        receipts = await asyncio.to_thread(fleet.collect)
        last_receipt = max((t for times in receipts.values() for t in times), default=last_commit)
        got = sum(len(times) for times in receipts.values())
        sent = BATCH * len(calls)
        achieved = sent / (last_commit - min(c.scheduled for c in calls))
        service = [c.ended - c.began for c in calls]
        from_slot = [c.ended - c.scheduled for c in calls]
        table.add(
            Row("7", f"burst: notifications/s committed ({BATCH} per send_bulk, {scale.burst_seconds:g} s)", achieved,
                10 * NOMINAL_RATE, "/s", floor_text=f"{10 * NOMINAL_RATE:,.0f} /s offered"),
            Row("7", f"burst: creation p99 (send_bulk of {BATCH}) from its start", ms(service, 99), None, "ms"),
            Row("7", "burst: creation p99 from its slot in the schedule", ms(from_slot, 99), None, "ms"),
            Row("7", f"burst: drain, last commit → last receipt ({got:,} of {expected:,} received)",
                last_receipt - last_commit if drained else None, None, "s",
                text=None if drained else f"not drained in {DRAIN_TIMEOUT:g} s"),
            Row("7", "burst: pg_notification_queue_usage() peak", peaks["queue"] * 100, None, "%"),
            Row("7", f"burst: notifyd RSS peak ({len(slow)} of {len(users):,} sockets not reading)",
                peaks["rss"] / 1024, rss_before / 1024, "MB", floor_text=f"{rss_before / 1024:.0f} MB before"),
        )  # fmt: skip
    finally:
        sampling = False
        for conn in conns:
            await conn.close()
        await owner.close()
        fleet.close()
