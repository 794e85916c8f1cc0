"""Creation latency of notify.send with full policy evaluation, next to a bare INSERT into a table without triggers.

    .venv/bin/python bench/policy.py [--seconds 4] [--clients 1 8]

Makes its own database on the local server (make_database of bench/realtime.py). Each client is an
asyncpg connection of the NOINHERIT login role in role notify_service, sending to a user of its own
(the recipient's row lock serializes one user's senders, which is not what concurrency should
measure here); one transaction per send (one autocommit statement). Every user has an address, one
FCM device, a row for the type (push and e-mail on, digest instant, a quiet-hours window that is not
active) and an org whose default the row overrides, so each send plans in-app, push and e-mail, takes
rate-limit tokens and defers two Procrastinate jobs. The bare INSERT goes into
bench.bench_plain (LIKE notify.notifications INCLUDING DEFAULTS): the same columns and defaults,
no triggers, constraints or indexes. A third line adds one pg_notify to that INSERT: every send
NOTIFYs (notifyd's fan-out, Procrastinate's new jobs), and PostgreSQL serializes notifying commits on
one lock held through the commit's WAL flush, so that line is the floor of any notifying send under
concurrency. Prints the settings used, percentiles, and the ratio send / bare INSERT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.realtime import BENCH_SETTINGS, make_database, percentiles  # noqa: E402
from notifyd.localdb import resolve_server  # noqa: E402

TYPE = "task"
TARGET_P95 = 0.005
WARMUP = 0.5  # seconds of each run not counted: connections' first plans and caches
# Per-user limits raised for the run, so that no send waits for a token (or is refused past
# rate_limit.max_queued): the tokens are still taken, which is part of what is measured.
POLICY_SETTINGS = {
    **BENCH_SETTINGS,
    "rate_limit.push_per_hour": "1000000000",
    "rate_limit.email_per_day": "1000000000",
}
SEND = "SELECT notify.send($1, 'task', 'bench', 'policy', 'normal')"
PLAIN = (
    "INSERT INTO bench.bench_plain (user_id, type, title, body, priority, seq) VALUES ($1, 'task', 'bench', 'policy', "
    "'normal', 0)"
)
PLAIN_NOTIFY = f"WITH plain AS ({PLAIN} RETURNING 1) SELECT pg_notify('bench', '') FROM plain"
SERVICE_CLAIMS = json.dumps({"sub": "bench", "role": "service"})


def setup(owner_url: str, users: list[uuid.UUID]) -> None:
    """The users (as described above), their org's default, the bare table; the settings of this run."""
    # A window from 6 to 8 hours ahead, every day: read for every push, never holding one during the run.
    quiet_start = datetime.now(UTC) + timedelta(hours=6)
    org = uuid.uuid4()
    with psycopg.connect(owner_url, autocommit=True) as owner:
        for key, value in POLICY_SETTINGS.items():
            owner.execute("UPDATE notify.settings SET value = %s::jsonb WHERE key = %s", (value, key))
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
        owner.execute("CREATE SCHEMA bench")
        owner.execute("CREATE TABLE bench.bench_plain (LIKE notify.notifications INCLUDING DEFAULTS)")
        owner.execute("GRANT USAGE ON SCHEMA bench TO notify_service")
        owner.execute("GRANT INSERT ON bench.bench_plain TO notify_service")


async def client(login_url: str, statement: str, user: uuid.UUID, start: float, stop: float) -> list[float]:
    """Sends until `stop`; the latencies of the sends that began after `start`."""
    conn = await asyncpg.connect(login_url)
    try:
        await conn.execute("SET ROLE notify_service")
        await conn.execute("SELECT set_config('request.jwt.claims', $1, false)", SERVICE_CLAIMS)
        latencies = []
        while (began := time.perf_counter()) < stop:
            await conn.execute(statement, user)
            if began >= start:
                latencies.append(time.perf_counter() - began)
        return latencies
    finally:
        await conn.close()


async def run(login_url: str, statement: str, users: list[uuid.UUID], seconds: float) -> list[float]:
    start = time.perf_counter() + WARMUP
    runs = await asyncio.gather(*(client(login_url, statement, u, start, start + seconds) for u in users))
    return [latency for latencies in runs for latency in latencies]


def quantile(values: list[float], p: float) -> float:
    """The same rank as bench/realtime.py's percentiles."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def planned(owner_url: str) -> list[tuple[str, str, int]]:
    """What the sends planned, per channel and status: proof that every send went through the whole policy."""
    with psycopg.connect(owner_url) as owner:
        return [
            (r[0], r[1], r[2])
            for r in owner.execute(
                "SELECT channel, status, count(*) FROM notify.notification_deliveries GROUP BY 1, 2 ORDER BY 1, 2"
            )
        ]


async def bench(args: argparse.Namespace) -> None:
    server_url, cluster = resolve_server()
    name = f"notifyd_bench_policy_{os.getpid()}"
    try:
        owner_url, login_url = await make_database(server_url, name)
        users = [uuid.uuid4() for _ in range(max(args.clients))]
        setup(owner_url, users)
        with psycopg.connect(owner_url) as owner:
            server = owner.execute(
                "SELECT current_setting('server_version'), current_setting('synchronous_commit'), "
                "current_setting('fsync')"
            ).fetchone()
        assert server is not None
        print(f"notifyd policy bench: PostgreSQL {server[0]} (synchronous_commit {server[1]}, fsync {server[2]}), "
              f"{os.cpu_count()} cores, {args.seconds:g} s per run after {WARMUP:g} s warm-up, "
              "one transaction per send")  # fmt: skip
        print(f"  settings used: {POLICY_SETTINGS}")
        print("  each user: address, 1 FCM device, type row (push on, e-mail on, digest instant, quiet hours "
              "not active), org default (digest daily)")  # fmt: skip
        for clients in args.clients:
            plain = await run(login_url, PLAIN, users[:clients], args.seconds)
            notifying = await run(login_url, PLAIN_NOTIFY, users[:clients], args.seconds)
            send = await run(login_url, SEND, users[:clients], args.seconds)
            print(f"  {clients} client(s):")
            print(f"    bare INSERT, no triggers   ({len(plain):6} sends): {percentiles(plain)}")
            print(f"    bare INSERT + pg_notify    ({len(notifying):6} sends): {percentiles(notifying)}")
            print(f"    notify.send, full policy   ({len(send):6} sends): {percentiles(send)}")
            p50, p95 = (quantile(send, p) / quantile(plain, p) for p in (50, 95))
            verdict = "met" if quantile(send, 95) <= TARGET_P95 else "NOT met"
            print(f"    ratio send / bare: p50 {p50:.1f}x, p95 {p95:.1f}x; target p95 <= 5 ms: {verdict}")
        print(f"  deliveries planned (channel, status, count): {planned(owner_url)}")
    finally:
        with psycopg.connect(server_url, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if cluster is not None:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per run (3 per client count)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="concurrent clients per run")
    args = parser.parse_args()
    asyncio.run(asyncio.wait_for(bench(args), 3 * len(args.clients) * (args.seconds + WARMUP) + 120))


if __name__ == "__main__":
    main()
