"""Scenario 6, queries: the notification center's list and unread count for a user with many notifications.

Builds notify.notifications set-based (INSERT … SELECT generate_series, as the owner with
session_replication_role = replica so no row trigger runs; the table's own indexes dropped during the
load and made again after it, then VACUUM ANALYZE): one user with `user_rows` notifications (every
other one read), the rest spread 100 per user; the build is timed. Then notifyd's REST, as that user
with a keep-alive client, one request at a time: GET /api/v1/notifications (a page of 20, newest
first) and GET /api/v1/notifications/unread-count. The floors: the same reads as bare SQL by the owner
(no HTTP, no RLS). Last, commit → e-mail accepted by the Resend stand-in (bench.delivery.email_latency).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx

from bench.common import Database, Row, Scale, Table, ms
from bench.delivery import email_latency
from tests.server import make_token

PER_OTHER_USER = 100
TYPES = "ARRAY['system', 'user', 'task', 'security', 'billing', 'workflow', 'agent']"
ROWS = (
    "INSERT INTO notify.notifications (id, user_id, type, title, body, seq, created_at, updated_at, read_at) "
    "SELECT notify_private.uuid_v7_at(now() - g * interval '1 second'), "
    f"{{user}}, ({TYPES})[1 + mod(g, 7)], 'Notification ' || g, 'a body of some length for the center', g, "
    "now() - g * interval '1 second', now() - g * interval '1 second', "
    "CASE WHEN mod(g, 2) = 0 THEN now() END FROM {source}"
)
BARE_LIST = (
    "SELECT * FROM notify.notifications WHERE user_id = $1 AND deleted_at IS NULL "
    "ORDER BY created_at DESC, id DESC LIMIT 20"
)
BARE_UNREAD = (
    "SELECT type, count(*) FROM notify.notifications WHERE user_id = $1 AND read_at IS NULL "
    "AND deleted_at IS NULL GROUP BY type"
)


def build(db: Database, user: uuid.UUID, table_rows: int, user_rows: int) -> tuple[float, float]:
    """Seconds to load the rows (with the indexes made again), and seconds of VACUUM ANALYZE."""
    others = max(0, (table_rows - user_rows) // PER_OTHER_USER)
    started = time.monotonic()
    with db.owner() as owner:
        owner.execute("SET session_replication_role = replica")
        indexes = [
            r[0]
            for r in owner.execute(
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index AS i WHERE i.indrelid = 'notify.notifications'"
                "::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)"
            )
        ]
        owner.execute(
            "DO $$ DECLARE r record; BEGIN FOR r IN SELECT i.indexrelid::regclass AS name FROM pg_index AS i "
            "WHERE i.indrelid = 'notify.notifications'::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c "
            "WHERE c.conindid = i.indexrelid) LOOP EXECUTE 'DROP INDEX ' || r.name; END LOOP; END $$"
        )
        owner.execute("CREATE TEMP TABLE others AS SELECT gen_random_uuid() AS user_id FROM generate_series(1, %s)",
                      (others,))  # fmt: skip
        owner.execute("INSERT INTO notify.recipients (user_id, last_seq) VALUES (%s, %s)", (user, user_rows))
        owner.execute("INSERT INTO notify.recipients (user_id, last_seq) SELECT user_id, %s FROM others",
                      (PER_OTHER_USER,))  # fmt: skip
        owner.execute(ROWS.format(user="%s::uuid", source="generate_series(1, %s) AS g"), (user, user_rows))
        owner.execute(ROWS.format(user="o.user_id", source=f"others AS o, generate_series(1, {PER_OTHER_USER}) AS g"))
        for definition in indexes:
            owner.execute(definition)
        loaded = time.monotonic() - started
        started = time.monotonic()
        owner.execute("VACUUM ANALYZE notify.notifications")
        owner.execute("VACUUM ANALYZE notify.recipients")
        return loaded, time.monotonic() - started


async def timed(samples: int, call: object) -> list[float]:
    out = []
    for _ in range(samples):
        began = time.monotonic()
        await call()  # type: ignore[operator]
        out.append(time.monotonic() - began)
    return out


async def center_reads(
    db: Database, user: uuid.UUID, user_rows: int, samples: int
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Seconds of the list and of the unread count over notifyd's REST as `user` (every other one of whose
    `user_rows` is read), then of the same reads as bare SQL by the owner: `samples` each, after a warm-up."""
    server = db.server()
    headers = {"Authorization": f"Bearer {make_token(user, exp_in=3600)}"}
    bare = await asyncpg.connect(db.owner_url)
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:

            async def page() -> None:
                response = await client.get("/api/v1/notifications")
                assert response.status_code == 200 and len(response.json()["items"]) == 20, response.text[:300]

            async def unread() -> None:
                response = await client.get("/api/v1/notifications/unread-count")
                assert response.status_code == 200, response.text[:300]
                assert response.json()["count"] == user_rows - user_rows // 2, response.text[:300]

            for call in (page, unread, lambda: bare.fetch(BARE_LIST, user), lambda: bare.fetch(BARE_UNREAD, user)):
                await timed(5, call)  # warm: plans, caches, connections
            rest_list = await timed(samples, page)
            rest_unread = await timed(samples, unread)
            sql_list = await timed(samples, lambda: bare.fetch(BARE_LIST, user))
            sql_unread = await timed(samples, lambda: bare.fetch(BARE_UNREAD, user))
    finally:
        await bare.close()
        server.stop()
    return rest_list, rest_unread, sql_list, sql_unread


async def center_rows(db: Database, user: uuid.UUID, scale: Scale, scenario: str, who: str) -> tuple[Row, Row]:
    """The list and the unread count of `user`'s center (center_reads) as rows: p95 over REST, bare SQL the
    floor, against the spec's 200 ms."""
    rest_list, rest_unread, sql_list, sql_unread = await center_reads(db, user, scale.user_rows, scale.query_samples)

    def row(figure: str, rest: list[float], sql: list[float]) -> Row:
        p95 = ms(rest, 95)
        return Row(scenario, f"{figure} p95, REST, {who}", p95, ms(sql, 95), "ms", target="< 200 ms (spec)",
                   met=(p95 or 1e9) < 200)  # fmt: skip

    return row("list (page of 20)", rest_list, sql_list), row("unread count", rest_unread, sql_unread)


async def run(db: Database, scale: Scale, table: Table) -> None:
    user = uuid.uuid4()
    loaded, analyzed = await asyncio.to_thread(build, db, user, scale.table_rows, scale.user_rows)
    with db.owner() as owner:
        row = owner.execute("SELECT count(*), pg_total_relation_size('notify.notifications') "
                            "FROM notify.notifications").fetchone()  # fmt: skip
    assert row is not None
    table.add(
        Row("6", f"build {row[0]:,} rows ({row[1] / 2**30:.1f} GiB with indexes), INSERT … SELECT + indexes",
            loaded, None, "s"),
        Row("6", "  VACUUM ANALYZE after it", analyzed, None, "s"),
    )  # fmt: skip
    table.add(*await center_rows(db, user, scale, "6", f"user with {scale.user_rows:,} in {row[0]:,}"))
    queued, sent, floor = await email_latency(db, scale.email_samples)
    table.add(
        Row("6", f"commit → job NOTIFY received p95 ({len(queued)} e-mails)", ms(queued, 95), None, "ms"),
        Row("6", f"commit → e-mail accepted by the Resend stand-in p95 ({len(sent)})", ms(sent, 95), ms(floor, 95),
            "ms", target="< 5 s (spec)", met=len(sent) == scale.email_samples and (ms(sent, 95) or 1e9) < 5000),
    )  # fmt: skip
