"""Delivery planning and the ledger, in SQL: what a service's INSERT enqueues, what the worker's answers record."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import psycopg
import pytest

from tests.conftest import dsn, returned_id, service_conn, user_conn

USER = uuid.UUID(int=11)


def add_device(db: psycopg.Connection[Any], user: uuid.UUID, kind: str = "fcm") -> uuid.UUID:
    """A device row as the owner (the REST route, tested elsewhere, encrypts real keys)."""
    db.execute("INSERT INTO notify.recipients (user_id) VALUES (%s) ON CONFLICT DO NOTHING", (user,))
    return returned_id(
        db,
        "INSERT INTO notify.push_subscriptions (user_id, kind, fcm_token, token_hash) "
        "VALUES (%s, %s, 'enc1.x.y', sha256(gen_random_uuid()::text::bytea)) RETURNING id",
        (user, kind),
    )


def planned(db: psycopg.Connection[Any], notification_id: Any) -> list[tuple[str, str, str | None]]:
    return [
        (r[0], r[1], r[2])
        for r in db.execute(
            "SELECT channel, status, reason FROM notify.delivery_decisions WHERE notification_id = %s "
            "ORDER BY array_position(ARRAY['in_app', 'push', 'email'], channel), subscription_id",
            (notification_id,),
        )
    ]


def jobs(db: psycopg.Connection[Any]) -> list[tuple[str, str, int, list[str]]]:
    """The channel jobs (the dispatcher's own jobs aside)."""
    return [
        (r[0], r[1], r[2], r[3]["delivery_ids"])
        for r in db.execute(
            "SELECT queue_name, task_name, priority, args FROM procrastinate.procrastinate_jobs "
            "WHERE queue_name <> 'dispatch' ORDER BY id"
        )
    ]


def dispatcher_jobs(db: psycopg.Connection[Any]) -> list[tuple[str, Any]]:
    """The dispatcher jobs waiting: their status and when they run (None: at once)."""
    rows = db.execute(
        "SELECT status::text, scheduled_at FROM procrastinate.procrastinate_jobs WHERE queue_name = 'dispatch' "
        "ORDER BY id"
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def on_jobs(db: psycopg.Connection[Any], statement: str) -> None:
    """A statement on Procrastinate's tables, as a worker runs it (its triggers use unqualified names)."""
    with db.transaction():
        db.execute("SET LOCAL search_path = procrastinate")
        db.execute(statement)


def dispatch(db: psycopg.Connection[Any]) -> int:
    """One dispatcher pass, as the worker's task makes it; how many deliveries it handed to channel jobs."""
    row = db.execute("SELECT dispatched FROM notify_private.dispatch_deliveries()").fetchone()
    assert row is not None
    return int(row[0])


def send(service: psycopg.Connection[Any], priority: str = "normal", channels: list[str] | None = None) -> Any:
    row = service.execute(
        "SELECT notify.send(%s, 'task', 'Hello', 'there', %s, channels => %s)", (USER, priority, channels)
    ).fetchone()
    assert row is not None
    return row[0]


def test_priority_and_preferences_decide_the_channels(db: psycopg.Connection[Any], service: Any) -> None:
    service.execute("SELECT notify.upsert_recipient_v2(%s, 'u@example.com')", (USER,))
    # Defaults: no device, daily digest for non-urgent e-mail.
    assert planned(db, send(service)) == [
        ("in_app", "sent", None),
        ("push", "skipped", "no active push subscription"),
        ("email", "held", "for the daily digest"),
    ]
    assert planned(db, send(service, "low")) == [("in_app", "sent", None), ("email", "held", "for the daily digest")]
    assert planned(db, send(service, "critical")) == [
        ("in_app", "sent", None),
        ("push", "skipped", "no active push subscription"),
        ("email", "pending", None),
    ]
    first, second = add_device(db, USER), add_device(db, USER)
    db.execute(
        "INSERT INTO notify.notification_preferences (user_id, notification_type, email_enabled, digest_frequency) "
        "VALUES (%s, 'task', true, 'instant')",
        (USER,),
    )
    assert planned(db, send(service, "high")) == sorted(
        [("in_app", "sent", None), ("push", "pending", None), ("push", "pending", None), ("email", "pending", None)],
        key=lambda p: ["in_app", "push", "email"].index(p[0]),
    )
    assert {r[0] for r in db.execute("SELECT subscription_id FROM notify.notification_deliveries")} >= {first, second}
    assert planned(db, send(service, "low"))[-1] == ("email", "skipped", "low-priority e-mail goes out in digests only")
    # The sender's channels narrow the set; the user's switch turns push off, except for critical.
    db.execute("UPDATE notify.notification_preferences SET push_enabled = false WHERE user_id = %s", (USER,))
    assert planned(db, send(service, "high", ["push"])) == [
        ("push", "skipped", "push is turned off for task notifications")
    ]
    assert [p[1] for p in planned(db, send(service, "critical", ["push"]))] == ["pending", "pending"]


# Each reason a channel is not sent on: how to set the user up, the channel, its status and reason.
SKIPS: dict[str, tuple[str, str, str, str]] = {
    "push off": ("INSERT INTO notify.notification_preferences (user_id, notification_type, push_enabled) "
                 "VALUES (%(user)s, 'task', false)", "push", "skipped", "push is turned off for task notifications"),
    "no device": ("SELECT %(user)s", "push", "skipped", "no active push subscription"),
    "e-mail off": ("INSERT INTO notify.notification_preferences (user_id, notification_type, email_enabled) "
                   "VALUES (%(user)s, 'task', false)", "email", "skipped",
                   "e-mail is turned off for task notifications"),
    "no address": ("UPDATE notify.recipients SET email = NULL WHERE user_id = %(user)s", "email", "skipped",
                   "no e-mail address"),
    "suppressed": ("INSERT INTO notify.email_suppressions (email, reason) VALUES ('u@example.com', 'bounced')", "email",
                   "suppressed", "the address bounced"),
    "low-priority instant": ("INSERT INTO notify.notification_preferences (user_id, notification_type, "
                             "digest_frequency) VALUES (%(user)s, 'task', 'instant')", "email", "skipped",
                             "low-priority e-mail goes out in digests only"),
}  # fmt: skip
# Critical where a digest would otherwise hold the e-mail (critical overrides the user's own switches).
SKIP_PRIORITY = {"low-priority instant": "low", "no address": "critical", "suppressed": "critical"}


@pytest.mark.parametrize("situation", list(SKIPS))
def test_a_skipped_channel_writes_no_delivery_row_yet_keeps_its_reason(
    db: psycopg.Connection[Any], service: Any, situation: str
) -> None:
    """The decision lives on the notification row: explain, the delivery status (history, the center) and
    notify.delivery_decisions still give the channel its status and reason."""
    setup, channel, status, reason = SKIPS[situation]
    service.execute("SELECT notify.upsert_recipient_v2(%s, 'u@example.com')", (USER,))
    if situation != "no device":
        add_device(db, USER)
    db.execute(setup, {"user": USER})
    priority = SKIP_PRIORITY.get(situation, "high")
    sent = send(service, priority, ["in_app", channel])
    rows = db.execute(
        "SELECT channel FROM notify.notification_deliveries WHERE notification_id = %s", (sent,)
    ).fetchall()
    assert rows == [], "no row: the channel was skipped, and in-app went at once with the notification"
    recorded = db.execute("SELECT decisions FROM notify.notifications WHERE id = %s", (sent,)).fetchone()
    assert recorded == ({channel: {"status": status, "reason": reason}},)
    decisions = service.execute("SELECT notify.explain(%s) -> 'decisions'", (sent,)).fetchone()
    assert decisions is not None
    assert [(d["channel"], d["status"], d["reason"]) for d in decisions[0]] == [
        ("in_app", "sent", None), (channel, status, reason)
    ]  # fmt: skip
    assert service.execute("SELECT notify.delivery_status(%s)", (sent,)).fetchone() == (
        {"in_app": "sent", channel: status},
    )
    assert planned(db, sent) == [("in_app", "sent", None), (channel, status, reason)]


def test_an_in_app_delivery_sent_at_once_is_no_row_yet_every_reader_shows_it(
    db: psycopg.Connection[Any], service: Any
) -> None:
    """In-app only, single and bulk (whose push and e-mail are skipped: no device, no address): the
    notifications are the only rows written; explain, the delivery status, delivery_counts (/metrics) and
    the view show in-app sent and the skips with their reasons. One held for send_at keeps its row."""
    sent = send(service, "normal", ["in_app"])
    bulk_users = [uuid.uuid4() for _ in range(3)]
    batch = service.execute("SELECT notify.send_bulk(%s::uuid[], 'task', 'All')", (bulk_users,)).fetchone()
    assert batch is not None
    assert db.execute("SELECT count(*) FROM notify.notification_deliveries").fetchone() == (0,)
    assert planned(db, sent) == [("in_app", "sent", None)]
    bulk_row = db.execute("SELECT id FROM notify.notifications WHERE batch_id = %s LIMIT 1", (batch[0],)).fetchone()
    assert bulk_row is not None
    assert planned(db, bulk_row[0]) == [
        ("in_app", "sent", None), ("push", "skipped", "no active push subscription"),
        ("email", "skipped", "no e-mail address"),
    ]  # fmt: skip
    explained = service.execute("SELECT notify.explain(%s) -> 'decisions'", (sent,)).fetchone()
    assert explained is not None
    assert [(d["channel"], d["status"]) for d in explained[0]] == [("in_app", "sent")]
    assert service.execute("SELECT notify.delivery_status(%s)", (sent,)).fetchone() == ({"in_app": "sent"},)
    assert db.execute(
        "SELECT deliveries FROM notify.delivery_counts WHERE channel = 'in_app' AND status = 'sent'"
    ).fetchone() == (4,)
    later = service.execute(
        "SELECT notify.send(%s, 'task', 'Later', channels => '{in_app}', send_at => now() + interval '1 hour')",
        (USER,),
    ).fetchone()
    assert later is not None
    assert db.execute(
        "SELECT channel, status FROM notify.notification_deliveries WHERE notification_id = %s", (later[0],)
    ).fetchall() == [("in_app", "pending")], "held: the release job needs its row"
    assert planned(db, later[0]) == [("in_app", "pending", "scheduled for send_at")]


def test_ids_are_time_ordered_version_7_uuids(db: psycopg.Connection[Any], service: Any) -> None:
    """Notifications and deliveries get UUIDv7 ids: version 7, RFC 4122 variant, the time of their insert in
    the first 48 bits, so that each new id sorts after the ids made before it."""
    service.execute("SELECT notify.upsert_recipient_v2(%s, 'u@example.com')", (USER,))
    before = db.execute("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint").fetchone()
    sent = [uuid.UUID(str(send(service, "critical"))) for _ in range(5)]
    after = db.execute("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint").fetchone()
    assert before is not None and after is not None
    deliveries = [
        uuid.UUID(str(r[0]))
        for r in db.execute("SELECT id FROM notify.notification_deliveries ORDER BY created_at, channel")
    ]
    assert len(deliveries) == 5, "e-mail: in-app went at once and has no row"
    for made in sent + deliveries:
        assert (made.version, made.variant) == (7, uuid.RFC_4122)
        assert before[0] <= made.int >> 80 <= after[0]
    assert [n.int >> 80 for n in sent] == sorted(n.int >> 80 for n in sent)
    assert len(set(sent)) == len(sent)


def test_an_org_lock_beats_the_users_switch(db: psycopg.Connection[Any], service: Any) -> None:
    org = uuid.uuid4()
    service.execute("SELECT notify.upsert_recipient_v2(%s, 'u@example.com', org_id => %s)", (USER, org))
    add_device(db, USER)
    db.execute("INSERT INTO notify.notification_preferences (user_id, push_enabled) VALUES (%s, false)", (USER,))
    db.execute(
        "INSERT INTO notify.org_notification_preferences (org_id, push_enabled, push_locked) VALUES (%s, true, true)",
        (org,),
    )
    assert ("push", "pending", None) in planned(db, send(service))


def test_a_send_queues_one_dispatcher_job_in_its_transaction(db: psycopg.Connection[Any]) -> None:
    device = add_device(db, USER)
    conn = service_conn(db)
    conn.execute("SELECT notify.upsert_recipient_v2(%s, 'u@example.com')", (USER,))
    conn.autocommit = False
    send(conn, "critical")
    conn.rollback()
    assert dispatcher_jobs(db) == [] and planned(db, None) == []
    assert db.execute("SELECT count(*) FROM notify.notification_deliveries").fetchone() == (0,)
    notification = send(conn, "critical")
    conn.commit()
    # One job row and one event row (Procrastinate's trigger), not one job per channel.
    assert dispatcher_jobs(db) == [("todo", None)] and jobs(db) == []
    assert db.execute("SELECT count(*) FROM procrastinate.procrastinate_events").fetchone() == (1,)
    # While it waits, more sends add nothing.
    send(conn, "critical")
    conn.commit()
    conn.close()
    assert dispatcher_jobs(db) == [("todo", None)]
    ids = dict(db.execute(
        "SELECT coalesce(subscription_id::text, channel), id::text FROM notify.notification_deliveries "
        "WHERE notification_id = %s AND status = 'pending'", (notification,)
    ).fetchall())  # fmt: skip
    assert dispatch(db) == 4
    # One job per channel queue and priority for both sends' deliveries.
    (email, fcm) = sorted(jobs(db))
    assert email[:3] == ("email", "deliver_email", 4) and ids["email"] in email[3] and len(email[3]) == 2
    assert fcm[:3] == ("fcm", "deliver_fcm", 4) and ids[str(device)] in fcm[3] and len(fcm[3]) == 2
    assert dispatch(db) == 0, "handed over once"


def test_a_burst_of_sends_in_one_transaction_queues_one_job(db: psycopg.Connection[Any]) -> None:
    db.execute("INSERT INTO notify.recipients (user_id, email) VALUES (%s, 'u@example.com')", (USER,))
    conn = service_conn(db)
    conn.autocommit = False
    for _ in range(20):
        send(conn, "critical")
    conn.commit()
    conn.close()
    assert dispatcher_jobs(db) == [("todo", None)]
    assert dispatch(db) == 20 and [len(j[3]) for j in jobs(db)] == [20]


def test_a_send_while_the_dispatcher_runs_queues_another(db: psycopg.Connection[Any], service: Any) -> None:
    """The queueing lock covers waiting jobs only: a send after the dispatcher started queues the next run."""
    service.execute("SELECT notify.upsert_recipient_v2(%s, 'u@example.com')", (USER,))
    send(service, "critical")
    on_jobs(db, "UPDATE procrastinate_jobs SET status = 'doing'")  # a worker took it
    send(service, "critical")
    assert dispatcher_jobs(db) == [("doing", None), ("todo", None)]
    assert dispatch(db) == 2


def test_a_scheduled_delivery_is_dispatched_at_its_time(db: psycopg.Connection[Any], service: Any) -> None:
    service.execute("SELECT notify.upsert_recipient_v2(%s, 'u@example.com')", (USER,))
    db.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    for conn in (db, service):
        conn.execute("SET notify.clock = '2026-11-20 10:00:00.2+00'")
    service.execute(
        "SELECT notify.send(%s, 'task', 'Later', priority => 'critical', channels => ARRAY['email'], "
        "send_at => '2026-11-20 11:00:00.5+00')", (USER,)
    )  # fmt: skip
    # Its job runs at the due time (rounded up to the second).
    assert [j[1].isoformat() for j in dispatcher_jobs(db)] == ["2026-11-20T11:00:01+00:00"]
    assert dispatch(db) == 0 and jobs(db) == []
    db.execute("SET notify.clock = '2026-11-20 11:00:01+00'")
    assert dispatch(db) == 1 and [j[1] for j in jobs(db)] == ["deliver_email"]


def test_a_dispatcher_run_queues_the_next_one_for_the_next_due_delivery(db: psycopg.Connection[Any]) -> None:
    db.execute("INSERT INTO notify.recipients (user_id, email) VALUES (%s, 'u@example.com')", (USER,))
    db.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    db.execute("SET notify.clock = '2026-11-20 10:00+00'")
    for at in ("10:00", "10:30", "12:00"):
        db.execute("INSERT INTO notify.notifications (user_id, type, title, priority, channels, send_at) "
                   "VALUES (%s, 'task', 'x', 'critical', '{email}', %s)", (USER, f"2026-11-20 {at}+00"))  # fmt: skip
    on_jobs(db, "DELETE FROM procrastinate_jobs")  # as if the senders' jobs had run
    assert dispatch(db) == 1
    assert [j[1].isoformat() for j in dispatcher_jobs(db)] == ["2026-11-20T10:30:00+00:00"]


def test_a_send_after_a_large_bulk_send_on_the_same_connection_is_not_jit_compiled(
    db: psycopg.Connection[Any],
) -> None:
    """The planning statements keep their first plan for the session: a bulk send's row count must not
    leave every later single send paying for JIT compilation (hundreds of ms each)."""
    users = [uuid.UUID(int=5000 + i) for i in range(2000)]
    db.execute("INSERT INTO notify.recipients (user_id) SELECT unnest(%s::uuid[])", (users,))
    db.execute("UPDATE notify.settings SET value = '100000' WHERE key = 'batch.max_recipients'")
    db.execute("UPDATE notify.settings SET value = '1000000000' WHERE key LIKE 'rate_limit.%%'")
    with psycopg.connect(**dsn(db, login=False), autocommit=True) as conn:
        # auto_explain (superuser) prints every nested statement's plan, and whether it was JIT-compiled.
        conn.execute("LOAD 'auto_explain'")
        for setting in ("jit = on", "jit_above_cost = 100000", "auto_explain.log_min_duration = 0",
                        "auto_explain.log_nested_statements = on", "auto_explain.log_level = notice"):  # fmt: skip
            conn.execute(f"SET {setting}")
        conn.execute("SET ROLE notify_service")
        conn.execute("SELECT notify.send_bulk(%s, 'system', 'Maintenance tonight')", (users,))
        plans: list[str] = []
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        conn.execute("SELECT notify.send(%s, 'system', 'Maintenance done')", (users[0],))
    assert plans, "auto_explain printed the plans"
    assert [p for p in plans if "JIT:" in p] == []


def test_a_send_reads_its_deliveries_by_key_whatever_the_statistics_say(db: psycopg.Connection[Any]) -> None:
    """Statistics taken on an empty queue, then 1,000 open deliveries: queueing a send's dispatcher job reads
    its own deliveries by key, never the whole queue through the open-deliveries or the dispatcher's index
    (a send would slow down as the queue grows, until the next ANALYZE)."""
    db.execute("INSERT INTO notify.recipients (user_id, email) VALUES (%s, 'u@example.com')", (USER,))
    add_device(db, USER)
    db.execute("UPDATE notify.settings SET value = '1000000000' WHERE key LIKE 'rate_limit.%%'")
    db.execute("ANALYZE notify.notification_deliveries")
    db.execute(
        "INSERT INTO notify.notifications (user_id, type, title) SELECT %s, 'task', 'Queued' "
        "FROM generate_series(1, 1000)",
        (USER,),
    )
    assert db.execute(
        "SELECT count(*) FROM notify.notification_deliveries WHERE status = 'pending'"
    ).fetchone() == (1000,)  # fmt: skip
    with psycopg.connect(**dsn(db, login=False), autocommit=True) as conn:
        conn.execute("LOAD 'auto_explain'")
        for setting in ("auto_explain.log_min_duration = 0", "auto_explain.log_nested_statements = on",
                        "auto_explain.log_level = notice"):  # fmt: skip
            conn.execute(f"SET {setting}")
        conn.execute("SET ROLE notify_service")
        plans: list[str] = []
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        for _ in range(7):  # past the 5 calls after which PostgreSQL may switch to a generic plan
            conn.execute("SELECT notify.send(%s, 'task', 'Hello')", (USER,))
    reads = [p for p in plans if "queue_dispatch(due.at)" in p]
    assert len(reads) == 7
    assert all("notification_deliveries_pkey" in p and "notification_deliveries_open_idx" not in p
               and "notification_deliveries_due_idx" not in p for p in reads)  # fmt: skip


def test_a_new_sessions_sends_plan_their_statements_once(db: psycopg.Connection[Any]) -> None:
    """A send's statements keep the plan of their first call: a new session's sends 2 to 5 do not plan
    them anew (which made them cost twice a warm send), nor does any later send. Only the caller's own
    statement, sent unprepared, is planned at each call. (Limits far away: a rate-limit bucket that becomes a
    row at the sixth send would plan its statements there, once.)"""
    db.execute(
        "UPDATE notify.settings SET value = '1000000' "
        "WHERE key IN ('rate_limit.push_per_hour', 'rate_limit.in_app_per_hour', 'rate_limit.email_per_day')"
    )
    db.execute("INSERT INTO notify.recipients (user_id, email) VALUES (%s, 'u@example.com')", (USER,))
    add_device(db, USER)
    plannings: list[int] = []
    with psycopg.connect(**dsn(db, login=False), autocommit=True) as conn:
        conn.execute("SET log_planner_stats = on")  # (superuser) a LOG line each time a statement is planned
        conn.execute("SET client_min_messages = log")
        conn.execute("SET ROLE notify_service")
        conn.add_notice_handler(lambda notice: plannings.append(notice.message_primary == "PLANNER STATISTICS"))
        per_send = []
        for _ in range(8):
            plannings.clear()
            conn.execute("SELECT notify.send(%s, 'task', 'Hello')", (USER,))
            per_send.append(sum(plannings))
    assert per_send[0] > 10
    assert per_send[1:] == [1] * 7


def test_the_procrastinate_function_we_wrap_is_the_pinned_one(db: psycopg.Connection[Any]) -> None:
    """Fails loudly when a Procrastinate upgrade changes the internal API notify_private.defer_jobs wraps."""
    from importlib import metadata

    assert metadata.version("procrastinate").startswith("3.10."), "re-check notify_private.defer_jobs, then re-pin"
    row = db.execute(
        "SELECT to_regprocedure('procrastinate.procrastinate_defer_jobs_v1("
        "procrastinate.procrastinate_job_to_defer_v1[])') IS NOT NULL, "
        "(SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) "
        "FROM pg_attribute WHERE attrelid = 'procrastinate.procrastinate_job_to_defer_v1'::regclass AND attnum > 0)"
    ).fetchone()
    assert row == (
        True,
        "queue_name character varying, task_name character varying, priority integer, lock text, "
        "queueing_lock text, args jsonb, scheduled_at timestamp with time zone",
    )


def worker_conn(db: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    conn = psycopg.connect(**dsn(db, login=True), autocommit=True)
    conn.execute("SET ROLE notify_worker")
    return conn


def claim(worker: psycopg.Connection[Any], ids: list[str]) -> list[tuple[str, int]]:
    return [
        (str(r[0]), r[1])
        for r in worker.execute("SELECT id, attempts FROM notify_private.claim_deliveries(%s::uuid[])", (ids,))
    ]


def record(worker: psycopg.Connection[Any], outcomes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    rows = worker.execute("SELECT id, status FROM notify_private.record_outcomes(%s::jsonb)", (json.dumps(outcomes),))
    return [(str(r[0]), r[1]) for r in rows]


def pending_push(db: psycopg.Connection[Any], service: Any, count: int = 1) -> list[str]:
    made = []
    for _ in range(count):
        notification = send(service, "high", ["push"])
        row = db.execute(
            "SELECT id::text FROM notify.notification_deliveries WHERE notification_id = %s", (notification,)
        ).fetchone()
        assert row is not None
        made.append(row[0])
    return made


def test_the_ledger_sends_once_and_counts_unrecorded_answers(db: psycopg.Connection[Any], service: Any) -> None:
    add_device(db, USER)
    (delivery,) = pending_push(db, service)
    worker = worker_conn(db)
    assert claim(worker, [delivery]) == [(delivery, 1)]
    # The worker died before recording: the next attempt counts a possible repeat.
    assert claim(worker, [delivery]) == [(delivery, 2)]
    assert record(worker, [{"id": delivery, "outcome": "sent", "provider_message_id": "m-1"}]) == [(delivery, "sent")]
    assert claim(worker, [delivery]) == [], "a sent delivery is never claimed again"
    row = db.execute(
        "SELECT d.repeats, d.provider_message_id, d.sending_since IS NULL, s.failure_count, s.last_used_at IS NOT NULL "
        "FROM notify.notification_deliveries d JOIN notify.push_subscriptions s ON s.id = d.subscription_id "
        "WHERE d.id = %s",
        (delivery,),
    ).fetchone()
    assert row == (1, "m-1", True, 0, True)
    assert db.execute("SELECT event FROM notify.delivery_events").fetchall() == [("sent",)]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="an outcome is one of"):
        record(worker, [{"id": delivery, "outcome": "maybe"}])
    worker.close()


def test_three_strikes_deactivate_a_device_and_gone_does_at_once(db: psycopg.Connection[Any], service: Any) -> None:
    device = add_device(db, USER)
    worker = worker_conn(db)
    deliveries = pending_push(db, service, 3)
    for number, delivery in enumerate(deliveries, 1):
        claim(worker, [delivery])
        status = record(worker, [{"id": delivery, "outcome": "retry", "error": "503 Service Unavailable"}])
        assert status == [(delivery, "pending" if number < 3 else "failed")]
    row = db.execute(
        "SELECT is_active, failure_count, deactivated_reason FROM notify.push_subscriptions WHERE id = %s", (device,)
    ).fetchone()
    assert row == (False, 3, "3 consecutive failures, the last: 503 Service Unavailable")
    # The two still pending end unsent: their device is gone.
    assert claim(worker, deliveries[:2]) == []
    assert {r[0] for r in db.execute("SELECT reason FROM notify.notification_deliveries")} >= {
        "the device was deactivated"
    }

    other = add_device(db, USER)
    (delivery,) = [d for d in pending_push(db, service) if d]
    claim(worker, [delivery])
    assert record(worker, [{"id": delivery, "outcome": "gone", "error": "410 Gone"}]) == [(delivery, "failed")]
    assert db.execute("SELECT is_active FROM notify.push_subscriptions WHERE id = %s", (other,)).fetchone() == (False,)
    worker.close()


def test_one_call_records_a_whole_batch_whatever_each_answer_was(db: psycopg.Connection[Any], service: Any) -> None:
    """A job's outcomes go to the ledger in one statement: sent, retried, refused, gone and skipped side by side."""
    devices = [add_device(db, USER) for _ in range(4)]
    db.execute("UPDATE notify.recipients SET email = 'ada@example.com' WHERE user_id = %s", (USER,))
    notification = send(service, "critical", ["push", "email"])  # critical e-mail is instant
    rows = db.execute(
        "SELECT d.id::text, d.channel, d.subscription_id FROM notify.notification_deliveries AS d "
        "WHERE d.notification_id = %s AND d.channel IN ('push', 'email') ORDER BY d.channel DESC, d.subscription_id",
        (notification,),
    ).fetchall()
    by_device = {r[2]: r[0] for r in rows if r[1] == "push"}
    pushes = [by_device[d] for d in devices]
    (email,) = [r[0] for r in rows if r[1] == "email"]
    worker = worker_conn(db)
    claimed = {
        str(r[0]): r[1]
        for r in worker.execute(
            "SELECT id, unread_count FROM notify_private.claim_deliveries(%s::uuid[])", ([*pushes, email],)
        )
    }
    # The badge is counted for pushes only.
    assert claimed == {**dict.fromkeys(pushes, 1), email: 0}
    outcomes = [
        {"id": pushes[0], "outcome": "sent", "provider_message_id": "m-1"},
        {"id": pushes[1], "outcome": "retry", "error": "503 Service Unavailable"},
        {"id": pushes[2], "outcome": "failed", "error": "400 Bad Request"},
        {"id": pushes[3], "outcome": "gone", "error": "410 Gone"},
        {"id": email, "outcome": "skipped", "error": "no e-mail address"},
    ]
    assert sorted(record(worker, outcomes)) == sorted(
        [(pushes[0], "sent"), (pushes[1], "pending"), (pushes[2], "failed"), (pushes[3], "failed"), (email, "skipped")]
    )
    active = db.execute(
        "SELECT array_agg(is_active ORDER BY array_position(%s::uuid[], id)) FROM notify.push_subscriptions "
        "WHERE id = ANY(%s)",
        (devices, devices),
    ).fetchone()
    assert active == ([True, True, True, False],)
    events = db.execute("SELECT event, count(*) FROM notify.delivery_events GROUP BY 1 ORDER BY 1").fetchall()
    assert events == [("failed", 2), ("sent", 1)]
    worker.close()


def test_dead_letters_are_read_and_retried_from_sql(db: psycopg.Connection[Any], service: Any) -> None:
    db.execute("UPDATE notify.settings SET value = '2' WHERE key = 'delivery.max_attempts'")
    service.execute("SELECT notify.upsert_recipient_v2(%s, 'u@example.com')", (USER,))
    send(service, "critical", ["email"])
    (delivery,) = [r[0] for r in db.execute("SELECT id::text FROM notify.notification_deliveries")]
    worker = worker_conn(db)
    for expected in ("pending", "failed"):
        claim(worker, [delivery])
        assert record(worker, [{"id": delivery, "outcome": "retry", "error": "500"}]) == [(delivery, expected)]
    admin = psycopg.connect(**dsn(db, login=True), autocommit=True)
    admin.execute("SET ROLE notify_admin")
    dead = admin.execute("SELECT delivery_id::text, channel, attempts, reason FROM notify.dead_letters").fetchall()
    assert dead == [(delivery, "email", 2, "gave up after 2 attempts")]
    on_jobs(db, "DELETE FROM procrastinate_jobs")
    job = admin.execute("SELECT notify.retry_delivery(%s)", (delivery,)).fetchone()
    assert job is not None and job[0] is not None and dispatcher_jobs(db) == [("todo", None)]
    assert dispatch(db) == 1 and jobs(db) == [("email", "deliver_email", 4, [delivery])]
    assert db.execute("SELECT status, attempts FROM notify.notification_deliveries").fetchone() == ("pending", 0)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="only dead letters are retried"):
        admin.execute("SELECT notify.retry_delivery(%s)", (delivery,))
    with pytest.raises(psycopg.errors.NoDataFound):
        admin.execute("SELECT notify.retry_delivery(%s)", (uuid.uuid4(),))
    org_admin = psycopg.connect(**dsn(db, login=True), autocommit=True)
    org_admin.execute("SET ROLE notify_admin")
    org_admin.execute(
        "SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"org_id": str(uuid.uuid4())}),)
    )
    with pytest.raises(psycopg.errors.NoDataFound):
        org_admin.execute("SELECT notify.retry_delivery(%s)", (delivery,))
    for conn in (worker, admin, org_admin):
        conn.close()


def test_users_test_themselves_and_see_only_their_own_devices(db: psycopg.Connection[Any], service: Any) -> None:
    add_device(db, USER)
    stranger = uuid.UUID(int=12)
    add_device(db, stranger)
    user = user_conn(db, str(USER))
    row = user.execute("SELECT notify.send_test('push')").fetchone()
    assert row is not None
    assert planned(db, row[0]) == [("push", "pending", None)]
    assert db.execute("SELECT user_id, priority FROM notify.notifications WHERE id = %s", (row[0],)).fetchone() == (
        USER,
        "critical",
    )
    with pytest.raises(
        psycopg.errors.InvalidParameterValue, match="channel must be all or one of in_app, push, email, "
    ):
        user.execute("SELECT notify.send_test('fax')")
    assert user.execute("SELECT count(*) FROM notify.push_subscriptions").fetchone() == (1,)
    assert user.execute("SELECT count(*) FROM notify.notification_deliveries").fetchone() == (1,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        user.execute("SELECT * FROM notify_private.record_outcomes('[]')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        service.execute("SELECT notify.send_test('all')")
    user.close()


@pytest.mark.parametrize(
    ("role", "claims", "visible"),
    [
        ("notify_authenticated", {"sub": str(USER)}, None),
        ("notify_service", {"sub": "billing"}, None),
        ("notify_admin", {"sub": "ops", "org_id": str(uuid.UUID(int=99))}, 0),
        ("notify_admin", {"sub": "dba"}, 1),
        ("notify_worker", {}, 1),
    ],
)
def test_only_workers_and_dbas_see_vapid_keys_and_suppressions(
    db: psycopg.Connection[Any], as_role: Any, role: str, claims: dict[str, Any], visible: int | None
) -> None:
    db.execute("SELECT notify.add_vapid_key(repeat('A', 87), 'enc1.k.secret')")
    db.execute("INSERT INTO notify.email_suppressions (email, reason) VALUES ('gone@example.com', 'bounced')")
    for table in ("vapid_keys", "email_suppressions"):
        with as_role(role, claims) as cur:
            if visible is None:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    cur.execute(f"SELECT count(*) FROM notify.{table}")
            else:
                assert cur.execute(f"SELECT count(*) FROM notify.{table}").fetchone() == (visible,)


def test_quiet_hours_hold_push_until_they_end(db: psycopg.Connection[Any]) -> None:
    add_device(db, USER)
    db.execute("UPDATE notify.recipients SET timezone = 'Europe/Berlin' WHERE user_id = %s", (USER,))
    db.execute(
        "INSERT INTO notify.notification_preferences (user_id, quiet_hours_start, quiet_hours_end, quiet_hours_days) "
        "VALUES (%s, '22:00', '08:00', '[1,2,3,4,5,6,7]')",
        (USER,),
    )
    db.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    conn = service_conn(db)
    conn.execute("SET notify.clock = '2026-11-20 23:30+01'")  # a Friday night in Berlin
    normal, critical = send(conn, "high"), send(conn, "critical")
    conn.close()
    held = db.execute(
        "SELECT d.status, d.reason, d.scheduled_for = '2026-11-21 08:00+01' "
        "FROM notify.notification_deliveries d WHERE d.notification_id = %s AND d.channel = 'push'",
        (normal,),
    ).fetchone()
    assert held == ("pending", "held for quiet hours until 2026-11-21 08:00 Europe/Berlin", True)
    assert [j[1] for j in dispatcher_jobs(db)] == [datetime.fromisoformat("2026-11-21 08:00+01")]
    db.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    db.execute("SET notify.clock = '2026-11-20 23:30+01'")
    assert dispatch(db) == 1, "the critical push goes at once, the other at 08:00"
    db.execute("SET notify.clock = '2026-11-21 08:00+01'")
    assert dispatch(db) == 1
    assert planned(db, normal)[0] == ("in_app", "sent", None), "in-app never waits"
    assert ("push", "pending", None) in planned(db, critical), "critical is not held"
