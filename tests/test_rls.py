"""Row-level security: every table x command x persona, run as a NOINHERIT login role.

Each cell is what the persona may do to user A's row of that table: for SELECT and UPDATE and
DELETE the number of rows affected, "denied" when PostgreSQL refuses the command, and for
INSERT "ok" or "denied".
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

USER_A = "aaaaaaaa-0000-4000-8000-000000000001"
USER_B = "bbbbbbbb-0000-4000-8000-000000000002"
ORG_A = "0a0a0a0a-0000-4000-8000-00000000000a"
ORG_B = "0b0b0b0b-0000-4000-8000-00000000000b"
NOTIFICATION_A = "aaaaaaaa-1111-4000-8000-000000000001"
NEW_USER = "cccccccc-0000-4000-8000-000000000003"

PERSONAS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "owner": ("notify_authenticated", {"sub": USER_A, "role": "authenticated"}),
    "other user": ("notify_authenticated", {"sub": USER_B, "role": "authenticated"}),
    "no claims": ("notify_authenticated", None),
    "service": ("notify_service", {"sub": "billing", "role": "service"}),
    "org admin": ("notify_admin", {"sub": USER_B, "role": "admin", "org_id": ORG_A}),
    "other org admin": ("notify_admin", {"sub": USER_B, "role": "admin", "org_id": ORG_B}),
    "DBA": ("notify_admin", {"sub": "dba", "role": "admin"}),
    "worker": ("notify_worker", {"sub": "notifyd", "role": "worker"}),
}

# table: (key of A's row, UPDATE set clause, INSERT statement for A)
TABLES: dict[str, tuple[str, str, str]] = {
    "recipients": (
        f"user_id = '{USER_A}'",
        "locale = 'de'",
        f"INSERT INTO notify.recipients (user_id, org_id) VALUES ('{NEW_USER}', '{ORG_A}')",
    ),
    "notifications": (
        f"id = '{NOTIFICATION_A}'",
        "read_at = now()",
        f"INSERT INTO notify.notifications (user_id, type, title) VALUES ('{USER_A}', 'user', 'x')",
    ),
    "notification_deliveries": (
        f"user_id = '{USER_A}'",
        "status = 'sent'",
        "INSERT INTO notify.notification_deliveries (notification_id, user_id, channel) "
        f"VALUES ('{NOTIFICATION_A}', '{USER_A}', 'email')",
    ),
    "push_subscriptions": (
        f"user_id = '{USER_A}'",
        "is_active = false",
        f"INSERT INTO notify.push_subscriptions (user_id, kind, fcm_token) VALUES ('{USER_A}', 'fcm', 't2')",
    ),
    "notification_preferences": (
        f"user_id = '{USER_A}'",
        "push_enabled = false",
        f"INSERT INTO notify.notification_preferences (user_id, notification_type) VALUES ('{USER_A}', 'billing')",
    ),
    "org_notification_preferences": (
        f"org_id = '{ORG_A}'",
        "push_enabled = false",
        f"INSERT INTO notify.org_notification_preferences (org_id, notification_type) VALUES ('{ORG_A}', 'billing')",
    ),
    "email_digests": (
        f"user_id = '{USER_A}'",
        "status = 'sent'",
        "INSERT INTO notify.email_digests (user_id, frequency, period_start, scheduled_for) "
        f"VALUES ('{USER_A}', 'weekly', now(), now())",
    ),
    "notification_analytics": (
        f"user_id = '{USER_A}'",
        "metadata = '{}'",
        "INSERT INTO notify.notification_analytics (notification_type, channel, event, user_id, org_id) "
        f"VALUES ('user', 'in_app', 'sent', '{USER_A}', '{ORG_A}')",
    ),
    # A's own endpoint (org_id NULL), and an org channel of A's org (org_id set): org admins see the latter.
    "webhook_endpoints": (
        f"user_id = '{USER_A}'",
        "description = 'x'",
        "INSERT INTO notify.webhook_endpoints (user_id, url, secret_encrypted) "
        f"VALUES ('{USER_A}', 'https://e.com', 'x')",
    ),
    "chat_connections": (
        f"user_id = '{USER_A}'",
        "label = 'x'",
        f"INSERT INTO notify.chat_connections (user_id, platform, url_encrypted) VALUES ('{USER_A}', 'slack', 'x')",
    ),
}

D = "denied"
# persona order: owner, other user, no claims, service, org admin, other org admin, DBA, worker
# each cell: SELECT rows / UPDATE rows / DELETE rows / INSERT
EXPECTED: dict[str, list[str]] = {
    "recipients": ["1/1/D/D", "0/0/D/D", "0/0/D/D", "1/1/D/ok", "1/1/1/ok", "0/0/0/D", "1/1/1/ok", "1/D/D/D"],
    "notifications": ["1/1/D/D", "0/0/D/D", "0/0/D/D", "1/D/D/ok", "1/1/1/ok", "0/0/0/D", "1/1/1/ok", "1/1/D/D"],
    "notification_deliveries": [
        "1/D/D/D",
        "0/D/D/D",
        "0/D/D/D",
        "1/D/D/D",
        "1/D/D/D",
        "0/D/D/D",
        "1/D/D/D",
        "1/1/D/ok",
    ],
    "push_subscriptions": ["1/D/1/D", "0/D/0/D", "0/D/0/D", "D/D/D/D", "1/D/D/D", "0/D/D/D", "1/D/D/D", "1/1/1/ok"],
    "notification_preferences": [
        "1/1/1/ok",
        "0/0/0/D",
        "0/0/0/D",
        "D/D/D/D",
        "1/1/1/ok",
        "0/0/0/D",
        "1/1/1/ok",
        "1/D/D/D",
    ],
    "org_notification_preferences": [
        "1/D/D/D",
        "0/D/D/D",
        "0/D/D/D",
        "D/D/D/D",
        "1/1/1/ok",
        "0/0/0/D",
        "1/1/1/ok",
        "1/D/D/D",
    ],
    "email_digests": ["1/D/D/D", "0/D/D/D", "0/D/D/D", "D/D/D/D", "1/D/D/D", "0/D/D/D", "1/D/D/D", "1/1/D/ok"],
    "notification_analytics": ["D/D/D/D", "D/D/D/D", "D/D/D/D", "D/D/D/D", "1/D/D/D", "0/D/D/D", "1/D/D/D", "1/D/D/ok"],
    # Changed only through the definer functions (notify.add_webhook_endpoint_v1 and the rest).
    "webhook_endpoints": ["1/D/D/D", "0/D/D/D", "0/D/D/D", "D/D/D/D", "0/D/D/D", "0/D/D/D", "0/D/D/D", "1/1/1/ok"],
    "chat_connections": ["1/D/D/D", "0/D/D/D", "0/D/D/D", "D/D/D/D", "1/D/D/D", "0/D/D/D", "1/D/D/D", "1/1/1/ok"],
}


@pytest.fixture
def seeded(db: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    db.execute(f"""
        SELECT notify.upsert_recipient_v2('{USER_A}', 'a@example.com', org_id => '{ORG_A}');
        SELECT notify.upsert_recipient_v2('{USER_B}', 'b@example.com', org_id => '{ORG_B}');
        INSERT INTO notify.notifications (id, user_id, type, title)
            VALUES ('{NOTIFICATION_A}', '{USER_A}', 'task', 'for A'),
                   (gen_random_uuid(), '{USER_B}', 'task', 'for B');
        -- One delivery of A's, in place of the ones the planner made.
        DELETE FROM notify.notification_deliveries;
        INSERT INTO notify.notification_deliveries (notification_id, user_id, channel)
            VALUES ('{NOTIFICATION_A}', '{USER_A}', 'in_app');
        INSERT INTO notify.push_subscriptions (user_id, kind, fcm_token) VALUES ('{USER_A}', 'fcm', 't1');
        INSERT INTO notify.notification_preferences (user_id, notification_type) VALUES ('{USER_A}', 'task');
        INSERT INTO notify.org_notification_preferences (org_id, notification_type) VALUES ('{ORG_A}', 'task');
        INSERT INTO notify.email_digests (user_id, frequency, period_start, scheduled_for)
            VALUES ('{USER_A}', 'daily', now(), now());
        INSERT INTO notify.webhook_endpoints (user_id, url, secret_encrypted) VALUES ('{USER_A}', 'https://a.com', 'x');
        INSERT INTO notify.chat_connections (user_id, org_id, platform, url_encrypted)
            VALUES ('{USER_A}', '{ORG_A}', 'slack', 'x');
        INSERT INTO notify.notification_analytics (notification_id, notification_type, channel, event, user_id, org_id)
            VALUES ('{NOTIFICATION_A}', 'task', 'in_app', 'sent', '{USER_A}', '{ORG_A}');
    """)
    return db


def attempt(cur: psycopg.Cursor[Any], sql: str) -> str:
    cur.execute("SAVEPOINT attempt")
    try:
        cur.execute(sql)
    except psycopg.errors.InsufficientPrivilege:
        cur.execute("ROLLBACK TO SAVEPOINT attempt")
        return D
    if sql.startswith("SELECT"):
        row = cur.fetchone()
        assert row is not None
        return str(row[0])
    return "ok" if sql.startswith("INSERT") else str(cur.rowcount)


def observed_cell(as_role: Any, table: str, persona: str) -> str:
    key, set_clause, insert = TABLES[table]
    role, claims = PERSONAS[persona]
    outcomes = []
    for sql in (
        f"SELECT count(*) FROM notify.{table} WHERE {key}",
        f"UPDATE notify.{table} SET {set_clause} WHERE {key}",
        f"DELETE FROM notify.{table} WHERE {key}",
        insert,
    ):
        with as_role(role, claims) as cur:
            outcome = attempt(cur, sql)
        outcomes.append("D" if outcome == D else outcome)
    return "/".join(outcomes)


@pytest.mark.parametrize("table", EXPECTED)
def test_rls_matrix(seeded: psycopg.Connection[Any], as_role: Any, table: str) -> None:
    observed = {persona: observed_cell(as_role, table, persona) for persona in PERSONAS}
    assert observed == dict(zip(PERSONAS, EXPECTED[table], strict=True))


def test_the_test_login_is_neither_superuser_nor_owner(app: psycopg.Connection[Any]) -> None:
    row = app.execute("""
        SELECT r.rolsuper, r.rolbypassrls, r.rolinherit,
               EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = 'notify'::regnamespace
                       AND pg_has_role(current_user, c.relowner, 'USAGE'))
        FROM pg_roles r WHERE r.rolname = current_user""").fetchone()
    assert row == (False, False, False, False)


def test_without_a_role_the_login_sees_nothing(seeded: psycopg.Connection[Any], app: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("SELECT count(*) FROM notify.notifications")


def test_a_user_cannot_send_notifications(seeded: psycopg.Connection[Any], as_role: Any) -> None:
    with as_role("notify_authenticated", {"sub": USER_A}) as cur:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute(f"SELECT notify.send('{USER_B}', 'user', 'spam')")


def test_a_user_cannot_move_a_notification_to_someone_else(seeded: psycopg.Connection[Any], as_role: Any) -> None:
    with as_role("notify_authenticated", {"sub": USER_A}) as cur:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute(f"UPDATE notify.notifications SET user_id = '{USER_B}' WHERE id = '{NOTIFICATION_A}'")


def test_a_user_cannot_backdate_a_read(seeded: psycopg.Connection[Any], as_role: Any) -> None:
    with as_role("notify_authenticated", {"sub": USER_A}) as cur:
        cur.execute(f"""UPDATE notify.notifications SET read_at = '2000-01-01'
                        WHERE id = '{NOTIFICATION_A}' RETURNING read_at > now() - interval '1 minute'""")
        assert cur.fetchone() == (True,)


def test_org_admin_sees_only_their_orgs_unread_counts(seeded: psycopg.Connection[Any], as_role: Any) -> None:
    with as_role("notify_admin", {"sub": "x", "org_id": ORG_A}) as cur:
        cur.execute("SELECT array_agg(DISTINCT user_id::text) FROM notify.notifications")
        assert cur.fetchone() == ([USER_A],)
    with as_role("notify_admin", {"sub": "dba"}) as cur:
        cur.execute("SELECT count(DISTINCT user_id) FROM notify.notifications")
        assert cur.fetchone() == (2,)
