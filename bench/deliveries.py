"""Deliveries per second through `notifyd worker` to local stand-ins, and commit → job queued / started latency.

    .venv/bin/python bench/deliveries.py [--emails 2000] [--pushes 1000] [--latency-samples 300]

Makes its own database on the local server, starts a real worker as the NOINHERIT login role,
and points it at the test suite's Resend and Web Push stand-ins (which verify VAPID and decrypt
every push) on 127.0.0.1. Prints the figures and the settings it used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.realtime import make_database, percentiles  # noqa: E402
from notifyd.crypto import SecretBox, parse_key, token_hash  # noqa: E402
from notifyd.localdb import resolve_server  # noqa: E402
from tests.server import ENCRYPTION_KEY, TEST_ENV, WorkerProcess, wait_for  # noqa: E402
from tests.standins.push_service import PushService  # noqa: E402
from tests.standins.resend import ResendService  # noqa: E402

WORKER_ENV = {"WORKER_CONCURRENCY": "8", "PROVIDER_TIMEOUT": "10"}


def throughput(owner: psycopg.Connection, channel: str, users: list[uuid.UUID], title: str) -> float:
    """Sends one critical notification to every user in one bulk call; deliveries/s until all are sent."""
    started = time.monotonic()
    owner.execute(
        "SELECT notify.send_bulk(%s, 'security', %s, 'bench', 'critical', channels => %s)", (users, title, [channel])
    )
    wait_for(lambda: not pending(owner, channel), timeout=600, interval=0.2, what=f"{channel} deliveries")
    return len(users) / (time.monotonic() - started)


def pending(owner: psycopg.Connection, channel: str) -> int:
    row = owner.execute(
        "SELECT count(*) FROM notify.notification_deliveries WHERE channel = %s AND status = 'pending'", (channel,)
    ).fetchone()
    assert row is not None
    return int(row[0])


async def queue_latency(owner_url: str, samples: int) -> tuple[list[float], list[float]]:
    """Commit returned → Procrastinate's job NOTIFY received, and commit → the provider accepted the e-mail."""
    listener = await asyncpg.connect(owner_url)
    sender = await asyncpg.connect(owner_url)
    arrived: asyncio.Queue[float] = asyncio.Queue()
    await listener.add_listener("procrastinate_any_queue_v1", lambda *_: arrived.put_nowait(time.perf_counter()))
    queued = []
    user = uuid.uuid4()
    await sender.execute("SELECT notify.upsert_recipient($1, 'latency@example.com')", user)
    for _ in range(samples):
        async with sender.transaction():
            await sender.execute(
                "SELECT notify.send($1, 'security', 'latency', priority => 'critical', channels => '{email}')", user
            )
        committed = time.perf_counter()
        queued.append(await asyncio.wait_for(arrived.get(), 5) - committed)
        await asyncio.sleep(0.02)
    await asyncio.sleep(2)
    # From the ledger: created in the sender's transaction, sent when the provider answered.
    rows = await sender.fetch(
        """SELECT extract(epoch FROM d.sent_at - d.created_at)::float8 FROM notify.notification_deliveries AS d
           WHERE d.user_id = $1 AND d.channel = 'email' AND d.status = 'sent'""",
        user,
    )
    await listener.close()
    await sender.close()
    return queued, [r[0] for r in rows]  # the second list: commit → sent


def push_users(owner: psycopg.Connection, push: PushService, count: int) -> list[uuid.UUID]:
    box = SecretBox(parse_key(ENCRYPTION_KEY))
    key = owner.execute("SELECT id, public_key FROM notify.current_vapid_key()").fetchone()
    assert key is not None and key[0] is not None, "the worker makes the first VAPID key"
    users = [uuid.uuid4() for _ in range(count)]
    with owner.cursor() as cur:
        for user in users:
            sub = push.subscribe(key[1])
            cur.execute("INSERT INTO notify.recipients (user_id) VALUES (%s)", (user,))
            cur.execute(
                "INSERT INTO notify.push_subscriptions (user_id, kind, endpoint, p256dh_key, auth_key, token_hash,"
                " vapid_key_id) VALUES (%s, 'webpush', %s, %s, %s, %s, %s)",
                (user, sub["endpoint"], box.encrypt(sub["keys"]["p256dh"]), box.encrypt(sub["keys"]["auth"]),
                 token_hash(sub["endpoint"]), key[0]),
            )  # fmt: skip
    return users


async def main(args: argparse.Namespace) -> None:
    server_url, cluster = resolve_server()
    name = f"notifyd_bench_deliveries_{os.getpid()}"
    owner_url, login_url = await make_database(server_url, name)
    resend = ResendService().start()
    push = PushService().start()
    env = {
        **WORKER_ENV,
        "RESEND_API_KEY": resend.api_key,
        "RESEND_API_URL": resend.url,
        "RESEND_FROM_EMAIL": "bench@example.com",
    }
    worker = WorkerProcess(login_url, Path(tempfile.mkdtemp()) / "worker.log", **env)
    try:
        worker.start()
        with psycopg.connect(owner_url, autocommit=True) as owner:
            job_size = owner.execute("SELECT value FROM notify.settings WHERE key = 'delivery.job_size'").fetchone()
            emails = [uuid.uuid4() for _ in range(args.emails)]
            for user in emails:
                owner.execute("SELECT notify.upsert_recipient(%s, %s)", (user, f"{user.hex[:12]}@example.com"))
            queued, sent = await queue_latency(owner_url, args.latency_samples)
            email_rate = throughput(owner, "email", emails, "bench e-mail")
            push_rate = throughput(owner, "push", push_users(owner, push, args.pushes), "bench push")
            assert len(push.messages) == args.pushes, "every push arrived, VAPID-verified and decrypted"
        print(f"settings: delivery.job_size={job_size[0] if job_size else '?'}, {WORKER_ENV}, "
              f"TEST_ENV keys={sorted(TEST_ENV)}")  # fmt: skip
        print(f"commit -> job NOTIFY received ({len(queued)}):   {percentiles(queued)}")
        print(f"commit -> e-mail accepted by Resend ({len(sent)}): {percentiles(sent)}")
        print(f"e-mail to the Resend stand-in: {args.emails} deliveries, {email_rate:8.1f} deliveries/s")
        print(f"Web Push to the push stand-in: {args.pushes} deliveries, {push_rate:8.1f} deliveries/s")
    finally:
        worker.stop()
        resend.stop()
        push.stop()
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--pushes", type=int, default=1000)
    parser.add_argument("--latency-samples", type=int, default=300)
    asyncio.run(main(parser.parse_args()))
