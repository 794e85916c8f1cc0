"""Scenario 3t, topics: one notify.send_topic to a topic of 10,000 and of 100,000 followers, measured as scenario 3
measures send_bulk (bulk.fan_out): until the statement committed, and until every online session (the first
`sockets` followers, one socket each) received it; beside the same floor, INSERT … SELECT of the same rows.

batch.max_recipients is put back to its shipped 10,000 here (the run raises it to 100,000 for send_bulk), so a
topic of 100,000 goes in ten chunks, as it would on an installation that never changed it; the global rate stays
raised (bench.common.BENCH_SETTINGS), and a bulk send of in-app rows spends none of it anyway.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import psycopg

from bench.bulk import fan_out
from bench.common import Database, Scale, Table

CHUNK = 10_000  # the shipped batch.max_recipients
SEND_TOPIC = "SELECT notify.send_topic($1, 'system', 'bench topic', data => $2::jsonb)"


def topic_of(size: int) -> str:
    return f"bench-{size}"


def follow(owner: psycopg.Connection[Any], recipients: dict[int, list[uuid.UUID]]) -> None:
    owner.execute("UPDATE notify.settings SET value = %s WHERE key = 'batch.max_recipients'", (json.dumps(CHUNK),))
    for size, users in recipients.items():
        owner.execute(
            "INSERT INTO notify.topic_subscriptions (user_id, topic) SELECT unnest(%s::uuid[]), %s",
            (users, topic_of(size)),
        )


async def send_topic(conn: asyncpg.Connection, users: list[uuid.UUID], key: str) -> object:
    return await conn.fetchval(SEND_TOPIC, topic_of(len(users)), json.dumps({"b": key}), timeout=300)


async def run(db: Database, scale: Scale, table: Table) -> None:
    print(f"topics: batch.max_recipients {CHUNK:,} (the chunk of a topic send)")
    await fan_out(db, scale, table, "3t", "send_topic", send_topic, follow)
