"""The dispatcher's run against a sender that counted on its job and commits after it started."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from notifyd.db.pool import create_pool
from notifyd.domain import dispatch
from notifyd.domain.deliveries import Delivery, Outcome, Sent
from tests.conftest import database_url, service_conn
from tests.test_delivery_sql import USER, dispatcher_jobs, jobs, on_jobs, send


def waiting(db: psycopg.Connection[Any]) -> int:
    """Pending deliveries no channel job carries yet."""
    row = db.execute(
        "SELECT count(*) FROM notify.notification_deliveries WHERE status = 'pending' AND queued_at IS NULL"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_send_that_commits_after_its_dispatcher_started_is_dispatched(db: psycopg.Connection[Any]) -> None:
    db.execute("INSERT INTO notify.recipients (user_id, email) VALUES (%s, 'u@example.com')", (USER,))
    first = service_conn(db)
    send(first, "critical")
    first.close()
    sender = service_conn(db)
    sender.autocommit = False
    send(sender, "critical")  # sees the first send's job waiting: adds none
    assert dispatcher_jobs(db) == [("todo", None)]
    on_jobs(db, "UPDATE procrastinate_jobs SET status = 'doing'")  # a worker takes it before the sender commits

    async def run() -> int:
        pool = await create_pool(database_url(db, login=True), min_size=1, max_size=2)
        try:
            task = asyncio.create_task(dispatch.dispatch(pool, None))
            while waiting(db) == 1 and not task.done():  # the first send's delivery is handed over
                await asyncio.sleep(0.01)
            assert waiting(db) == 0 and not task.done(), "it waits for the open sender"
            sender.commit()
            return await asyncio.wait_for(task, timeout=10)
        finally:
            await pool.close()

    try:
        assert asyncio.run(run()) == 2
    finally:
        sender.close()
    row = db.execute("SELECT count(*) FROM notify.notification_deliveries WHERE queued_at IS NOT NULL").fetchone()
    assert waiting(db) == 0 and row == (2,), "the late sender's delivery went too"
    assert dispatcher_jobs(db) == [("doing", None)], "without another job"


def test_a_sender_still_open_after_the_wait_gets_a_follow_up(db: psycopg.Connection[Any], monkeypatch: Any) -> None:
    monkeypatch.setattr(dispatch, "WAIT_IN_RUN", 0.0)
    db.execute("INSERT INTO notify.recipients (user_id, email) VALUES (%s, 'u@example.com')", (USER,))
    sender = service_conn(db)
    sender.autocommit = False
    send(sender, "critical")
    xid = sender.execute("SELECT pg_current_xact_id()::xid::text").fetchone()

    async def run(awaiting: list[str] | None) -> int:
        pool = await create_pool(database_url(db, login=True), min_size=1, max_size=2)
        try:
            return await dispatch.dispatch(pool, None, awaiting)
        finally:
            await pool.close()

    follow_up = None
    try:
        assert asyncio.run(run(None)) == 0
        follow_up = db.execute(
            "SELECT args -> 'awaiting', queueing_lock FROM procrastinate.procrastinate_jobs "
            "WHERE args ? 'awaiting'"
        ).fetchone()  # fmt: skip
        assert follow_up is not None and xid is not None and xid[0] in follow_up[0] and follow_up[1] is None
        assert asyncio.run(run(follow_up[0])) == 0, "still open: it waits on"
        sender.commit()
    finally:
        sender.close()
    assert asyncio.run(run(follow_up[0])) == 1, "committed: the follow-up hands it over"


class Recorder:
    """A channel that answers 'sent' for every delivery and remembers what it was given."""

    queue = "email"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def not_configured(self) -> str | None:
        return None

    async def send(self, deliveries: Sequence[Delivery]) -> Mapping[uuid.UUID, Outcome]:
        self.sent += [str(d.id) for d in deliveries]
        return {d.id: Sent(provider_message_id="m") for d in deliveries}

    async def close(self) -> None:
        return None


def test_the_dispatcher_sends_a_batch_itself_and_its_retry_sends_what_it_had_kept(db: psycopg.Connection[Any]) -> None:
    db.execute("INSERT INTO notify.recipients (user_id, email) VALUES (%s, 'u@example.com')", (USER,))
    service = service_conn(db)
    first, second = send(service, "critical", ["email"]), send(service, "critical", ["email"])
    service.close()
    email = "SELECT id::text FROM notify.notification_deliveries WHERE notification_id = %s AND channel = 'email'"
    lost = db.execute(email, (first,)).fetchone()
    # A run of dispatcher job 7 kept the first e-mail and its worker died before sending it.
    row = db.execute("SELECT kept FROM notify_private.dispatch_deliveries(NULL, 7, '{email}')").fetchone()
    assert row is not None and lost is not None and row[0] == {"email": [lost[0], *row[0]["email"][1:]]}
    assert len(row[0]["email"]) == 2 and jobs(db) == [], "kept, no channel job"
    db.execute("UPDATE notify.notification_deliveries SET dispatched_by = NULL WHERE notification_id = %s", (second,))
    channel = Recorder()

    async def run(job_id: int) -> int:
        pool = await create_pool(database_url(db, login=True), min_size=1, max_size=2)
        try:
            runner = dispatch.Runner(job_id, {"email": channel}, None, None)
            return await dispatch.dispatch(pool, None, awaiting=[], runner=runner)
        finally:
            await pool.close()

    assert asyncio.run(run(8)) == 0 and channel.sent == [], "another job's kept deliveries are not its own"
    assert asyncio.run(run(7)) == 0 and channel.sent == [lost[0]], "the retry of job 7 sends what it had kept"
    status = (
        "SELECT status, attempts FROM notify.notification_deliveries WHERE notification_id = %s AND channel = 'email'"
    )
    assert db.execute(status, (first,)).fetchone() == ("sent", 1)

    # A new send: the run keeps and sends it itself, no channel job in between.
    service = service_conn(db)
    third = send(service, "critical", ["email"])
    service.close()
    assert asyncio.run(run(9)) == 1 and jobs(db) == []
    assert db.execute(status, (third,)).fetchone() == ("sent", 1) and len(channel.sent) == 2


def test_a_kept_batch_to_retry_goes_to_a_channel_job(db: psycopg.Connection[Any]) -> None:
    db.execute("INSERT INTO notify.recipients (user_id, email) VALUES (%s, 'u@example.com')", (USER,))
    service = service_conn(db)
    send(service, "critical", ["email"])
    service.close()
    row = db.execute("SELECT kept FROM notify_private.dispatch_deliveries(NULL, 7, '{email}')").fetchone()
    assert row is not None
    ids = row[0]["email"]
    db.execute("SELECT notify_private.hand_over_deliveries('email', %s::uuid[], 30, 'r-1')", (ids,))
    assert jobs(db) == [("email", "deliver_email", 0, ids)]
    assert db.execute("SELECT * FROM notify_private.kept_deliveries(7)").fetchall() == [], "no longer the job's"


def test_the_sweep_takes_over_what_a_dispatcher_job_that_failed_for_good_had_kept(db: psycopg.Connection[Any]) -> None:
    db.execute("INSERT INTO notify.recipients (user_id, email) VALUES (%s, 'u@example.com')", (USER,))
    service = service_conn(db)
    send(service, "critical", ["email"])
    service.close()
    with db.transaction():
        db.execute("SET LOCAL search_path = procrastinate")  # Procrastinate's triggers use unqualified names
        job = db.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args) "
            "VALUES ('dispatch', 'dispatch_deliveries', '{}') RETURNING id"
        ).fetchone()
    assert job is not None
    row = db.execute("SELECT kept FROM notify_private.dispatch_deliveries(NULL, %s, '{email}')", (job[0],)).fetchone()
    assert row is not None and len(row[0]["email"]) == 1
    adopt = "SELECT notify_private.adopt_kept_deliveries(99)"
    assert db.execute(adopt).fetchone() == (0,), "a job still queued or running keeps its own"
    on_jobs(db, f"UPDATE procrastinate_jobs SET status = 'failed' WHERE id = {int(job[0])}")
    assert db.execute(adopt).fetchone() == (1,)
    kept = db.execute("SELECT queue, ids::text[] FROM notify_private.kept_deliveries(99)").fetchall()
    assert kept == [("email", row[0]["email"])]
