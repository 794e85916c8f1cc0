"""Scenario 1, creation: notify.send with the whole policy evaluated vs a bare INSERT into a table of the same shape.

Each client is an asyncpg connection of the NOINHERIT login role in role notify_service, sending to a
user of its own (one user's sends serialize on the recipient's row lock, which is not what concurrency
should measure here); one transaction per send. Every user has an address, one FCM device, a row for
the type (push and e-mail on, digest instant, a quiet-hours window that is not active) and an org whose
default the row overrides, so each send plans in-app, push and e-mail, takes rate-limit tokens and
defers two Procrastinate jobs. The floor goes into bench.plain (LIKE notify.notifications INCLUDING
DEFAULTS: no trigger, constraint or index). A second floor adds one pg_notify to that INSERT: every
send NOTIFYs, and PostgreSQL serializes notifying commits on one lock held through the WAL flush.
The peer is a pgmq-like queue: bench.queue has a minimal queue message's shape, and one send is its
INSERT … RETURNING plus a pg_notify of the id. Closed loop at 1, 8 and 16 clients (the peer's goals:
p50 at 1 client, rows/s at 8), then open loop at the nominal 1,667/s from 16 connections. Last, what
one send writes, one client sending WRITE_SENDS back to back: rows inserted + updated (pg_stat_user_tables
of the notify and procrastinate schemas; the peer's: bench) and WAL bytes per send: the delta of the WAL
position (the whole server's, so other databases' writes at the same time count too) and, read back with
pg_walinspect, the bytes of this database's own records.
Then sends on new sessions: a session plans its statements at first use and may plan them anew at
each of its first 5 calls, so the first call and calls 1..5 are shown beside a warm session's.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.common import NOMINAL_RATE, Database, Row, Scale, Table, achieved_rate, ms, paced, quantile

TYPE = "task"
WARMUP = 0.5  # seconds of each closed-loop run not counted: first plans and caches
CLIENTS = (1, 8, 16)
PEER_RATE_CLIENTS = 8
WRITE_SENDS = 500
SEND = "SELECT notify.send($1, 'task', 'bench', 'policy', 'normal')"
PLAIN = "INSERT INTO bench.plain (user_id, type, title, body, priority, seq) VALUES ($1, 'task', 'bench', 'policy', 'normal', 0)"  # noqa: E501
PLAIN_NOTIFY = f"WITH plain AS ({PLAIN} RETURNING 1) SELECT pg_notify('bench', '') FROM plain"
PEER = (
    "WITH m AS (INSERT INTO bench.queue (vt, message) VALUES (now(), jsonb_build_object('user_id', $1::uuid, "
    "'type', 'task', 'title', 'bench', 'body', 'policy', 'priority', 'normal')) RETURNING msg_id) "
    "SELECT pg_notify('bench_queue', msg_id::text) FROM m"
)
WRITES = (
    "SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0)::bigint, pg_current_wal_flush_lsn()::text "
    "FROM pg_stat_user_tables WHERE schemaname = ANY($1::text[])"
)
# The WAL between two positions: the whole server's, and this database's own (its records, and every record of
# a transaction that wrote to it, commits included), since other databases of a shared server write meanwhile.
WAL = (
    "WITH r AS (SELECT * FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn)), "
    "mine AS (SELECT DISTINCT xid FROM r WHERE xid <> '0' AND block_ref LIKE $3) "
    "SELECT pg_wal_lsn_diff($2::text::pg_lsn, $1::text::pg_lsn)::bigint, "
    "coalesce(sum(pg_wal_lsn_diff(end_lsn, start_lsn)) "
    "FILTER (WHERE block_ref LIKE $3 OR xid IN (SELECT xid FROM mine)), 0)::bigint FROM r"
)
SERVICE_CLAIMS = json.dumps({"sub": "bench", "role": "service"})
NEW_SESSIONS = 20  # sessions opened for the new-session figures, each making SESSION_CALLS calls in a row
SESSION_CALLS = 20


def setup(db: Database, users: list[uuid.UUID]) -> None:
    """The users as described above; the quiet-hours window lies 6 to 8 hours ahead, every day."""
    quiet_start = datetime.now(UTC) + timedelta(hours=6)
    org = uuid.uuid4()
    with db.owner() as owner:
        owner.execute(
            "INSERT INTO notify.org_notification_preferences (org_id, notification_type, push_enabled, email_enabled, "
            "digest_frequency) VALUES (%s, NULL, true, true, 'daily')",
            (org,),
        )
        for user in users:
            owner.execute(
                "INSERT INTO notify.recipients (user_id, email, timezone, org_id) VALUES (%s, %s, 'UTC', %s)",
                (user, f"{user.hex}@example.com", org),
            )
            owner.execute(
                "INSERT INTO notify.notification_preferences (user_id, notification_type, push_enabled, "
                "email_enabled, digest_frequency, quiet_hours_start, quiet_hours_end, quiet_hours_days) "
                "VALUES (%s, %s, true, true, 'instant', %s, %s, '[1, 2, 3, 4, 5, 6, 7]')",
                (user, TYPE, quiet_start.time(), (quiet_start + timedelta(hours=2)).time()),
            )
            owner.execute(
                "INSERT INTO notify.push_subscriptions (user_id, kind, fcm_token, token_hash) "
                "VALUES (%s, 'fcm', 'enc1.x.y', sha256(gen_random_uuid()::text::bytea))",
                (user,),
            )


async def service_connection(db: Database) -> asyncpg.Connection:
    conn = await asyncpg.connect(db.login_url)
    await conn.execute("SET ROLE notify_service")
    await conn.execute("SELECT set_config('request.jwt.claims', $1, false)", SERVICE_CLAIMS)
    return conn


async def closed_loop(conns: list[asyncpg.Connection], statement: str, users: list[uuid.UUID], seconds: float
                      ) -> list[float]:  # fmt: skip
    """Each client sends back to back for WARMUP + seconds; the latencies after the warm-up."""
    start = time.monotonic() + WARMUP
    stop = start + seconds
    latencies: list[float] = []

    async def client(conn: asyncpg.Connection, user: uuid.UUID) -> None:
        while (began := time.monotonic()) < stop:
            await conn.execute(statement, user)
            if began >= start:
                latencies.append(time.monotonic() - began)

    await asyncio.gather(*(client(c, u) for c, u in zip(conns, users, strict=True)))
    return latencies


def latency_rows(figure: str, sends: list[float], floor: list[float], seconds: float) -> list[Row]:
    return [
        Row("1", f"{figure}: rows/s", len(sends) / seconds, len(floor) / seconds, "rows/s"),
        Row("1", f"{figure}: p50", ms(sends, 50), ms(floor, 50), "ms"),
        Row("1", f"{figure}: p95", ms(sends, 95), ms(floor, 95), "ms"),
        Row("1", f"{figure}: p99", ms(sends, 99), ms(floor, 99), "ms"),
    ]


async def writes_per_send(owner: asyncpg.Connection, conn: asyncpg.Connection, statement: str, user: uuid.UUID,
                          schemas: list[str]) -> tuple[float, float, float]:  # fmt: skip
    """Per send over WRITE_SENDS sends, one per transaction: rows inserted + updated in schemas, WAL bytes of the
    whole server and WAL bytes of this database."""
    # A backend reports its table counts at most once a second unless told to: force it before each reading.
    await conn.execute("SELECT pg_stat_force_next_flush()")
    rows, start = await owner.fetchrow(WRITES, schemas)
    for _ in range(WRITE_SENDS):
        await conn.execute(statement, user)
    await conn.execute("SELECT pg_stat_force_next_flush()")
    rows_after, end = await owner.fetchrow(WRITES, schemas)
    oid = await owner.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
    server, own = await owner.fetchrow(WAL, start, end, f"%/{oid}/%")
    return (rows_after - rows) / WRITE_SENDS, server / WRITE_SENDS, own / WRITE_SENDS


async def run(db: Database, scale: Scale, table: Table) -> None:
    users = [uuid.uuid4() for _ in range(max(CLIENTS))]
    setup(db, users)
    seconds = max(1.0, scale.seconds / 4)
    conns = [await service_connection(db) for _ in users]
    try:
        for clients in CLIENTS:
            plain = await closed_loop(conns[:clients], PLAIN, users[:clients], seconds)
            notifying = await closed_loop(conns[:clients], PLAIN_NOTIFY, users[:clients], seconds)
            peer = await closed_loop(conns[:clients], PEER, users[:clients], seconds)
            send = await closed_loop(conns[:clients], SEND, users[:clients], seconds)
            table.add(*latency_rows(f"notify.send, {clients} client(s), closed loop", send, plain, seconds))
            table.add(Row("1", f"bare INSERT + pg_notify, {clients} client(s): rows/s", len(notifying) / seconds,
                          len(plain) / seconds, "rows/s"))  # fmt: skip
            if clients == 1:
                p50, peer50 = ms(send, 50), ms(peer, 50)
                table.add(Row("1", "notify.send p50, 1 client, vs the pgmq-like INSERT … RETURNING + pg_notify",
                              p50, peer50, "ms", target="≤ 2× peer",
                              met=p50 is not None and peer50 is not None and p50 <= 2 * peer50))  # fmt: skip
                table.distribution("creation: notify.send, 1 client", send)
                table.distribution("creation: pgmq-like peer, 1 client", peer)
            if clients == PEER_RATE_CLIENTS:
                table.add(Row("1", f"notify.send rows/s, {clients} clients, vs the pgmq-like peer",
                              len(send) / seconds, len(peer) / seconds, "rows/s", target="≥ 0.5× peer",
                              met=len(send) >= 0.5 * len(peer)))  # fmt: skip
        # The target's figure: creation p95 at the nominal rate (open loop, 16 connections, one user each).
        by_conn = dict(zip(map(id, conns), users, strict=True))

        async def paced_rows(statement: str) -> tuple[list[float], float]:
            calls = await paced(conns, NOMINAL_RATE, seconds,
                                lambda conn, _i: conn.execute(statement, by_conn[id(conn)]))  # fmt: skip
            return [c.ended - c.began for c in calls], achieved_rate(calls)

        plain_lat, plain_rate = await paced_rows(PLAIN)
        send_lat, send_rate = await paced_rows(SEND)
        p95, floor95 = quantile(send_lat, 95), quantile(plain_lat, 95)
        met = p95 is not None and floor95 is not None and p95 <= 0.005 and p95 <= 3 * floor95
        table.add(
            Row("1", f"creation at {NOMINAL_RATE:,.0f}/s offered: achieved rows/s", send_rate, plain_rate, "rows/s",
                target=f"{NOMINAL_RATE:,.0f}/s", met=send_rate >= 0.98 * NOMINAL_RATE),
            Row("1", f"creation p95 at {NOMINAL_RATE:,.0f}/s (open loop, 16 conns)", ms(send_lat, 95),
                ms(plain_lat, 95), "ms", target="≤ 5 ms and ≤ 3× bare", met=met),
            Row("1", f"creation p99 at {NOMINAL_RATE:,.0f}/s", ms(send_lat, 99), ms(plain_lat, 99), "ms"),
        )  # fmt: skip
        owner = await asyncpg.connect(db.owner_url)
        try:
            await owner.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            send_rows, send_server, send_wal = await writes_per_send(owner, conns[0], SEND, users[0],
                                                                     ["notify", "procrastinate"])  # fmt: skip
            peer_rows, peer_server, peer_wal = await writes_per_send(owner, conns[0], PEER, users[0], ["bench"])
        finally:
            await owner.close()
        table.add(
            Row("1", "row writes per send, in-app + push + e-mail (inserted + updated), vs the peer's", send_rows,
                peer_rows, "rows"),
            Row("1", "WAL per send, in-app + push + e-mail (this database's records), vs the peer's",
                send_wal / 1024, peer_wal / 1024, "kB", target="≤ 2 kB", met=send_wal <= 2048),
            Row("1", "  the same, pg_current_wal_lsn delta (whole server: other databases too)", send_server / 1024,
                peer_server / 1024, "kB"),
        )  # fmt: skip
        table.add(*await new_session_rows(db, users))
    finally:
        for conn in conns:
            await conn.close()


async def by_call(db: Database, statement: str, users: list[uuid.UUID]) -> list[list[float]]:
    """The latencies of calls 1..SESSION_CALLS, each over NEW_SESSIONS new sessions (one user each)."""
    calls: list[list[float]] = [[] for _ in range(SESSION_CALLS)]
    for session in range(NEW_SESSIONS):
        conn = await service_connection(db)
        try:
            for latencies in calls:
                began = time.monotonic()
                await conn.execute(statement, users[session % len(users)])
                latencies.append(time.monotonic() - began)
        finally:
            await conn.close()
    return calls


async def new_session_rows(db: Database, users: list[uuid.UUID]) -> list[Row]:
    """notify.send on new sessions vs the bare INSERT on new sessions: the first call, 1..5, 6..N."""
    send, plain = await by_call(db, SEND, users), await by_call(db, PLAIN, users)
    warm, warm_floor = ms(sum(send[5:], []), 50), ms(sum(plain[5:], []), 50)
    early = ms(sum(send[:5], []), 50)
    return [
        Row("1", f"send p50, warm session (calls 6..{SESSION_CALLS})", warm, warm_floor, "ms"),
        Row("1", "send p50, calls 1..5 of a new session", early, ms(sum(plain[:5], []), 50), "ms",
            target="< 2× warm", met=early is not None and warm is not None and early < 2 * warm),
        Row("1", "first send on a new session (p50)", ms(send[0], 50), ms(plain[0], 50), "ms"),
    ]  # fmt: skip
