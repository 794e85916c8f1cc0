"""Scenario 5, delivery: e-mail and Web Push deliveries/s through `notifyd worker` to fast local provider sinks.

A real worker (WORKER_CONCURRENCY 8, delivery.job_size raised for the run) sends to bench.sinks' Resend and
Web Push sinks on 127.0.0.1, each a uvloop process of its own: the test suite's stand-ins answer a few hundred
requests/s, below what is measured here. The push sink verifies the ES256 signature of every distinct VAPID
JWT and decrypts one body in 20 (the subscriptions share one key pair, made here); see bench.sinks. One
send_bulk (critical, one channel) to every user; deliveries/s from its commit until the ledger's last outcome
(the database's clock); the sink must then have accepted each e-mail (Idempotency-Key) or each endpoint
exactly once. The floor is the sink's own ceiling: the very requests the worker made, replayed straight at
it over 16 keep-alive connections from a process of its own. Per delivery: the worker's CPU time (a per-call
cost, which other load on the machine sways less than the rate), the commits of the whole cluster's database
(pg_stat_database.xact_commit, less the bench's own polls), the NOTIFYs of transactions other than the send
itself (notify_notifications per statement, Procrastinate's job_inserted per job), and for Web Push the VAPID
signatures the sink verified; and the CPU split: the worker's, its PostgreSQL backends' and the sink's CPU
seconds per delivery, as shares of the three and the cores they kept busy (on two cores they share them, so
that, not a second worker, says what one worker can reach). A third run pushes to a sink that answers
ROUND_TRIP late, as a push service afar: pushes in flight (notifyd.domain.webpush.PARALLEL_SENDS), not CPU,
bound that rate; its floor is the replay over as many connections. Then e-mails again through a worker with
RESEND_MAX_CONCURRENCY at WIDE_EMAIL_CONCURRENCY, beside the default's rate. On a machine with SCALING_CORES or more,
two worker processes then deliver e-mails and pushes again, beside one. Last, the peer: Procrastinate's own
rate, one worker (bench/noop_worker.py, the same concurrency) running as many no-op jobs as there were
e-mails, beside the e-mail deliveries/s.

Also here, for scenario 6: commit → e-mail accepted by the Resend stand-in, one send at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import psycopg
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench import noop_worker
from bench.common import LOGIN, PROCESS_ENV, Database, Row, Scale, Table, cpu_seconds, quantile
from bench.memory import start_peer, stop_peer
from bench.sinks import SinkProcess, replay
from bench.sockets import Listener
from notifyd.core.config import Settings
from notifyd.core.crypto import SecretBox, b64url, parse_key, token_hash
from notifyd.domain.webpush import PARALLEL_SENDS
from tests.server import ENCRYPTION_KEY, wait_for
from tests.standins.resend import ResendService

REPLAY_CONNECTIONS = 16
# E-mails in flight per worker measured beside the default (RESEND_MAX_CONCURRENCY).
WIDE_EMAIL_CONCURRENCY = 16
# A push service's answer from afar: what bounds the rate is then pushes in flight, not CPU.
ROUND_TRIP = 0.05
DECRYPT_EVERY = 20
API_KEY = "re_bench_0123456789abcdef"
POLL = 0.2
NOOP_POLL = 0.02
CHANNELS = ["notify_notifications", "procrastinate_any_queue_v1"]
# Two workers are measured against one only where they need not share cores with PostgreSQL and the sinks.
SCALING_CORES = 4


def worker_env(resend_url: str, api_key: str) -> dict[str, str]:
    return {"RESEND_API_KEY": api_key, "RESEND_API_URL": resend_url, "RESEND_FROM_EMAIL": "bench@example.com"}


def pending(owner: psycopg.Connection[Any], channel: str) -> int:
    row = owner.execute(
        "SELECT count(*) FROM notify.notification_deliveries WHERE channel = %s AND status = 'pending'", (channel,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def commits(owner: psycopg.Connection[Any]) -> int:
    row = owner.execute(
        "SELECT pg_stat_force_next_flush(), xact_commit FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(row[1])


def email_users(owner: psycopg.Connection[Any], count: int) -> list[uuid.UUID]:
    users = [uuid.uuid4() for _ in range(count)]
    owner.execute(
        "INSERT INTO notify.recipients (user_id, email) SELECT u, replace(u::text, '-', '') || '@example.com' "
        "FROM unnest(%s::uuid[]) AS u",
        (users,),
    )
    return users


def push_users(owner: psycopg.Connection[Any], push_url: str, p256dh: str, auth: str, count: int) -> list[uuid.UUID]:
    """Users with one Web Push subscription each at the sink; all share the browser-side key pair."""
    box = SecretBox(parse_key(ENCRYPTION_KEY))
    key = owner.execute("SELECT id FROM notify.current_vapid_key()").fetchone()
    assert key is not None and key[0] is not None, "the worker makes the first VAPID key"
    users = [uuid.uuid4() for _ in range(count)]
    owner.execute("INSERT INTO notify.recipients (user_id) SELECT unnest(%s::uuid[])", (users,))
    rows = []
    for user in users:
        endpoint = f"{push_url}/push/{user}"
        rows.append((user, endpoint, box.encrypt(p256dh), box.encrypt(auth), token_hash(endpoint), key[0]))
    with owner.cursor() as cur:
        cur.executemany(
            "INSERT INTO notify.push_subscriptions (user_id, kind, endpoint, p256dh_key, auth_key, token_hash,"
            " vapid_key_id) VALUES (%s, 'webpush', %s, %s, %s, %s, %s)",
            rows,
        )
    return users


@dataclass(frozen=True)
class Measured:
    """One delivery run: deliveries/s, and per delivery the database's commits, foreign NOTIFYs and CPU seconds
    of the worker process(es), the PostgreSQL backends they (and nothing else) use, and the sink."""

    rate: float
    commits: float
    notifies: float
    cpu: dict[str, float]
    elapsed: float

    def split(self) -> str:
        """Each party's share of the CPU the run took, and how many of the machine's cores were busy with it."""
        total = sum(self.cpu.values())
        shares = " · ".join(f"{party} {100 * seconds / total:.0f} %" for party, seconds in self.cpu.items())
        busy = total * self.rate  # CPU seconds per delivery × deliveries per second
        return f"{shares} ({busy:.2f} of {os.cpu_count()} cores busy)"


def backend_cpu(owner: psycopg.Connection[Any]) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend of this database that the notifyd processes opened (they log
    in as the bench's login role; the bench's own connections are the owner's)."""
    pids = owner.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND usename = %s", (LOGIN,)
    ).fetchall()
    seconds = {}
    for (pid,) in pids:
        try:
            seconds[pid] = cpu_seconds(pid)
        except FileNotFoundError:
            continue  # it ended between the two reads
    return seconds


def throughput(owner: psycopg.Connection[Any], listener: Listener, channel: str, users: list[uuid.UUID],
               workers: list[int], sink: int) -> Measured:  # fmt: skip
    """deliveries/s from the send's commit until the last outcome is recorded; per delivery: commits, foreign
    NOTIFYs and CPU seconds (a per-call cost: other processes on the machine sway the rate)."""
    worker_cpu = sum(cpu_seconds(pid) for pid in workers)
    sink_cpu = cpu_seconds(sink)
    backends = backend_cpu(owner)
    row = owner.execute(
        "SELECT notify.send_bulk(%s, 'security', 'bench', 'delivery', 'critical', channels => %s), "
        "pg_current_xact_id()::text",
        (users, [channel]),
    ).fetchone()
    assert row is not None
    started = owner.execute("SELECT clock_timestamp()").fetchone()
    send_xid = row[1]
    send_jobs = {
        str(r[0])
        for r in owner.execute(
            "SELECT id FROM procrastinate.procrastinate_jobs WHERE queue_name = %s",
            (channel if channel == "email" else "push",),
        )  # fmt: skip
    }
    before = commits(owner)
    polls = 0

    def drained() -> bool:
        nonlocal polls
        polls += 1
        return not pending(owner, channel)

    wait_for(drained, timeout=120, interval=POLL, what=f"{channel} deliveries")
    # Backends opened during the run count whole (their start is within it).
    postgres_cpu = sum(seconds - backends.get(pid, 0.0) for pid, seconds in backend_cpu(owner).items())
    worker_cpu = sum(cpu_seconds(pid) for pid in workers) - worker_cpu
    sink_cpu = cpu_seconds(sink) - sink_cpu
    time.sleep(0.5)  # the last NOTIFYs arrive
    worker_commits = commits(owner) - before - polls - 1
    # The ledger's clock, not the polls': the last outcome recorded, from the send's commit.
    finished = owner.execute(
        "SELECT max(updated_at) FROM notify.notification_deliveries WHERE channel = %s AND user_id = ANY(%s)",
        (channel, users),
    ).fetchone()
    assert started is not None and finished is not None
    elapsed = (finished[0] - started[0]).total_seconds()
    foreign = 0
    for (ch, payload), _times in listener.collect().items():
        if ch == "notify_notifications":
            foreign += payload != send_xid
        elif json.loads(payload).get("job_id") is not None:
            foreign += str(json.loads(payload)["job_id"]) not in send_jobs
    count = len(users)
    cpu = {"worker": worker_cpu / count, "PostgreSQL": postgres_cpu / count, "sink": sink_cpu / count}
    return Measured(count / elapsed, worker_commits / count, foreign / count, cpu, elapsed)


def subscription_keys() -> tuple[str, str, str]:
    """(p256dh, auth, private key): what a browser makes when it subscribes, raw and base64url."""
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    scalar = private.private_numbers().private_value.to_bytes(32, "big")
    return b64url(public), b64url(uuid.uuid4().bytes), b64url(scalar)


async def deliver(owner: psycopg.Connection[Any], listener: Listener, channel: str, users: list[uuid.UUID],
                  workers: list[int], sink: SinkProcess) -> tuple[Measured, dict[str, int]]:  # fmt: skip
    """One run: its figures, and what the sink saw in it (each e-mail, or each endpoint, exactly once)."""
    counted = "emails" if channel == "email" else "endpoints"
    before = (await asyncio.to_thread(sink.stats)).get(counted, 0)
    listener.collect()
    measured = await asyncio.to_thread(throughput, owner, listener, channel, users, workers, sink.pid)
    stats = await asyncio.to_thread(sink.stats)
    reached = stats.get(counted, 0) - before
    assert reached == len(users), f"{reached} of {len(users)} {channel} deliveries reached the sink: {stats}"
    return measured, stats


async def run(db: Database, scale: Scale, table: Table) -> None:
    p256dh, auth, private_key = subscription_keys()
    keys: dict[str, Any] = {"private_key": private_key, "auth": auth, "decrypt_every": DECRYPT_EVERY}
    resend = SinkProcess("resend", api_key=API_KEY).start()
    push = SinkProcess("push", **keys).start()
    distant = SinkProcess("push", latency=ROUND_TRIP, **keys).start()
    sinks = (resend, push, distant)
    listener: Listener | None = None
    one_worker: dict[str, float] = {}
    try:
        worker = db.worker(**worker_env(resend.url, API_KEY))
        assert worker.proc is not None
        workers = [worker.proc.pid]
        listener = Listener(db.owner_url, CHANNELS)
        with db.owner() as owner:

            def users_of(channel: str, sink: SinkProcess, count: int) -> list[uuid.UUID]:
                if channel == "email":
                    return email_users(owner, count)
                return push_users(owner, sink.url, p256dh, auth, count)

            for name, channel, count, sink in (
                ("e-mail → Resend sink", "email", scale.emails, resend),
                ("Web Push → push sink", "push", scale.pushes, push),
                (f"Web Push → push sink answering in {ROUND_TRIP * 1000:.0f} ms", "push", scale.pushes, distant),
            ):
                users = users_of(channel, sink, count)
                measured, stats = await deliver(owner, listener, channel, users, workers, sink)
                # Answers held back: as many connections as the worker may use, or the replay measures itself.
                connections = PARALLEL_SENDS if sink.latency else REPLAY_CONNECTIONS
                ceiling = await asyncio.to_thread(replay, sink.url, await asyncio.to_thread(sink.recorded),
                                                  connections)  # fmt: skip
                goal = 4000 if channel == "email" else 2000
                table.add(
                    Row("5", f"{name}: deliveries/s through the worker ({count:,})", measured.rate, ceiling, "/s",
                        target=f"≥ {goal:,}/s", met=measured.rate >= goal),
                    Row("5", f"{name}: worker CPU per delivery", measured.cpu["worker"] * 1000, None, "ms"),
                )  # fmt: skip
                if sink.latency:
                    continue
                one_worker[channel] = measured.rate
                table.add(
                    Row("5", f"{name}: PostgreSQL CPU per delivery (the worker's backends)",
                        measured.cpu["PostgreSQL"] * 1000, None, "ms"),
                    Row("5", f"{name}: CPU split worker · PostgreSQL · sink", None, text=measured.split()),
                    Row("5", f"{name}: commits per delivery (all of the database)", measured.commits, None),
                    Row("5", f"{name}: NOTIFYs per delivery besides the send's own", measured.notifies, None),
                )  # fmt: skip
                if channel == "push":
                    signed = stats.get("jwt signatures verified", 0)
                    table.add(Row("5", f"{name}: distinct VAPID JWTs (signatures) in {count:,} pushes",
                                  signed, None, text=f"{signed:,}"))  # fmt: skip
            # E-mails in flight per worker: today's default against 16 (a Resend account allowed more requests/s).
            worker.stop()
            wide = db.worker(**worker_env(resend.url, API_KEY), RESEND_MAX_CONCURRENCY=str(WIDE_EMAIL_CONCURRENCY))
            assert wide.proc is not None
            measured, _ = await deliver(owner, listener, "email", email_users(owner, scale.emails), [wide.proc.pid],
                                        resend)  # fmt: skip
            wide_name = (f"e-mail → Resend sink: deliveries/s, RESEND_MAX_CONCURRENCY {WIDE_EMAIL_CONCURRENCY} "
                         f"vs {Settings.resend_max_concurrency} (above)")  # fmt: skip
            table.add(Row("5", wide_name, measured.rate, one_worker["email"], "/s"))
            wide.stop()
            worker = db.worker(**worker_env(resend.url, API_KEY))
            assert worker.proc is not None
            workers = [worker.proc.pid]
            await scaling(db, owner, listener, workers, users_of, (("email", resend), ("push", push)), one_worker,
                          scale, table)  # fmt: skip
        for process in db.processes:
            process.stop()
        concurrency = PROCESS_ENV["WORKER_CONCURRENCY"]
        noop_rate = await noop_jobs_per_second(db, scale.emails, concurrency)
        table.add(Row("5", f"e-mail deliveries/s (above) vs Procrastinate's own no-op jobs/s, one worker, concurrency "
                      f"{concurrency}, {scale.emails:,} jobs", one_worker["email"], noop_rate, "/s"))  # fmt: skip
    finally:
        if listener is not None:
            listener.close()
        for process in db.processes:
            process.stop()
        for sink in sinks:
            sink.stop()


Users = Callable[[str, SinkProcess, int], list[uuid.UUID]]


async def scaling(db: Database, owner: psycopg.Connection[Any], listener: Listener, workers: list[int],
                  users_of: Users, runs: tuple[tuple[str, SinkProcess], ...], one_worker: dict[str, float],
                  scale: Scale, table: Table) -> None:  # fmt: skip
    """Two worker processes beside one, on a machine with cores enough for both besides PostgreSQL and the sinks;
    on fewer, the CPU split above says where the time goes instead."""
    if (os.cpu_count() or 1) < SCALING_CORES:
        table.add(Row("5", "two worker processes vs one", None,
                      text=f"not measured: {os.cpu_count()} cores (< {SCALING_CORES}); see the CPU split"))  # fmt: skip
        return
    second = db.worker(**worker_env(runs[0][1].url, API_KEY))
    assert second.proc is not None
    both = [*workers, second.proc.pid]
    for channel, sink in runs:
        count = scale.emails if channel == "email" else scale.pushes
        measured, _ = await deliver(owner, listener, channel, users_of(channel, sink, count), both, sink)
        table.add(Row("5", f"{channel}: deliveries/s, two worker processes vs one ({count:,})", measured.rate,
                      one_worker[channel], "/s", target="≥ 1.7×",
                      met=measured.rate >= 1.7 * one_worker[channel]))  # fmt: skip


async def noop_jobs_per_second(db: Database, jobs: int, concurrency: str) -> float:
    """bench.noop_worker running `jobs` no-op jobs deferred in one transaction: jobs/s from that commit until
    its queue is empty (the worker deletes what succeeded, as notifyd's does)."""
    proc, _ = start_peer("bench.noop_worker", db.cluster.log_dir / "noop_worker.log", db.login_url, concurrency,
                         listen=False)  # fmt: skip
    try:
        app = noop_worker.connect(db.login_url)
        async with app.open_async():
            await app.configure_task(noop_worker.TASK).batch_defer_async(*({} for _ in range(jobs)))
            started = time.monotonic()
            with db.owner() as owner:

                def emptied() -> bool:
                    row = owner.execute("SELECT count(*) FROM procrastinate.procrastinate_jobs WHERE queue_name = %s",
                                        (noop_worker.QUEUE,)).fetchone()  # fmt: skip
                    return row is not None and row[0] == 0

                await asyncio.to_thread(wait_for, emptied, 120, NOOP_POLL, "no-op jobs")
            return jobs / (time.monotonic() - started)
    finally:
        stop_peer(proc)


async def email_latency(db: Database, samples: int) -> tuple[list[float], list[float], list[float]]:
    """Starts a worker and a Resend stand-in; sends `samples` e-mails one at a time. Returns commit → the
    dispatcher job's NOTIFY received, commit → e-mail accepted (the ledger: created in the send's transaction, sent when
    the stand-in answered), and the floor: one POST straight to the stand-in, one at a time."""
    resend = ResendService().start()
    try:
        worker = db.worker(**worker_env(resend.url, resend.api_key))
        listener = await asyncpg.connect(db.owner_url)
        sender = await asyncpg.connect(db.owner_url)
        arrived: asyncio.Queue[float] = asyncio.Queue()
        await listener.add_listener("procrastinate_any_queue_v1", lambda *_: arrived.put_nowait(time.monotonic()))
        user = uuid.uuid4()
        await sender.execute("SELECT notify.upsert_recipient_v2($1, 'latency@example.com')", user)
        queued = []
        for _ in range(samples):
            # A channel job the dispatcher defers NOTIFYs too, after the send's own job: count from this send's first.
            while not arrived.empty():
                arrived.get_nowait()
            await sender.execute(
                "SELECT notify.send($1, 'security', 'latency', priority => 'critical', channels => '{email}')", user
            )
            committed = time.monotonic()
            # A send whose dispatcher job was queued already (not started yet) queues none: no NOTIFY of its own.
            with contextlib.suppress(TimeoutError):
                queued.append(await asyncio.wait_for(arrived.get(), 1) - committed)
            await asyncio.sleep(0.02)
        ledger = (
            "SELECT extract(epoch FROM d.sent_at - d.created_at)::float8 FROM notify.notification_deliveries AS d "
            "WHERE d.user_id = $1 AND d.channel = 'email' AND d.status = 'sent'"
        )
        deadline = time.monotonic() + 30
        while len(rows := await sender.fetch(ledger, user)) < samples and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the ledger records 'sent' just after the stand-in answered
        await listener.close()
        await sender.close()
        worker.stop()
        body = resend.requests[-1].body
        headers = {"Authorization": f"Bearer {resend.api_key}", "Content-Type": "application/json"}
        floor = []
        with httpx.Client(base_url=resend.url, headers=headers, timeout=10) as client:
            for _ in range(samples):
                began = time.monotonic()
                response = await asyncio.to_thread(client.post, "/emails", content=body)
                floor.append(time.monotonic() - began)
                assert response.status_code < 300, response.text
        return queued, [r[0] for r in rows], floor
    finally:
        resend.stop()


__all__ = ["email_latency", "quantile", "run"]
