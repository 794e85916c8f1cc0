"""Scenario 3, bulk: one send_bulk to 10,000 and to 100,000 recipients vs INSERT … SELECT of the same rows.

The recipients exist beforehand (no address, so each notification is in-app only); the first `sockets`
of them are online, one socket each, and are among the recipients of both sends. Timed from the call:
until the statement committed (every row), and until every online session received its notification
(the events carry data.b, the send's key). The floor: INSERT … SELECT into bench.plain (same columns and
defaults, no trigger, constraint or index) of the same number of rows, as notify_service.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg

from bench.common import Database, Row, Scale, Table
from bench.creation import service_connection
from bench.sockets import Fleet

SEND_BULK = "SELECT notify.send_bulk($1, 'system', 'bench bulk', data => $2::jsonb)"
PLAIN = (
    "INSERT INTO bench.plain (user_id, type, title, data, seq) "
    "SELECT u, 'system', 'bench bulk', $2::jsonb, 0 FROM unnest($1::uuid[]) AS u"
)
RECEIPT_TIMEOUT = 60.0
PROJECTED_LIMIT = 60.0  # seconds: a larger send whose time, projected from the smaller one's, exceeds it is skipped


# A send under test: (service connection, its recipients in order, the key its events carry in data.b).
Send = Callable[[asyncpg.Connection, list[uuid.UUID], str], Awaitable[object]]
# Run as the owner before the first send: what the send's recipients need besides existing (e.g. to follow a topic).
Prepare = Callable[[psycopg.Connection[Any], dict[int, list[uuid.UUID]]], None]


async def fan_out(
    db: Database, scale: Scale, table: Table, scenario: str, name: str, send: Send, prepare: Prepare | None = None
) -> None:
    """Times `send` to each of scale.bulk_sizes recipients: until committed, and until every online session got it."""
    server = db.server()
    online = [uuid.uuid4() for _ in range(min(scale.sockets, min(scale.bulk_sizes)))]
    offline = [uuid.uuid4() for _ in range(max(scale.bulk_sizes) - len(online))]
    recipients = {size: online + offline[: size - len(online)] for size in scale.bulk_sizes}
    with db.owner() as owner:
        owner.execute("INSERT INTO notify.recipients (user_id) SELECT unnest(%s::uuid[])", (online + offline,))
        if prepare is not None:
            prepare(owner, recipients)
        owner.execute("VACUUM ANALYZE")
    fleet = Fleet(server.ws_url, online, scale.sockets_per_process)
    conn = await service_connection(db)
    try:
        await asyncio.to_thread(fleet.wait_open)
        received = await asyncio.to_thread(fleet.events)
        rate = None
        for size in scale.bulk_sizes:
            if rate is not None and size / rate > PROJECTED_LIMIT:
                table.add(Row(scenario, f"{name} to {size:,}: skipped", None, text=f"projected {size / rate:.0f} s "
                              f"at {rate:,.0f} rows/s > {PROJECTED_LIMIT:g} s"))  # fmt: skip
                continue
            users = recipients[size]
            key = f"{name}{size}"
            started = time.monotonic()
            await send(conn, users, key)
            committed = time.monotonic() - started
            rate = size / committed
            received += len(online)
            complete = await asyncio.to_thread(fleet.wait_events, received, RECEIPT_TIMEOUT)
            receipts = (await asyncio.to_thread(fleet.collect)).get(key, [])
            everyone = (max(receipts) - started) if receipts and complete else None
            started = time.monotonic()
            await conn.execute(PLAIN, users, json.dumps({"b": key}), timeout=300)
            floor = time.monotonic() - started
            target = scenario == "3" and size == 10_000
            table.add(
                Row(scenario, f"{name} to {size:,}: all rows committed", committed, floor, "s"),
                Row(scenario, f"{name} to {size:,}: every online session ({len(online):,}) received", everyone,
                    floor, "s", target="≤ 1 s" if target else "—",
                    met=(everyone is not None and everyone <= 1.0) if target else None,
                    text=None if everyone is not None else f"{len(receipts):,} of {len(online):,} in "
                    f"{RECEIPT_TIMEOUT:g} s"),
                Row(scenario, f"{name} to {size:,}: rows/s", size / committed, size / floor, "rows/s"),
            )  # fmt: skip
    finally:
        await conn.close()
        fleet.close()


async def send_bulk(conn: asyncpg.Connection, users: list[uuid.UUID], key: str) -> object:
    return await conn.fetchval(SEND_BULK, users, json.dumps({"b": key}), timeout=300)


async def run(db: Database, scale: Scale, table: Table) -> None:
    await fan_out(db, scale, table, "3", "send_bulk", send_bulk)
