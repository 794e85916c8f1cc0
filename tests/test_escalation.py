"""Escalation chains in SQL: a type's steps replace the priority's channels; a later step waits in the ledger
for its time and is cancelled the moment the notification is seen or read; bad chains are clear errors."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from tests.conftest import dsn, returned_id, user_conn
from tests.figures import report
from tests.server import ServerProcess, make_token, wait_for
from tests.standins.chat import ChatPlatforms
from tests.standins.http import Response
from tests.standins.resend import ResendService
from tests.standins.webhook_receiver import WebhookReceiver
from tests.test_delivery_sql import add_device, worker_conn
from tests.test_hooks import Stack, register
from tests.test_hooks import connect as connect_chat
from tests.test_hooks import stack as hooks_stack
from tests.test_worker import FAST, resend_env

# test_hooks's server and worker (webhook and chat allowed to the local stand-ins).
stack = hooks_stack

USER = uuid.UUID(int=0x20E5)
CLOCK = "2026-11-20 10:00:00+00"
CHANNELS = ("in_app", "push", "email", "sms", "webhook", "chat")
CHAIN = [
    {"channel": "in_app"},
    {"channel": "push", "after": "0"},
    {"channel": "email", "after": "15 minutes", "unless": "seen"},
]


def dba_conn(db: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """An admin without an org (a DBA), as the test login role."""
    conn = psycopg.connect(**dsn(db, login=True), autocommit=True)
    conn.execute("SET ROLE notify_admin")
    conn.execute("""SELECT set_config('request.jwt.claims', '{"sub": "dba", "role": "admin"}', false)""")
    return conn


def set_chain(db: psycopg.Connection[Any], type_: str, steps: Any) -> Any:
    conn = dba_conn(db)
    try:
        row = conn.execute("SELECT notify.set_escalation(%s, %s)", (type_, json.dumps(steps))).fetchone()
    finally:
        conn.close()
    assert row is not None
    return row[0]


def pin_clock(db: psycopg.Connection[Any], *conns: psycopg.Connection[Any], at: str = CLOCK) -> None:
    db.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    for conn in (db, *conns):
        conn.execute("SELECT set_config('notify.clock', %s, false)", (at,))


def send(service: psycopg.Connection[Any], priority: str = "normal", **extra: Any) -> uuid.UUID:
    names = "".join(f", {k} => %({k})s" for k in extra)
    return returned_id(
        service,
        f"SELECT notify.send(%(user)s, 'task', 'Assigned', 'a task for you', priority => %(priority)s{names})",
        {"user": USER, "priority": priority, **extra},
    )


def steps_of(
    db: psycopg.Connection[Any], notification: uuid.UUID
) -> dict[str, tuple[str, datetime | None, str | None]]:
    return {
        r[0]: (r[1], r[2], r[3])
        for r in db.execute(
            "SELECT channel, status, scheduled_for, unless FROM notify.notification_deliveries "
            "WHERE notification_id = %s",
            (notification,),
        )
    }


def recipient(db: psycopg.Connection[Any], *, device: bool = True, digest: str | None = None) -> None:
    db.execute(
        "INSERT INTO notify.recipients (user_id, email) VALUES (%s, 'esc@example.com') "
        "ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email",
        (USER,),
    )
    if device:
        add_device(db, USER)
    if digest:
        db.execute(
            "INSERT INTO notify.notification_preferences (user_id, digest_frequency) VALUES (%s, %s)", (USER, digest)
        )


def mark_read_as_the_user(db: psycopg.Connection[Any], notification: uuid.UUID) -> None:
    as_user = user_conn(db, str(USER))
    try:
        as_user.execute("SELECT notify.mark_read(%s)", (notification,))
    finally:
        as_user.close()


def assert_cancelled_by_the_read(db: psycopg.Connection[Any], notification: uuid.UUID, channel: str) -> None:
    row = db.execute(
        "SELECT status, reason FROM notify.notification_deliveries WHERE notification_id = %s AND channel = %s",
        (notification, channel),
    ).fetchone()
    assert row is not None and row[0] == "cancelled" and row[1].startswith("cancelled: the user read it at")


def test_a_chain_plans_each_step_at_its_time(db: psycopg.Connection[Any], service: Any) -> None:
    recipient(db)
    pin_clock(db, service)
    assert set_chain(db, "task", CHAIN) == [
        {"channel": "in_app", "after": "00:00:00"},
        {"channel": "push", "after": "00:00:00", "unless": "seen"},
        {"channel": "email", "after": "00:15:00", "unless": "seen"},
    ]
    notification = send(service)
    steps = steps_of(db, notification)
    assert steps["push"] == ("pending", None, "seen")
    assert steps["email"][0] == "pending" and steps["email"][2] == "seen"
    assert steps["email"][1] == datetime.fromisoformat(CLOCK) + timedelta(minutes=15)


def test_seeing_it_cancels_the_waiting_steps_and_explain_says_so(db: psycopg.Connection[Any], service: Any) -> None:
    recipient(db, device=False)
    pin_clock(db, service)
    set_chain(db, "task", CHAIN)
    notification = send(service)
    # Seen from plain SQL, as any session may (the inbox's mark_seen does the same UPDATE).
    db.execute("SELECT set_config('notify.clock', '2026-11-20 10:05:00+00', false)")
    db.execute("UPDATE notify.notifications SET seen_at = notify.now() WHERE id = %s", (notification,))
    status, _, _ = steps_of(db, notification)["email"]
    assert status == "cancelled"
    as_user = user_conn(db, str(USER))
    try:
        found = as_user.execute("SELECT notify.explain(%s)", (notification,)).fetchone()
    finally:
        as_user.close()
    assert found is not None
    explained = found[0]
    assert explained["rule"].startswith("escalation chain")
    email = next(s for s in explained["escalation"] if s["channel"] == "email")
    assert email["state"] == "cancelled"
    assert email["reason"] == "cancelled: the user saw it at 2026-11-20 10:05:00 UTC"
    assert email["planned_for"].startswith("2026-11-20T10:15:00")
    assert explained["escalation"][0] == {
        "step": 1, "channel": "in_app", "after": "00:00:00", "unless": None,
        "planned_for": "2026-11-20T10:00:00+00:00", "scheduled_for": None, "state": "run", "reason": None,
        "run_at": "2026-11-20T10:00:00+00:00", "cancelled_at": None,
    }  # fmt: skip


def test_reading_cancels_a_step_waiting_unless_read(db: psycopg.Connection[Any], service: Any) -> None:
    recipient(db, device=False)
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "email", "after": "1 hour", "unless": "read"}])
    notification = send(service)
    db.execute("UPDATE notify.notifications SET seen_at = now() WHERE id = %s", (notification,))
    assert steps_of(db, notification)["email"][0] == "pending"  # seen is not read
    mark_read_as_the_user(db, notification)
    assert_cancelled_by_the_read(db, notification, "email")


def test_an_email_step_is_an_email_even_for_digest_users_and_low_priority(
    db: psycopg.Connection[Any], service: Any
) -> None:
    recipient(db, device=False, digest="daily")
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "email", "after": "10 minutes"}])
    notification = send(service, priority="low")
    assert steps_of(db, notification)["email"][0] == "pending"
    assert db.execute(
        "SELECT count(*) FROM notify.notification_deliveries WHERE notification_id = %s AND status = 'held'",
        (notification,),
    ).fetchone() == (0,)


def test_critical_ignores_the_chain(db: psycopg.Connection[Any], service: Any) -> None:
    recipient(db)
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "email", "after": "1 hour"}])
    notification = send(service, priority="critical")
    steps = steps_of(db, notification)
    assert steps["push"] == ("pending", None, None) and steps["email"] == ("pending", None, None)


def test_a_push_step_due_in_quiet_hours_waits_for_their_end(db: psycopg.Connection[Any], service: Any) -> None:
    recipient(db)
    pin_clock(db, service, at="2026-11-20 21:50:00+00")
    db.execute(
        "INSERT INTO notify.notification_preferences (user_id, quiet_hours_start, quiet_hours_end, quiet_hours_days) "
        "VALUES (%s, '22:00', '07:00', '[1,2,3,4,5,6,7]')",
        (USER,),
    )
    # Sent before quiet hours, its push step comes due inside them: it waits until 07:00.
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "push", "after": "20 minutes"}])
    notification = send(service)
    status, due, _ = steps_of(db, notification)["push"]
    assert status == "pending" and due == datetime.fromisoformat("2026-11-21 07:00:00+00")


def test_a_senders_chain_overrides_the_types(db: psycopg.Connection[Any], service: Any) -> None:
    recipient(db, device=False)
    set_chain(db, "task", CHAIN)
    row = service.execute(
        "INSERT INTO notify.notifications (user_id, type, title, escalation) VALUES (%s, 'task', 'x', %s) RETURNING id",
        (USER, json.dumps([{"channel": "email", "after": "2 hours", "unless": "read"}])),
    ).fetchone()
    assert row is not None
    steps = steps_of(db, row[0])
    assert set(steps) == {"email"} and steps["email"][2] == "read"
    # An empty chain from the sender: the priority's channels (e-mail held for the default digest).
    row = service.execute(
        "INSERT INTO notify.notifications (user_id, type, title, escalation) VALUES (%s, 'task', 'y', '[]') "
        "RETURNING id",
        (USER,),
    ).fetchone()
    assert row is not None
    assert steps_of(db, row[0])["email"] == ("held", None, None)


def test_a_chain_is_for_dbas_only(db: psycopg.Connection[Any], as_role: Any) -> None:
    with as_role("notify_admin", {"sub": "a", "role": "admin", "org_id": str(uuid.uuid4())}) as cur:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only a DBA"):
            cur.execute("SELECT notify.set_escalation('task', %s)", (json.dumps(CHAIN),))
    with as_role("notify_service", {"sub": "billing", "role": "service"}) as cur:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute("SELECT notify.set_escalation('task', %s)", (json.dumps(CHAIN),))


def test_removing_a_chain_brings_back_the_priority_rules(db: psycopg.Connection[Any], service: Any) -> None:
    recipient(db, device=False)
    set_chain(db, "task", CHAIN)
    assert set_chain(db, "task", []) == []
    assert db.execute("SELECT count(*) FROM notify.escalation_chains").fetchone() == (0,)
    notification = send(service)
    assert steps_of(db, notification)["email"] == ("held", None, None)  # for the default digest again


# --- bad chains: a class of inputs, each a clear error of class 22 -----------------------------------------

# JSON text PostgreSQL takes (jsonb refuses \u0000 on its own, before any chain is read).
_TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=10)
_GOOD_STEP = st.fixed_dictionaries(
    {"channel": st.sampled_from(["push", "email", "webhook", "chat"])},
    optional={"after": st.sampled_from(["0", "5 minutes", "1 hour"]), "unless": st.sampled_from(["seen", "read"])},
)
_BAD_STEP = st.one_of(
    st.fixed_dictionaries({"channel": _TEXT.filter(lambda c: c not in CHANNELS)}),
    st.fixed_dictionaries({"channel": st.just("email"),
                           "after": st.sampled_from(["soon", "-5 minutes", "", "99 years"])}),
    st.fixed_dictionaries({"channel": st.just("email"), "after": st.one_of(st.integers(), st.booleans(), st.none())}),
    st.fixed_dictionaries({"channel": st.just("email"), "unless": _TEXT.filter(lambda u: u not in ("seen", "read"))}),
    st.fixed_dictionaries({"channel": st.just("email"), "when": st.just("later")}),
    st.fixed_dictionaries({"channel": st.just("in_app"), "after": st.just("1 minute")}),
    st.fixed_dictionaries({"channel": st.just("in_app"), "unless": st.sampled_from(["seen", "read"])}),
    st.one_of(st.integers(), _TEXT, st.lists(st.integers(), max_size=2)),
)  # fmt: skip


@st.composite
def bad_chains(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["bad_step", "decreasing", "repeated", "not_array", "too_long"]))
    if kind == "bad_step":
        steps = draw(st.lists(_GOOD_STEP, max_size=1, unique_by=lambda s: s["channel"]))
        return [*steps, draw(_BAD_STEP)] if draw(st.booleans()) else [draw(_BAD_STEP), *steps]
    if kind == "decreasing":
        return [{"channel": "push", "after": "1 hour"}, {"channel": "email", "after": "59 minutes"}]
    if kind == "repeated":
        channel = draw(st.sampled_from(["push", "email", "in_app"]))
        return [{"channel": channel}, {"channel": channel}]
    if kind == "not_array":
        return draw(st.one_of(st.dictionaries(_TEXT, st.integers(), max_size=2), _TEXT))
    # One step per channel is the most a chain has: a seventh repeats one.
    return [{"channel": c} for c in CHANNELS] + [{"channel": draw(st.sampled_from(CHANNELS[1:]))}]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=bad_chains())
def test_a_bad_chain_is_a_clear_error_and_changes_nothing(db: psycopg.Connection[Any], steps: Any) -> None:
    with pytest.raises(psycopg.Error) as caught:
        set_chain(db, "task", steps)
    assert caught.value.sqlstate is not None and caught.value.sqlstate[:2] in ("22", "23"), caught.value
    assert "escalation" in str(caught.value)
    assert db.execute("SELECT count(*) FROM notify.escalation_chains").fetchone() == (0,)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_GOOD_STEP, min_size=1, max_size=4, unique_by=lambda s: s["channel"]))
def test_a_good_chain_comes_back_normalized(db: psycopg.Connection[Any], steps: Any) -> None:
    ordered = sorted(steps, key=lambda s: ["0", "5 minutes", "1 hour"].index(s.get("after", "0")))
    stored = set_chain(db, "task", ordered)
    assert [s["channel"] for s in stored] == [s["channel"] for s in ordered]
    for i, (got, asked) in enumerate(zip(stored, ordered, strict=True)):
        assert got.get("unless") == asked.get("unless", "seen" if i else None)


# --- the read and the step's claim, racing ----------------------------------------------------------------


def claim_racing_a_read(
    worker: psycopg.Connection[Any], reader: psycopg.Connection[Any], notification: uuid.UUID, delivery: uuid.UUID
) -> bool:
    """The worker's claim of the step and the user's read, started together; whether the claim took it."""
    start = threading.Barrier(2)
    claimed: list[Any] = []

    def claim() -> None:
        start.wait()
        claimed.extend(worker.execute("SELECT id FROM notify_private.claim_deliveries(%s)", ([delivery],)).fetchall())

    thread = threading.Thread(target=claim)
    thread.start()
    start.wait()
    reader.execute("UPDATE notify.notifications SET seen_at = now() WHERE id = %s", (notification,))
    thread.join()
    return bool(claimed)


def test_no_step_is_claimed_after_the_read_has_committed(db: psycopg.Connection[Any], service: Any) -> None:
    """The delivery row is where the two meet: either the worker's claim took the step before the read
    committed (and the read leaves it to finish), or the read cancelled it and the claim finds nothing."""
    recipient(db, device=False)
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "email", "after": "0", "unless": "seen"}])
    worker = worker_conn(db)
    reader = psycopg.connect(**dsn(db, login=False), autocommit=True)
    outcomes: Counter[str] = Counter()
    status_of = "SELECT status, sending_since IS NOT NULL FROM notify.notification_deliveries WHERE id = %s"
    try:
        for _ in range(60):
            notification = send(service)
            row = db.execute(
                "SELECT id FROM notify.notification_deliveries WHERE notification_id = %s", (notification,)
            ).fetchone()
            assert row is not None
            delivery = row[0]
            if claim_racing_a_read(worker, reader, notification, delivery):
                # Claimed first: in flight, not cancelled; its outcome is recorded as usual.
                assert db.execute(status_of, (delivery,)).fetchone() == ("pending", True)
                outcomes["claimed"] += 1
            else:
                assert db.execute(status_of, (delivery,)).fetchone() == ("cancelled", False)
                outcomes["cancelled"] += 1
            # Either way a later claim (a retry) never takes it: the notification has been seen.
            retry = worker.execute("SELECT count(*) FROM notify_private.claim_deliveries(%s)", ([delivery],))
            assert retry.fetchone() == (0,)
            assert db.execute(status_of, (delivery,)).fetchone() == ("cancelled", False)
    finally:
        worker.close()
        reader.close()
    report("escalation: a step's claim racing the read", races=60, **outcomes)
    assert sum(outcomes.values()) == 60


def read_and_see_who_won(db: psycopg.Connection[Any], notification: uuid.UUID) -> str:
    """Marks the notification seen; in the same transaction, whether the read cancelled its step ("read") or
    found it claimed or sent by the worker already ("worker")."""
    with db.transaction():
        db.execute("UPDATE notify.notifications SET seen_at = now() WHERE id = %s", (notification,))
        row = db.execute(
            "SELECT status FROM notify.notification_deliveries WHERE notification_id = %s AND channel = 'email'",
            (notification,),
        ).fetchone()
    assert row is not None
    return "read" if row[0] == "cancelled" else "worker"


RACES = 40


def test_the_steps_job_racing_the_read_never_sends_after_the_read(
    db: psycopg.Connection[Any], own_worker: Any, resend_service: ResendService
) -> None:
    """A real worker runs each e-mail step at its time while the user reads it around that time: a step the
    read cancelled never reaches the provider; one the worker had claimed goes out once."""
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "email", "after": "1 second", "unless": "seen"}])
    users = [uuid.uuid4() for _ in range(RACES)]
    db.execute("SELECT notify.upsert_recipient(u, u::text || '@example.com') FROM unnest(%s::uuid[]) AS u", (users,))
    own_worker(**FAST, **resend_env(resend_service), WORKER_CONCURRENCY="4")
    rng = random.Random(2020)
    reads = sorted((rng.uniform(0.8, 3.5), user) for user in users)
    started = time.monotonic()
    sent = {user: db.execute("SELECT notify.send(%s, 'task', 'Assigned')", (user,)).fetchone()[0] for user in users}  # type: ignore[index]
    winners: dict[uuid.UUID, str] = {}
    for offset, user in reads:
        time.sleep(max(0.0, started + offset - time.monotonic()))
        winners[user] = read_and_see_who_won(db, sent[user])
    wait_for(
        lambda: (s := step_statuses(db)) and all(status != "pending" for status, _ in s.values()), timeout=30,
        what="every e-mail step settled",
    )  # fmt: skip
    received = Counter(address for email in resend_service.emails for address in email.to)
    outcomes = Counter(winners.values())
    report("escalation: the step's job racing the read (real worker)", races=RACES, **outcomes)
    for user, winner in winners.items():
        status, _ = step_statuses(db)[f"{user}@example.com"]
        if winner == "read":
            assert (status, received[f"{user}@example.com"]) == ("cancelled", 0)
        else:
            assert (status, received[f"{user}@example.com"]) == ("sent", 1)


# --- the worker killed between steps ------------------------------------------------------------------------

STEP_USERS = 30
STEP_KILLS = 6


def step_statuses(db: psycopg.Connection[Any]) -> dict[str, tuple[str, str | None]]:
    """Each user's e-mail step: its address, status and reason."""
    return {
        r[0]: (r[1], r[2])
        for r in db.execute(
            "SELECT r.email, d.status, d.reason FROM notify.notification_deliveries AS d "
            "JOIN notify.recipients AS r ON r.user_id = d.user_id WHERE d.channel = 'email'"
        )
    }


def test_the_worker_killed_between_steps_loses_none_runs_none_twice_and_none_after_a_read(
    db: psycopg.Connection[Any], own_worker: Any, resend_service: ResendService
) -> None:
    env = {**FAST, **resend_env(resend_service), "WORKER_CONCURRENCY": "4"}
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "email", "after": "2 seconds", "unless": "seen"}])
    users = [uuid.uuid4() for _ in range(STEP_USERS)]
    db.execute("SELECT notify.upsert_recipient(u, u::text || '@example.com') FROM unnest(%s::uuid[]) AS u", (users,))
    resend_service.script(*[Response(delay=0.3)] * STEP_USERS)
    worker = own_worker(**env)
    sent = {
        user: db.execute("SELECT notify.send(%s, 'task', 'Assigned', 'a task for you')", (user,)).fetchone()[0]  # type: ignore[index]
        for user in users
    }
    # Between the steps: the in-app step went with the send, the e-mail step waits for its time.
    worker.kill()
    seen_early, racing, unseen = users[:10], users[10:20], users[20:]
    for user in seen_early:
        db.execute("UPDATE notify.notifications SET seen_at = now() WHERE id = %s", (sent[user],))
    time.sleep(2.5)  # every e-mail step is due now
    rng = random.Random(20)
    for kill in range(STEP_KILLS):
        worker = own_worker(**env)
        if kill == 1:
            # Read while a worker runs the steps: each of these is cancelled or was claimed before the read.
            for user in racing:
                db.execute("UPDATE notify.notifications SET seen_at = now() WHERE id = %s", (sent[user],))
        time.sleep(rng.uniform(0.2, 1.0))
        worker.kill()
    own_worker(**env)
    statuses = wait_for(
        lambda: (s := step_statuses(db)) and all(status != "pending" for status, _ in s.values()) and s, timeout=60,
        what="every e-mail step settled after the kills",
    )  # fmt: skip
    received = Counter(address for email in resend_service.emails for address in email.to)
    address = {user: f"{user}@example.com" for user in users}
    report(
        "escalation: worker SIGKILL between steps",
        kills=STEP_KILLS,
        steps=STEP_USERS,
        lost=sum(1 for u in unseen if received[address[u]] == 0),
        run_twice=sum(1 for n in received.values() if n > 1),
        run_after_a_read=sum(1 for u in seen_early if received[address[u]] > 0),
        racing_cancelled=sum(1 for u in racing if statuses[address[u]][0] == "cancelled"),
    )
    # Seen before the step was due: cancelled, never sent.
    assert {statuses[address[u]][0] for u in seen_early} == {"cancelled"}
    assert all(received[address[u]] == 0 for u in seen_early)
    # Never seen: each sent, exactly once (a retry after a kill is the same e-mail: its idempotency key).
    assert {statuses[address[u]][0] for u in unseen} == {"sent"}
    assert all(received[address[u]] == 1 for u in unseen)
    # Seen while the worker ran: cancelled and not sent; or claimed before the read and sent once (its record,
    # when the worker died before writing it, says that the attempt may have reached the provider); never twice.
    for user in racing:
        status, reason = statuses[address[user]]
        assert (status, received[address[user]]) in {("cancelled", 0), ("cancelled", 1), ("sent", 1)}
        if (status, received[address[user]]) == ("cancelled", 1):
            assert reason is not None and reason.endswith("may have reached the provider"), reason


# --- over REST -----------------------------------------------------------------------------------------------

# Bad chains and what the database's 422 says of each (None: the request model refuses it first).
BAD_CHAINS_OVER_REST: list[tuple[list[dict[str, str]], str | None]] = [
    ([{"channel": "email", "after": "1 hour"}, {"channel": "push", "after": "5 minutes"}], "must not decrease"),
    ([{"channel": "email", "after": "soon"}], "after must be an interval"),
    ([{"channel": "fax"}], None),
    ([{"channel": "email", "unless": "clicked"}], None),
    ([{"channel": "email"}, {"channel": "email"}], "in the chain already"),
]


def test_admins_read_and_dbas_set_chains_over_rest(db: psycopg.Connection[Any], own_server: Any) -> None:
    server: ServerProcess = own_server()
    dba = {"Authorization": f"Bearer {make_token('dba', role='admin')}"}
    org_admin = {"Authorization": f"Bearer {make_token('a', role='admin', org_id=str(uuid.uuid4()))}"}
    user = {"Authorization": f"Bearer {make_token(USER)}"}
    path = "/api/v1/admin/escalations"
    with httpx.Client(base_url=server.url, timeout=10) as client:
        put = client.put(f"{path}/task", json={"steps": CHAIN}, headers=dba)
        assert put.status_code == 200, put.text
        assert put.json() == {"type": "task", "steps": [
            {"channel": "in_app", "after": "00:00:00", "unless": None},
            {"channel": "push", "after": "00:00:00", "unless": "seen"},
            {"channel": "email", "after": "00:15:00", "unless": "seen"},
        ]}  # fmt: skip
        listed = client.get(path, headers=org_admin)
        assert listed.status_code == 200
        (chain,) = listed.json()["escalations"]
        assert chain["type"] == "task" and chain["updated_by"] == "dba" and len(chain["steps"]) == 3
        # An org admin reads, and may not write; a user may do neither.
        refused = client.put(f"{path}/task", json={"steps": []}, headers=org_admin)
        assert refused.status_code == 403
        assert client.get(path, headers=user).status_code == 403
        # Bad chains: 422 with the database's message, and the chain stays as it was.
        for steps, message in BAD_CHAINS_OVER_REST:
            bad = client.put(f"{path}/task", json={"steps": steps}, headers=dba)
            assert bad.status_code == 422, (steps, bad.text)
            if message is not None:
                assert message in bad.text, bad.text
        assert client.put(f"{path}/no_such_type", json={"steps": CHAIN}, headers=dba).status_code == 422
        assert len(client.get(path, headers=dba).json()["escalations"][0]["steps"]) == 3
        removed = client.put(f"{path}/task", json={"steps": []}, headers=dba)
        assert removed.status_code == 200 and removed.json()["steps"] == []
        assert client.get(path, headers=dba).json() == {"escalations": []}


async def read_over_the_websocket(server: ServerProcess, user: uuid.UUID, notification: uuid.UUID) -> Any:
    async with connect(f"{server.ws_url}?token={make_token(user)}") as ws:
        await ws.send(json.dumps({"type": "mark_read", "notification_id": str(notification)}))
        while (message := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "read_status_updated":
            pass
        return message


def test_a_read_over_the_websocket_cancels_the_waiting_step(
    db: psycopg.Connection[Any], service: Any, own_server: Any
) -> None:
    server: ServerProcess = own_server()
    recipient(db, device=False)
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "email", "after": "10 minutes", "unless": "read"}])
    notification = send(service)
    assert steps_of(db, notification)["email"][0] == "pending"
    answer = asyncio.run(read_over_the_websocket(server, USER, notification))
    assert answer["notification_id"] == str(notification) and answer["unread_count"] == 0
    assert_cancelled_by_the_read(db, notification, "email")


def test_a_step_waits_for_its_rate_limit_token(db: psycopg.Connection[Any], service: Any) -> None:
    recipient(db)
    pin_clock(db, service)
    db.execute("UPDATE notify.settings SET value = '1' WHERE key = 'rate_limit.push_per_hour'")
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "push", "after": "0"}])
    first, second = send(service), send(service)
    assert steps_of(db, first)["push"][:2] == ("pending", None)
    status, due, _ = steps_of(db, second)["push"]
    # One push an hour: the second step waits for the token the first one spent to come back.
    assert status == "pending" and due is not None and due > datetime.fromisoformat(CLOCK) + timedelta(minutes=30)
    reason = db.execute(
        "SELECT reason FROM notify.notification_deliveries WHERE notification_id = %s", (second,)
    ).fetchone()
    assert reason == ("push rate limit (1 per hour): waits for a token",)
    # A step due after its token is back does not wait longer than its own time.
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "push", "after": "3 hours"}])
    third = send(service)
    assert steps_of(db, third)["push"][1] == datetime.fromisoformat(CLOCK) + timedelta(hours=3)


def test_a_bulk_send_follows_the_types_chain(db: psycopg.Connection[Any], service: Any) -> None:
    users = [uuid.uuid4() for _ in range(3)]
    db.execute("SELECT notify.upsert_recipient(u, u::text || '@example.com') FROM unnest(%s::uuid[]) AS u", (users,))
    pin_clock(db, service)
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "email", "after": "15 minutes", "unless": "read"}])
    service.execute("SELECT notify.send_bulk(%s, 'task', 'Sprint planning')", (users,))
    rows = db.execute(
        "SELECT status, unless, scheduled_for >= %s FROM notify.notification_deliveries WHERE channel = 'email'",
        (datetime.fromisoformat(CLOCK) + timedelta(minutes=15),),
    ).fetchall()
    assert rows == [("pending", "read", True)] * 3


def test_an_sms_step_waits_for_its_time_and_a_read_cancels_it(db: psycopg.Connection[Any], service: Any) -> None:
    service.execute("SELECT notify.upsert_recipient_v2(%s, phone => '+14155550100')", (USER,))
    pin_clock(db, service)
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "sms", "after": "10 minutes", "unless": "read"}])
    notification = send(service)
    steps = steps_of(db, notification)
    assert steps["sms"] == ("pending", datetime.fromisoformat(CLOCK) + timedelta(minutes=10), "read")
    mark_read_as_the_user(db, notification)
    assert_cancelled_by_the_read(db, notification, "sms")


def test_a_chain_sent_over_rest_overrides_the_types_and_a_bad_one_writes_nothing(
    db: psycopg.Connection[Any], own_server: Any
) -> None:
    recipient(db, device=False)
    set_chain(db, "task", CHAIN)
    server: ServerProcess = own_server()
    service_auth = {"Authorization": f"Bearer {make_token('ticketing', role='service')}"}
    body = {"user_id": str(USER), "type": "task", "title": "Assigned"}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        own = [{"channel": "email", "after": "2 hours", "unless": "read"}]
        sent = client.post("/api/v1/notifications", json={**body, "escalation": own}, headers=service_auth)
        assert sent.status_code == 202, sent.text
        notification = uuid.UUID(sent.json()["id"])
        stored = db.execute("SELECT escalation FROM notify.notifications WHERE id = %s", (notification,)).fetchone()
        assert stored is not None and stored[0] == [{"channel": "email", "after": "02:00:00", "unless": "read"}]
        planned = steps_of(db, notification)
        assert set(planned) == {"email"} and planned["email"][0] == "pending" and planned["email"][2] == "read"
        # [] sends it without a chain: the priority's channels (e-mail held for the default digest).
        plain = client.post("/api/v1/notifications", json={**body, "escalation": []}, headers=service_auth)
        assert plain.status_code == 202, plain.text
        assert steps_of(db, uuid.UUID(plain.json()["id"]))["email"] == ("held", None, None)
        count = db.execute("SELECT count(*) FROM notify.notifications").fetchone()
        for steps, message in BAD_CHAINS_OVER_REST:
            bad = client.post("/api/v1/notifications", json={**body, "escalation": steps}, headers=service_auth)
            assert bad.status_code == 422, (steps, bad.text)
            if message is not None:
                assert message in bad.text, bad.text
        assert db.execute("SELECT count(*) FROM notify.notifications").fetchone() == count
        # The chain is part of the request an idempotency key is bound to.
        keyed = {**body, "escalation": own, "idempotency_key": "esc-1"}
        first = client.post("/api/v1/notifications", json=keyed, headers=service_auth)
        assert first.status_code == 202, first.text
        replay = client.post("/api/v1/notifications", json=keyed, headers=service_auth)
        assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
        other = client.post("/api/v1/notifications", json={**keyed, "escalation": []}, headers=service_auth)
        assert other.status_code == 422, other.text


# --- webhook and chat steps -----------------------------------------------------------------------------------


def test_webhook_and_chat_steps_wait_for_their_time_at_every_target_and_a_read_cancels_them(
    db: psycopg.Connection[Any], service: Any
) -> None:
    org, colleague = uuid.uuid4(), uuid.uuid4()
    for someone in (USER, colleague):
        db.execute("SELECT notify.upsert_recipient_v2(%s, NULL, org_id => %s)", (someone, org))
    # The user's endpoint and their org's channel; a colleague's own endpoint is not the user's.
    for owner in (USER, colleague):
        db.execute("INSERT INTO notify.webhook_endpoints (user_id, url, secret_encrypted) "
                   "VALUES (%s, 'https://hooks.example.com/in', 'x')", (owner,))  # fmt: skip
    db.execute("INSERT INTO notify.chat_connections (user_id, org_id, platform, url_encrypted) "
               "VALUES (%s, %s, 'slack', 'x')", (colleague, org))  # fmt: skip
    pin_clock(db, service)
    chain = [{"channel": "in_app"}, {"channel": "webhook", "after": "10 minutes", "unless": "read"},
             {"channel": "chat", "after": "20 minutes"}]  # fmt: skip
    assert set_chain(db, "task", chain)[1:] == [
        {"channel": "webhook", "after": "00:10:00", "unless": "read"},
        {"channel": "chat", "after": "00:20:00", "unless": "seen"},
    ]
    notification = send(service)
    at = datetime.fromisoformat(CLOCK)
    assert steps_of(db, notification) == {
        "webhook": ("pending", at + timedelta(minutes=10), "read"),
        "chat": ("pending", at + timedelta(minutes=20), "seen"),
    }
    reasons = db.execute("SELECT channel, reason FROM notify.notification_deliveries WHERE notification_id = %s "
                         "ORDER BY channel", (notification,)).fetchall()  # fmt: skip
    assert reasons == [
        ("chat", "escalation step: due 00:20:00 after it was sent, unless seen by then"),
        ("webhook", "escalation step: due 00:10:00 after it was sent, unless read by then"),
    ]
    mark_read_as_the_user(db, notification)
    assert_cancelled_by_the_read(db, notification, "webhook")
    # Reading sets seen_at too: the chat step waiting unless seen says that.
    chat = db.execute("SELECT status, reason FROM notify.notification_deliveries "
                      "WHERE notification_id = %s AND channel = 'chat'", (notification,)).fetchone()  # fmt: skip
    assert chat is not None and chat[0] == "cancelled" and chat[1].startswith("cancelled: the user saw it at")
    explained = db.execute("SELECT notify.explain(%s)", (notification,)).fetchone()
    assert explained is not None
    assert [(s["channel"], s["state"]) for s in explained[0]["escalation"]] == [
        ("in_app", "run"), ("webhook", "cancelled"), ("chat", "cancelled"),
    ]  # fmt: skip
    # A chain without a webhook or chat step leaves them as without a chain: at once, to every target.
    set_chain(db, "task", CHAIN)
    assert steps_of(db, send(service))["webhook"] == ("pending", None, None)


def test_a_chat_step_due_in_quiet_hours_waits_for_their_end_and_a_switch_skips_a_step(
    db: psycopg.Connection[Any], service: Any
) -> None:
    db.execute("SELECT notify.upsert_recipient_v2(%s, NULL, timezone => 'UTC')", (USER,))
    db.execute("INSERT INTO notify.chat_connections (user_id, platform, url_encrypted) VALUES (%s, 'slack', 'x')",
               (USER,))  # fmt: skip
    db.execute("INSERT INTO notify.webhook_endpoints (user_id, url, secret_encrypted) "
               "VALUES (%s, 'https://hooks.example.com/in', 'x')", (USER,))  # fmt: skip
    # Quiet from 10:30 to 12:00 every day: the step due at 10:45 waits for 12:00; at 10:00 it was not quiet.
    db.execute("INSERT INTO notify.notification_preferences (user_id, quiet_hours_start, quiet_hours_end, "
               "quiet_hours_days, webhook_enabled) VALUES (%s, '10:30', '12:00', '[1, 2, 3, 4, 5, 6, 7]', false)",
               (USER,))  # fmt: skip
    pin_clock(db, service)
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "webhook"}, {"channel": "chat", "after": "45 minutes"}])
    notification = send(service)
    assert steps_of(db, notification) == {"chat": ("pending", datetime.fromisoformat("2026-11-20 12:00:00+00"), "seen")}
    decided = db.execute("SELECT channel, status, reason FROM notify.delivery_decisions WHERE notification_id = %s "
                         "AND channel IN ('webhook', 'chat') ORDER BY channel", (notification,)).fetchall()  # fmt: skip
    assert decided == [
        ("chat", "pending", "held for quiet hours until 2026-11-20 12:00 UTC"),
        ("webhook", "skipped", "webhook is turned off for task notifications"),
    ]


def test_webhook_and_chat_steps_reach_the_stand_ins_and_a_seen_one_never_does(
    stack: Stack, webhook_receiver: WebhookReceiver, chat_platforms: ChatPlatforms
) -> None:
    """A real worker sends the webhook step when it comes due; the chat step, seen while it waits, never goes."""
    user = uuid.uuid4()
    url = webhook_receiver.endpoint()
    endpoint = register(stack, user, url)
    webhook_receiver.trust(url, endpoint["secret"])
    connect_chat(stack, user, "slack", chat_platforms.webhook("slack"))
    chain = [
        {"channel": "in_app"},
        {"channel": "webhook", "after": "1 second"},
        {"channel": "chat", "after": "2 seconds"},
    ]
    sent = stack.send(user, escalation=chain)
    assert stack.delivery(sent, "webhook")["status"] == "pending", "not before its time"
    seen = user_conn(stack.db, str(user))
    try:
        assert seen.execute("SELECT notify.mark_seen(%s)", ([sent],)).fetchone() == (1,)
    finally:
        seen.close()
    assert stack.delivery(sent, "chat")["status"] == "cancelled"
    # The webhook step was waiting unless seen too: send another chain whose webhook step nobody sees.
    # (Its sender's channels leave chat out: a chain without a chat step sends chat at once, as without a chain.)
    unseen = stack.send(user, escalation=chain[:2], channels=["in_app", "webhook"])
    delivery = stack.settled(unseen, "webhook")
    assert delivery["status"] == "sent" and delivery["sent_at"] >= delivery["scheduled_for"]
    (message,) = webhook_receiver.messages
    assert message.webhook_id == str(delivery["id"]) and message.verified_by == [endpoint["secret"]]
    assert message.json["data"]["id"] == unseen
    time.sleep(2.5)  # past the seen chain's chat step: its job, had it been planned, would have run
    assert chat_platforms.messages == [] and stack.delivery(sent, "chat")["status"] == "cancelled"
    assert stack.delivery(sent, "webhook")["status"] == "cancelled"
