"""Retention, GDPR erasure and the audit log, in SQL: what is removed, what is kept, what is recorded."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

from notifyd.db.pool import create_pool
from notifyd.domain.retention import apply_retention
from tests.conftest import database_url
from tests.server import make_token
from tests.test_delivery_sql import add_device

NOW = "2030-06-01T12:00:00Z"
ALICE = uuid.UUID("a11ce000-0000-4000-8000-000000000001")
BOB = uuid.UUID("b0b00000-0000-4000-8000-000000000002")
ORG_A = uuid.UUID("0a000000-0000-4000-8000-00000000000a")
ORG_B = uuid.UUID("0b000000-0000-4000-8000-00000000000b")
DBA = {"sub": "dba", "role": "admin"}


def org_admin(org: uuid.UUID) -> dict[str, Any]:
    return {"sub": str(uuid.uuid4()), "role": "admin", "org_id": str(org)}


@pytest.fixture(autouse=True)
def people(db: psycopg.Connection[Any]) -> None:
    db.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    # Thousands of notifications per user are set up here: no rate limit in the way.
    db.execute("UPDATE notify.settings SET value = '100000' WHERE key LIKE 'rate_limit.%'")
    db.execute(
        "INSERT INTO notify.recipients (user_id, email, org_id) VALUES (%s, 'alice@example.com', %s), "
        "(%s, 'bob@example.org', %s)",
        (ALICE, ORG_A, BOB, ORG_B),
    )


def seed(
    db: psycopg.Connection[Any],
    count: int,
    *,
    user: uuid.UUID = ALICE,
    type_: str = "task",
    age_days: float = 1,
    read: bool = False,
    expires_in_days: float | None = None,
    deleted: bool = False,
) -> set[uuid.UUID]:
    """`count` notifications created age_days before NOW (a minute apart, the first the newest)."""
    # Made at their time with the clock pinned: a notification's created_at never changes once made.
    made = []
    for i in range(1, count + 1):
        db.execute(
            "SELECT set_config('notify.clock', (%s::timestamptz - make_interval(secs => %s * 86400 + %s * 60))::text,"
            " false)",
            (NOW, age_days, i),
        )
        made.append(
            db.execute(
                "INSERT INTO notify.notifications (user_id, type, title, body, channels) "
                "VALUES (%s, %s, 't', 'b', ARRAY['in_app']) RETURNING id",
                (user, type_),
            ).fetchone()
        )
    db.execute("SELECT set_config('notify.clock', '', false)")
    rows = db.execute(
        "UPDATE notify.notifications AS n SET "
        "  read_at = CASE WHEN %s THEN %s::timestamptz END, "
        "  expires_at = %s::timestamptz + make_interval(secs => %s * 86400), "
        "  deleted_at = CASE WHEN %s THEN %s::timestamptz END "
        "FROM unnest(%s::uuid[]) WITH ORDINALITY AS numbered (id, i) WHERE n.id = numbered.id RETURNING n.id",
        (read, NOW, NOW, expires_in_days, deleted, NOW, [r[0] for r in made if r is not None]),
    ).fetchall()
    assert len(rows) == count
    return {r[0] for r in rows}


def remaining(db: psycopg.Connection[Any]) -> set[uuid.UUID]:
    return {r[0] for r in db.execute("SELECT id FROM notify.notifications")}


def retention(as_role: Any, *args: int | None, role: str = "notify_worker", claims: Any = None) -> dict[str, Any]:
    with as_role(role, claims) as cur:
        cur.execute("SELECT set_config('notify.clock', %s, true)", (NOW,))
        cur.execute(f"SELECT notify.apply_retention({', '.join(['%s'] * len(args))})", args)
        result: dict[str, Any] = cur.fetchone()[0]
        cur.execute("COMMIT")
    return result


def test_retention_removes_what_the_policies_say_and_nothing_else(db: psycopg.Connection[Any], as_role: Any) -> None:
    # security keeps 400 days; everything else the default 90.
    db.execute("INSERT INTO notify.retention_policies (notification_type, max_age) VALUES ('security', '400 days')")
    old_tasks = seed(db, 3, age_days=91)
    young_tasks = seed(db, 2, age_days=89)
    old_security = seed(db, 2, type_="security", age_days=399)
    ancient_security = seed(db, 1, type_="security", age_days=401)
    expired = seed(db, 2, expires_in_days=-0.01)
    not_yet_expired = seed(db, 1, expires_in_days=0.01)
    deleted_old = seed(db, 2, age_days=95, deleted=True)
    deleted_young = seed(db, 1, age_days=10, deleted=True)

    result = retention(as_role)

    assert remaining(db) == young_tasks | old_security | not_yet_expired | deleted_young
    assert result == {
        "expired": 2,
        "too_old": 6,
        "over_cap": 0,
        "webhook_events": 0,
        "by_type": {"task": 7, "security": 1},
        "batches": 2,
        "done": True,
    }
    assert old_tasks | ancient_security | expired | deleted_old
    # The cascade took their deliveries along: the remaining ones' in-app deliveries (sent at once, so
    # their notifications are their record) are all that is left.
    assert db.execute("SELECT count(*) FROM notify.notification_deliveries").fetchone() == (0,)
    assert db.execute(
        "SELECT count(*), count(*) FILTER (WHERE channel = 'in_app' AND status = 'sent') FROM notify.delivery_decisions"
    ).fetchone() == (len(remaining(db)), len(remaining(db)))


def test_the_cap_keeps_the_newest_read_notifications_and_every_unread_one(
    db: psycopg.Connection[Any], as_role: Any
) -> None:
    db.execute(
        "INSERT INTO notify.retention_policies (notification_type, max_age, max_read_per_user) "
        "VALUES ('task', '90 days', 3)"
    )
    read = seed(db, 5, read=True)  # the first three are the newest

    def created_at(notification: uuid.UUID) -> datetime:
        row = db.execute("SELECT created_at FROM notify.notifications WHERE id = %s", (notification,)).fetchone()
        assert row is not None and isinstance(row[0], datetime)
        return row[0]

    newest = set(sorted(read, key=created_at, reverse=True)[:3])
    unread = seed(db, 6, age_days=2)
    others = seed(db, 4, type_="system", read=True)  # the default cap (1,000) governs system
    bobs = seed(db, 3, user=BOB, read=True)

    result = retention(as_role)

    assert remaining(db) == newest | unread | others | bobs
    assert result["over_cap"] == 2 and result["by_type"] == {"task": 2}


def test_the_default_cap_is_1000_read_per_user(db: psycopg.Connection[Any], as_role: Any) -> None:
    seed(db, 1003, read=True)
    assert retention(as_role)["over_cap"] == 3
    assert db.execute("SELECT count(*) FROM notify.notifications").fetchone() == (1000,)


def test_one_batch_removes_at_most_batch_size(db: psycopg.Connection[Any], as_role: Any) -> None:
    seed(db, 7, age_days=100)
    first = retention(as_role, 5, 1)
    assert (first["too_old"], first["batches"], first["done"]) == (5, 1, False)
    assert db.execute("SELECT count(*) FROM notify.notifications").fetchone() == (2,)
    second = retention(as_role, 5, None)
    assert (second["too_old"], second["done"]) == (2, True)
    with pytest.raises(psycopg.errors.InvalidParameterValue), as_role("notify_worker") as cur:
        cur.execute("SELECT notify.apply_retention(0)")


def test_old_webhook_event_ids_are_pruned(db: psycopg.Connection[Any], as_role: Any) -> None:
    db.execute(
        "INSERT INTO notify.webhook_events (provider, event_id, received_at) VALUES "
        "('resend', 'old', %s::timestamptz - interval '31 days'), ('resend', 'new', %s)",
        (NOW, NOW),
    )
    assert retention(as_role)["webhook_events"] == 1
    assert db.execute("SELECT event_id FROM notify.webhook_events").fetchall() == [("new",)]


def test_only_dbas_and_the_worker_apply_retention(db: psycopg.Connection[Any], as_role: Any) -> None:
    seed(db, 1, age_days=100)
    assert retention(as_role, role="notify_admin", claims=DBA)["too_old"] == 1
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role("notify_admin", org_admin(ORG_A)) as cur:
        cur.execute("SELECT notify.apply_retention()")
    for role in ("notify_service", "notify_authenticated"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(role, {"sub": str(ALICE)}) as cur:
            cur.execute("SELECT notify.apply_retention()")


def give_alice_everything(db: psycopg.Connection[Any]) -> None:
    device = add_device(db, ALICE)
    db.execute(
        "INSERT INTO notify.notification_preferences (user_id, notification_type, push_enabled) "
        "VALUES (%s, NULL, true)",
        (ALICE,),
    )
    (note,) = seed(db, 1)
    db.execute("UPDATE notify.notifications SET channels = ARRAY['in_app', 'push', 'email'] WHERE id = %s", (note,))
    db.execute(
        "INSERT INTO notify.notifications (user_id, type, title, body, channels, data) "
        "VALUES (%s, 'task', 'planned', 'b', ARRAY['in_app', 'push', 'email'], %s)",
        (ALICE, json.dumps({"about": str(ALICE)})),
    )
    db.execute(
        "INSERT INTO notify.notification_folds (notification_id, user_id, group_count, title) "
        "VALUES (%s, %s, 2, 'folded')",
        (note, ALICE),
    )
    db.execute(
        "INSERT INTO notify.notification_actions (notification_id, user_id, type, action) "
        "VALUES (%s, %s, 'task', 'accept')",
        (note, ALICE),
    )
    db.execute(
        "INSERT INTO notify.notification_analytics (notification_id, notification_type, channel, event, user_id, "
        "org_id, device_id, metadata) VALUES (%s, 'task', 'push', 'sent', %s, %s, %s, %s)",
        (note, ALICE, ORG_A, device, json.dumps({"to": "alice@example.com", "user": str(ALICE)})),
    )
    db.execute(
        "INSERT INTO notify.rate_buckets (user_id, channel, tokens, refreshed_at) "
        "VALUES (%s, 'push', 3, now()) ON CONFLICT DO NOTHING",
        (ALICE,),
    )
    db.execute(
        "INSERT INTO notify.email_digests (user_id, frequency, period_start, scheduled_for, notification_ids) "
        "VALUES (%s, 'daily', now(), now(), ARRAY[%s]::uuid[])",
        (ALICE, note),
    )
    db.execute("INSERT INTO notify.email_suppressions (email, reason) VALUES ('alice@example.com', 'bounced')")
    db.execute(
        "INSERT INTO notify.notification_batches (type, recipient_count, created_by) VALUES ('task', 1, %s)",
        (str(ALICE),),
    )


def mentions(db: psycopg.Connection[Any], *needles: str) -> list[str]:
    """Every table of notify, notify_private and procrastinate whose rows, as text, contain a needle."""
    tables = db.execute(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
        "WHERE schemaname IN ('notify', 'notify_private', 'procrastinate') ORDER BY 1"
    ).fetchall()
    assert len(tables) > 20
    found = []
    for (table,) in tables:
        for needle in needles:
            hit = db.execute(f"SELECT count(*) FROM {table} AS t WHERE t::text ILIKE %s", (f"%{needle}%",))  # noqa: S608
            if hit.fetchone() != (0,):
                found.append(f"{table}: {needle}")
    return found


def erase(as_role: Any, user: uuid.UUID, claims: dict[str, Any]) -> dict[str, Any]:
    with as_role("notify_admin", claims) as cur:
        cur.execute("SELECT notify.erase_user(%s)", (user,))
        counts: dict[str, Any] = cur.fetchone()[0]
        cur.execute("COMMIT")
    return counts


def test_erasure_leaves_no_row_that_mentions_the_user(db: psycopg.Connection[Any], as_role: Any) -> None:
    give_alice_everything(db)
    assert len(mentions(db, str(ALICE), "alice@example.com")) >= 10  # the scan finds what is there

    counts = erase(as_role, ALICE, org_admin(ORG_A))

    assert mentions(db, str(ALICE), "alice@example.com", "alice") == []
    assert counts["recipients"] == 1 and counts["notifications"] == 2 and counts["email_suppressions"] == 1
    # Rows removed per table: an in-app delivery sent at once has none (its notification is its record).
    assert counts["notification_deliveries"] >= 2 and counts["push_subscriptions"] == 1
    for table in (
        "notification_folds",
        "notification_actions",
        "notification_analytics",
        "rate_buckets",
        "email_digests",
        "notification_preferences",
        "notification_batches",
    ):
        assert counts[table] >= 1, table
    # Bob is untouched; the analytics row still counts, anonymously.
    assert db.execute("SELECT count(*) FROM notify.recipients WHERE user_id = %s", (BOB,)).fetchone() == (1,)
    assert db.execute("SELECT user_id, device_id, metadata FROM notify.notification_analytics").fetchall() == [
        (None, None, {})
    ]
    audit = db.execute("SELECT org_id, target, detail FROM notify.audit_log WHERE action = 'user.erased'").fetchall()
    assert audit == [(ORG_A, audit[0][1], counts)] and audit[0][1].startswith("h:")


def test_an_org_admin_erases_only_users_of_their_org(db: psycopg.Connection[Any], as_role: Any) -> None:
    with pytest.raises(psycopg.errors.NoDataFound), as_role("notify_admin", org_admin(ORG_A)) as cur:
        cur.execute("SELECT notify.erase_user(%s)", (BOB,))
    with pytest.raises(psycopg.errors.NoDataFound), as_role("notify_admin", DBA) as cur:
        cur.execute("SELECT notify.erase_user(%s)", (uuid.uuid4(),))
    for role in ("notify_service", "notify_authenticated", "notify_worker"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(role, {"sub": str(BOB)}) as cur:
            cur.execute("SELECT notify.erase_user(%s)", (BOB,))
    assert db.execute("SELECT count(*) FROM notify.recipients WHERE user_id = %s", (BOB,)).fetchone() == (1,)
    assert erase(as_role, BOB, DBA)["recipients"] == 1


def test_changes_of_policies_and_templates_are_audited_and_masked(db: psycopg.Connection[Any], as_role: Any) -> None:
    admin = org_admin(ORG_A)
    with as_role("notify_admin", admin) as cur:
        cur.execute(
            "INSERT INTO notify.org_notification_preferences (org_id, notification_type, push_enabled) "
            "VALUES (%s, 'task', false)",
            (ORG_A,),
        )
        cur.execute("COMMIT")
    with as_role("notify_admin", DBA) as cur:
        cur.execute("UPDATE notify.retention_policies SET max_age = '30 days' WHERE notification_type IS NULL")
        cur.execute("COMMIT")
    with as_role("notify_worker") as cur:
        cur.execute(
            "SELECT notify_private.audit('rest.forbidden', %s)",
            (json.dumps({"path": f"/api/v1/x/{ALICE}", "email": "alice@example.com", "status": 403}),),
        )
        cur.execute("COMMIT")
    rows = db.execute("SELECT org_id, actor, action, detail FROM notify.audit_log ORDER BY id").fetchall()
    assert [(r[0], r[2]) for r in rows] == [
        (ORG_A, "org_notification_preferences.insert"),
        (None, "retention_policies.update"),
        (None, "rest.forbidden"),
    ]
    assert rows[0][1].startswith("h:") and rows[0][3]["push_enabled"] is False
    assert (rows[1][1], rows[1][3]["max_age"]) == ("dba", "30 days")
    assert rows[2][1] == "notify_worker" and rows[2][3]["email"] == "a***@example.com"
    assert str(ALICE) not in json.dumps(rows[2][3]) and "/api/v1/x/h:" in rows[2][3]["path"]
    # Org admins read their org's rows, DBAs all.
    with as_role("notify_admin", org_admin(ORG_B)) as cur:
        assert cur.execute("SELECT count(*) FROM notify.audit_log").fetchone() == (0,)
    with as_role("notify_admin", admin) as cur:
        assert cur.execute("SELECT count(*) FROM notify.audit_log").fetchone() == (1,)
    with as_role("notify_admin", DBA) as cur:
        assert cur.execute("SELECT count(*) FROM notify.audit_log").fetchone() == (3,)


@pytest.mark.parametrize("role", ["notify_admin", "notify_worker", "notify_service", "notify_authenticated", None])
def test_the_audit_log_is_append_only(db: psycopg.Connection[Any], as_role: Any, role: str | None) -> None:
    db.execute("SELECT notify_private.audit('test.entry')")
    for statement in (
        "UPDATE notify.audit_log SET action = 'x'",
        "DELETE FROM notify.audit_log",
        "TRUNCATE notify.audit_log",
        "INSERT INTO notify.audit_log (actor, action) VALUES ('me', 'x')",
    ):
        if role is None:  # the owner, a superuser: the trigger refuses (INSERT is allowed to the owner only)
            if statement.startswith("INSERT"):
                continue
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute(statement)
            continue
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(role, DBA) as cur:
            cur.execute(statement)
    assert db.execute("SELECT action FROM notify.audit_log").fetchall() == [("test.entry",)]


def test_erasure_over_rest_and_refusals_in_the_audit_log(db: psycopg.Connection[Any], own_server: Any) -> None:
    user = uuid.uuid4()
    db.execute("SELECT notify.upsert_recipient_v2(%s, 'gone@example.com')", (user,))
    db.execute("SELECT notify.send(%s, 'task', 'Hello')", (user,))
    server = own_server()
    url = f"{server.url}/api/v1/admin/users/{user}"
    as_user = {"Authorization": f"Bearer {make_token(user)}"}
    assert httpx.delete(url, headers=as_user).status_code == 403
    assert httpx.delete(url).status_code == 401
    dba = {"Authorization": f"Bearer {make_token('dba', role='admin')}"}
    erased = httpx.delete(url, headers=dba)
    assert erased.status_code == 200, erased.text
    assert erased.json()["removed"]["notifications"] == 1 and erased.json()["removed"]["recipients"] == 1
    assert httpx.delete(url, headers=dba).status_code == 404
    audited = db.execute(
        "SELECT action, detail ->> 'status', detail::text LIKE %s FROM notify.audit_log "
        "WHERE action LIKE 'rest.%%' ORDER BY id",
        (f"%{user}%",),
    ).fetchall()
    assert audited[:2] == [("rest.forbidden", "403", False), ("rest.unauthorized", "401", False)], (
        "refusals are audited, the user's id masked"
    )


async def test_the_nightly_job_applies_retention_to_the_end(db: psycopg.Connection[Any]) -> None:
    # The job runs on the real clock: these are years old (NOW is 2030, minus ~5 years).
    old = seed(db, 3, age_days=5 * 365)
    pool = await create_pool(database_url(db, login=True), min_size=1, max_size=2)
    try:
        removed = await apply_retention(pool)
    finally:
        await pool.close()
    assert removed["too_old"] == 3 and removed["by_type"] == {"task": 3}
    assert not old & remaining(db)
