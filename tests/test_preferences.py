"""Preferences and org policy: the SQL of sql/functions/070_preferences.sql as users, org admins and DBAs,
then its REST routes against the session's notifyd, and what the planner makes of a change.

SQL tests run each scenario in one rolled-back transaction that switches between the real roles
(SET LOCAL ROLE + request.jwt.claims), as notifyd does per request.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import user_conn
from tests.server import make_token
from tests.test_rest import SERVICE, error, ok, user_headers

USER, OTHER_USER = uuid.UUID(int=0x9F1), uuid.UUID(int=0x9F2)
ORG, OTHER_ORG = uuid.UUID(int=0x0A0), uuid.UUID(int=0x0B0)
TYPES = ["agent", "billing", "security", "system", "task", "user", "workflow"]
SEED_ITEM_KEYS = {
    "notification_type", "push_enabled", "email_enabled", "in_app_enabled", "digest_frequency", "digest_time",
    "digest_day", "quiet_hours_start", "quiet_hours_end", "quiet_hours_days",
}  # fmt: skip
GLOBAL_KEYS = {"all_push_enabled", "all_email_enabled", "default_digest_frequency", "default_digest_time"}

DBA: dict[str, Any] = {"sub": "dba"}


def user(who: uuid.UUID = USER) -> dict[str, Any]:
    return {"sub": str(who)}


def admin_of(org: uuid.UUID) -> dict[str, Any]:
    return {"sub": "ops", "org_id": str(org)}


def become(cur: psycopg.Cursor[Any], role: str, claims: dict[str, Any]) -> None:
    """Acts as another role from here to the end of the transaction."""
    cur.execute(f"SET LOCAL ROLE {role}")
    cur.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))


def value(cur: psycopg.Cursor[Any], sql: str, *args: Any) -> Any:
    row = cur.execute(sql, args).fetchone()
    assert row is not None
    return row[0]


def refused(cur: psycopg.Cursor[Any], sql: str, *args: Any) -> tuple[str | None, str]:
    """(SQLSTATE, message) of the error a statement raises; a savepoint keeps the transaction usable."""
    with pytest.raises(psycopg.Error) as caught, cur.connection.transaction():
        cur.execute(sql, args)
    return caught.value.sqlstate, caught.value.diag.message_primary or ""


def item(cur: psycopg.Cursor[Any], type_name: str) -> dict[str, Any]:
    items = value(cur, "SELECT notify.preferences() -> 'items'")
    found: dict[str, Any] = next(i for i in items if i["notification_type"] == type_name)
    return found


def set_preference(cur: psycopg.Cursor[Any], type_name: str, changes: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = value(cur, "SELECT notify.set_preference(%s, %s)", type_name, json.dumps(changes))
    return found


def set_org(cur: psycopg.Cursor[Any], org: uuid.UUID, type_name: str | None, changes: dict[str, Any]) -> Any:
    return value(cur, "SELECT notify.set_org_preference(%s, %s, %s)", org, type_name, json.dumps(changes))


def join_org(cur: psycopg.Cursor[Any], who: uuid.UUID, org: uuid.UUID | None, email: str | None = None) -> None:
    become(cur, "notify_service", {"sub": "hr", "role": "service"})
    cur.execute("SELECT notify.upsert_recipient_v2(%s, %s, org_id => %s)", (who, email, org))


def send(cur: psycopg.Cursor[Any], who: uuid.UUID, type_name: str, priority: str = "high") -> list[tuple[Any, ...]]:
    """Sends as a service; the planned (channel, status, reason) as a DBA reads them."""
    become(cur, "notify_service", {"sub": "billing", "role": "service"})
    sent = value(cur, "SELECT notify.send(%s, %s, 'Hello', priority => %s)", who, type_name, priority)
    become(cur, "notify_admin", DBA)
    return cur.execute(
        "SELECT channel, status, reason FROM notify.delivery_decisions WHERE notification_id = %s "
        "ORDER BY array_position(ARRAY['in_app', 'push', 'email'], channel)",
        (sent,),
    ).fetchall()


# --- the user's side, in SQL ---------------------------------------------------------------------------


def test_preferences_list_every_type_as_in_force(as_role: Any) -> None:
    with as_role("notify_authenticated", user()) as cur:
        # Nothing was ever sent to this user: no recipient row, yet the defaults are there.
        prefs = value(cur, "SELECT notify.preferences()")
        assert [i["notification_type"] for i in prefs["items"]] == TYPES
        task = next(i for i in prefs["items"] if i["notification_type"] == "task")
        assert task == {
            "notification_type": "task", "push_enabled": True, "email_enabled": True, "in_app_enabled": True,
            "sms_enabled": True, "webhook_enabled": True, "chat_enabled": True, "digest_frequency": "daily",
            "digest_time": "09:00:00", "digest_day": 1,
            "quiet_hours_start": None, "quiet_hours_end": None, "quiet_hours_days": [1, 2, 3, 4, 5],
            "quiet_hours_windows": [], "locked": [], "customized": False, "updated_at": None,
        }  # fmt: skip
        assert prefs["global"] == {
            "all_push_enabled": True, "all_email_enabled": True, "all_sms_enabled": True,
            "all_webhook_enabled": True, "all_chat_enabled": True, "default_digest_frequency": "daily",
            "default_digest_time": "09:00:00", "default_digest_day": 1,
            "quiet_hours_start": None, "quiet_hours_end": None, "quiet_hours_days": [1, 2, 3, 4, 5],
            "quiet_hours_windows": [], "locked": [], "customized": False, "updated_at": None, "timezone": "UTC",
        }  # fmt: skip
        # An org default shows as in force, without a lock.
        join_org(cur, USER, ORG)
        become(cur, "notify_admin", admin_of(ORG))
        set_org(cur, ORG, "agent", {"push_enabled": False})
        become(cur, "notify_authenticated", user())
        assert {k: item(cur, "agent")[k] for k in ("push_enabled", "locked", "customized")} == {
            "push_enabled": False, "locked": [], "customized": False,
        }  # fmt: skip


def test_a_change_keeps_everything_else_in_force(as_role: Any) -> None:
    with as_role("notify_authenticated", user()) as cur:
        join_org(cur, USER, ORG)
        become(cur, "notify_admin", admin_of(ORG))
        set_org(cur, ORG, None, {"push_enabled": False})
        become(cur, "notify_authenticated", user())
        glob = value(
            cur,
            "SELECT notify.set_global_preferences(%s)",
            json.dumps({
                "default_digest_frequency": "weekly", "default_digest_time": "07:00", "default_digest_day": 5,
                "quiet_hours_start": "22:00", "quiet_hours_end": "07:00:00",
            }),
        )  # fmt: skip
        assert glob["default_digest_frequency"] == "weekly" and glob["default_digest_time"] == "07:00:00"
        assert (glob["all_push_enabled"], glob["customized"]) == (False, True) and glob["updated_at"] is not None

        changed = set_preference(cur, "agent", {"email_enabled": False})
        assert changed == item(cur, "agent")
        assert {k: changed[k] for k in changed if k != "updated_at"} == {
            "notification_type": "agent", "push_enabled": False, "email_enabled": False, "in_app_enabled": True,
            "sms_enabled": True, "webhook_enabled": True, "chat_enabled": True, "digest_frequency": "weekly",
            "digest_time": "07:00:00", "digest_day": 5,
            "quiet_hours_start": "22:00:00", "quiet_hours_end": "07:00:00", "quiet_hours_days": [1, 2, 3, 4, 5],
            "quiet_hours_windows": [], "locked": [], "customized": True,
        }  # fmt: skip
        # The next change keeps the first; in-app true is accepted (it is always on); other types did not move.
        again = set_preference(cur, "agent", {"digest_frequency": "instant", "in_app_enabled": True})
        assert (again["email_enabled"], again["digest_frequency"]) == (False, "instant")
        assert item(cur, "task")["customized"] is False and item(cur, "task")["email_enabled"] is True
        weekends = {"quiet_hours_windows": [{"start": "23:00", "end": "10:00", "days": [6, 7]}]}
        assert set_preference(cur, "agent", weekends)["quiet_hours_windows"] == weekends["quiet_hours_windows"]
        # An empty change writes nothing.
        rows = "SELECT count(*) FROM notify.notification_preferences"
        assert value(cur, rows) == 2
        assert set_preference(cur, "task", {})["customized"] is False and value(cur, rows) == 2


def test_values_the_user_never_set_stay_the_orgs(as_role: Any) -> None:
    with as_role("notify_authenticated", user()) as cur:
        join_org(cur, USER, ORG)
        become(cur, "notify_admin", admin_of(ORG))
        set_org(cur, ORG, "agent", {"push_enabled": False})
        become(cur, "notify_authenticated", user())
        set_preference(cur, "billing", {"email_enabled": False})
        cur.execute('SELECT notify.set_global_preferences(\'{"default_digest_time": "07:00"}\')')
        not_touched = item(cur, "agent")["push_enabled"]
        become(cur, "notify_admin", admin_of(ORG))
        set_org(cur, ORG, "billing", {"push_enabled": False})
        become(cur, "notify_authenticated", user())
        assert (not_touched, item(cur, "billing")["push_enabled"]) == (False, False)


USER_REFUSALS = [
    ("set_preference", "nope", {}, "22023", 'unknown notification type "nope"'),
    ("set_preference", None, {}, "22004", "type cannot be null"),
    (
        "set_preference",
        "task",
        {"bogus": True},
        "22023",
        'unknown preference "bogus": the keys are chat_enabled, digest_day',
    ),
    ("set_preference", "task", {"digest_time": "25:00"}, "22007", 'digest_time must be a time of day "HH:MM"'),
    ("set_preference", "task", {"digest_time": "9am"}, "22007", 'got "9am"'),
    ("set_preference", "task", {"quiet_hours_start": 2200}, "22007", "quiet_hours_start must be a time of day"),
    ("set_preference", "task", {"digest_frequency": "hourly"}, "22023", "must be instant, daily, weekly or never"),
    ("set_preference", "task", {"digest_day": 8}, "22003", "digest_day must be an ISO weekday from 1 (Monday)"),
    ("set_preference", "task", {"digest_day": "1"}, "22003", 'got "1"'),
    ("set_preference", "task", {"in_app_enabled": False}, "23514", "in-app notifications are always on"),
    ("set_preference", "task", {"push_enabled": "no"}, "22023", 'push_enabled must be true or false, got "no"'),
    ("set_preference", "task", {"push_enabled": None}, "22004", "push_enabled cannot be null"),
    ("set_preference", "task", [], "22023", "changes must be a JSON object"),
    ("set_preference", "task", {"quiet_hours_start": "22:00"}, "22023", "set together: both or neither"),
    ("set_preference", "task", {"quiet_hours_days": [0, 8]}, "22023", "quiet_hours_days must be a list of ISO"),
    ("set_preference", "task", {"quiet_hours_windows": [{"start": "23:00"}]}, "22023", "quiet_hours_windows[0]"),
    ("set_global_preferences", None, {"push_enabled": False}, "22023", 'unknown preference "push_enabled"'),
    ("set_global_preferences", None, {"default_digest_frequency": "monthly"}, "22023", 'got "monthly"'),
    ("set_global_preferences", None, {"in_app_enabled": True}, "22023", 'unknown preference "in_app_enabled"'),
    ("set_preference", "task", {"webhook_enabled": None}, "22004", "webhook_enabled cannot be null"),
    ("set_preference", "task", {"chat_enabled": "yes"}, "22023", 'chat_enabled must be true or false, got "yes"'),
    ("set_preference", "task", {"all_chat_enabled": False}, "22023", 'unknown preference "all_chat_enabled"'),
    ("set_global_preferences", None, {"webhook_enabled": False}, "22023", 'unknown preference "webhook_enabled"'),
    ("set_global_preferences", None, {"all_webhook_enabled": 0}, "22023", "all_webhook_enabled must be true or"),
]


def test_bad_input_is_refused_with_a_clear_error_and_writes_nothing(as_role: Any) -> None:
    with as_role("notify_authenticated", user()) as cur:
        for function, type_name, changes, sqlstate, fragment in USER_REFUSALS:
            args = (type_name, json.dumps(changes)) if function == "set_preference" else (json.dumps(changes),)
            placeholders = ", ".join(["%s"] * len(args))
            code, message = refused(cur, f"SELECT notify.{function}({placeholders})", *args)
            assert (code, fragment in message) == (sqlstate, True), (changes, message)
        assert value(cur, "SELECT count(*) FROM notify.notification_preferences") == 0


def test_an_org_lock_beats_the_user_and_says_so(as_role: Any) -> None:
    with as_role("notify_authenticated", user()) as cur:
        join_org(cur, USER, ORG)
        become(cur, "notify_authenticated", user())
        cur.execute("SELECT notify.set_global_preferences('{\"all_email_enabled\": false}')")
        become(cur, "notify_admin", admin_of(ORG))
        locked = set_org(cur, ORG, "security", {"email_enabled": True, "email_locked": True})
        assert locked.pop("updated_at") is not None
        assert locked == {
            "notification_type": "security", "push_enabled": None, "email_enabled": True, "sms_enabled": None,
            "webhook_enabled": None, "chat_enabled": None, "digest_frequency": None, "push_locked": False,
            "email_locked": True, "sms_locked": False, "webhook_locked": False, "chat_locked": False,
        }  # fmt: skip
        become(cur, "notify_authenticated", user())
        security = item(cur, "security")
        assert (security["email_enabled"], security["locked"]) == (True, ["email"])
        assert item(cur, "task")["email_enabled"] is False

        assert refused(cur, "SELECT notify.set_preference('security', '{\"email_enabled\": false}')") == (
            "23514",
            "e-mail is locked on by your organization's admin for security notifications",
        )
        # The lock's own value changes nothing; the rest of the change holds.
        changed = set_preference(cur, "security", {"email_enabled": True, "push_enabled": False})
        assert (changed["email_enabled"], changed["push_enabled"], changed["customized"]) == (True, False, True)
        own = "SELECT email_enabled FROM notify.notification_preferences WHERE notification_type = 'security'"
        assert value(cur, own) is None, "not set on the row: once the lock goes, their global e-mail off decides"

        # Lifted, the user's own choice is back. A lock on the org's global row holds for every type.
        become(cur, "notify_admin", admin_of(ORG))
        set_org(cur, ORG, "security", {"email_locked": False})
        set_org(cur, ORG, None, {"push_enabled": False, "push_locked": True})
        become(cur, "notify_authenticated", user())
        assert item(cur, "security")["email_enabled"] is False
        assert value(cur, "SELECT notify.preferences() -> 'global' -> 'locked'") == ["push"]
        assert item(cur, "task")["locked"] == ["push"] and item(cur, "task")["push_enabled"] is False
        assert refused(cur, "SELECT notify.set_global_preferences('{\"all_push_enabled\": true}')") == (
            "23514",
            "push is locked off by your organization's admin for every notification type",
        )
        assert refused(cur, "SELECT notify.set_preference('task', '{\"push_enabled\": true}')") == (
            "23514",
            "push is locked off by your organization's admin for task notifications",
        )


def test_the_planner_follows_the_changes(as_role: Any) -> None:
    with as_role("notify_authenticated", user()) as cur:
        join_org(cur, USER, ORG, "ada@example.com")
        become(cur, "notify_authenticated", user())
        set_preference(cur, "task", {"push_enabled": False, "email_enabled": True, "digest_frequency": "instant"})
        cur.execute("SELECT notify.set_global_preferences('{\"all_email_enabled\": false}')")
        planned = send(cur, USER, "task")
        assert planned[1] == ("push", "skipped", "push is turned off for task notifications")
        assert planned[2] == ("email", "pending", None), "the task row's own e-mail on beats the global switch"
        assert send(cur, USER, "security")[-1][:2] == ("email", "skipped")
        become(cur, "notify_admin", admin_of(ORG))
        set_org(cur, ORG, "security", {"email_enabled": True, "email_locked": True})
        assert send(cur, USER, "security")[-1][:2] in {("email", "pending"), ("email", "held")}


def test_only_the_caller_is_read_and_changed(as_role: Any) -> None:
    with as_role("notify_authenticated", user()) as cur:
        set_preference(cur, "task", {"push_enabled": False})
        become(cur, "notify_authenticated", user(OTHER_USER))
        assert item(cur, "task")["push_enabled"] is True
        set_preference(cur, "task", {"email_enabled": False})
        become(cur, "notify_authenticated", user())
        assert (item(cur, "task")["push_enabled"], item(cur, "task")["email_enabled"]) == (False, True)
        become(cur, "notify_authenticated", {"role": "authenticated"})
        assert refused(cur, "SELECT notify.preferences()") == (
            "42501",
            "preferences belong to the calling user: request.jwt.claims has no user sub",
        )
        for role, claims in (("notify_service", {"sub": "billing"}), ("notify_admin", DBA), ("notify_worker", {})):
            become(cur, role, claims)
            assert refused(cur, "SELECT notify.preferences()")[0] == "42501", role
            assert refused(cur, "SELECT notify.set_preference('task', '{}')")[0] == "42501", role


def test_concurrent_first_changes_of_a_type_both_hold(db: psycopg.Connection[Any]) -> None:
    first, second = user_conn(db, str(USER)), user_conn(db, str(USER))
    first.autocommit = False
    first.execute("SELECT notify.set_preference('task', '{\"push_enabled\": false}')")
    # The second makes the row too: it waits for the first's uncommitted row, then changes it.
    waiter = threading.Thread(
        target=second.execute, args=("SELECT notify.set_preference('task', '{\"email_enabled\": false}')",)
    )
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive(), "the second waits for the first"
    first.commit()
    waiter.join(10)
    assert not waiter.is_alive()
    rows = db.execute("SELECT push_enabled, email_enabled FROM notify.notification_preferences").fetchall()
    assert rows == [(False, False)]
    first.close()
    second.close()


def targets(db: psycopg.Connection[Any], who: uuid.UUID, org: uuid.UUID) -> None:
    """The user's own webhook endpoint and their org's chat channel (never sent here: nothing encrypted)."""
    db.execute("SELECT notify.upsert_recipient_v2(%s, NULL, org_id => %s, phone => '+14155550100')", (who, org))
    db.execute("INSERT INTO notify.webhook_endpoints (user_id, url, secret_encrypted) "
               "VALUES (%s, 'https://hooks.example.com/in', 'x')", (who,))  # fmt: skip
    colleague = uuid.uuid4()
    db.execute("SELECT notify.upsert_recipient_v2(%s, NULL, org_id => %s)", (colleague, org))
    db.execute("INSERT INTO notify.chat_connections (user_id, org_id, platform, url_encrypted) "
               "VALUES (%s, %s, 'slack', 'x')", (colleague, org))  # fmt: skip


def new_channels(cur: psycopg.Cursor[Any], who: uuid.UUID, type_name: str, priority: str = "high") -> dict[str, Any]:
    """SMS, webhook and chat of one send that asks for them: channel -> (status, reason, how many)."""
    become(cur, "notify_service", {"sub": "billing", "role": "service"})
    sent = value(cur, "SELECT notify.send(%s, %s, 'Hello', priority => %s, channels => '{sms, webhook, chat}')",
                 who, type_name, priority)  # fmt: skip
    become(cur, "notify_admin", DBA)
    rows = cur.execute(
        "SELECT channel, status, reason, count(*) FROM notify.delivery_decisions WHERE notification_id = %s "
        "GROUP BY channel, status, reason",
        (sent,),
    ).fetchall()
    assert len({r[0] for r in rows}) == len(rows), rows
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


ALL_ON = {"sms": ("pending", None, 1), "webhook": ("pending", None, 1), "chat": ("pending", None, 1)}


def test_sms_webhook_and_chat_switches_steer_every_target_of_the_user(
    db: psycopg.Connection[Any], as_role: Any
) -> None:
    targets(db, USER, ORG)
    with as_role("notify_authenticated", user()) as cur:
        assert new_channels(cur, USER, "task") == ALL_ON
        become(cur, "notify_authenticated", user())
        changed = set_preference(cur, "task", {"webhook_enabled": False, "chat_enabled": False})
        assert (changed["webhook_enabled"], changed["chat_enabled"], changed["sms_enabled"]) == (False, False, True)
        glob = value(cur, "SELECT notify.set_global_preferences(%s)", json.dumps({"all_sms_enabled": False}))
        assert (glob["all_sms_enabled"], glob["all_webhook_enabled"], glob["all_chat_enabled"]) == (False, True, True)
        # The user's switch stops their own endpoint and their org's channel alike; explain says why.
        assert new_channels(cur, USER, "task") == {
            "sms": ("skipped", "SMS is turned off for task notifications", 1),
            "webhook": ("skipped", "webhook is turned off for task notifications", 1),
            "chat": ("skipped", "chat is turned off for task notifications", 1),
        }
        explained = value(cur, "SELECT notify.explain(id) FROM notify.notifications WHERE user_id = %s "
                          "ORDER BY seq DESC LIMIT 1", USER)  # fmt: skip
        assert [(d["channel"], d["status"], d["reason"]) for d in explained["decisions"]] == [
            ("webhook", "skipped", "webhook is turned off for task notifications"),
            ("chat", "skipped", "chat is turned off for task notifications"),
            ("sms", "skipped", "SMS is turned off for task notifications"),
        ]
        billing_sms = ("skipped", "SMS is turned off for billing notifications", 1)
        assert new_channels(cur, USER, "billing") == {**ALL_ON, "sms": billing_sms}
        # Critical overrides the user's own switches.
        assert new_channels(cur, USER, "task", "critical") == ALL_ON


def test_org_defaults_and_locks_for_sms_webhook_and_chat(db: psycopg.Connection[Any], as_role: Any) -> None:
    targets(db, USER, ORG)
    with as_role("notify_authenticated", user()) as cur:
        set_preference(cur, "task", {"sms_enabled": True})
        become(cur, "notify_admin", admin_of(ORG))
        # Defaults: the org's global row turns webhook off; the user's own row for task (SMS on) beats an SMS default.
        set_org(cur, ORG, None, {"webhook_enabled": False, "sms_enabled": False})
        become(cur, "notify_authenticated", user())
        assert {k: item(cur, "task")[k] for k in ("sms_enabled", "webhook_enabled", "chat_enabled", "locked")} == {
            "sms_enabled": True, "webhook_enabled": False, "chat_enabled": True, "locked": [],
        }  # fmt: skip
        assert new_channels(cur, USER, "task")["webhook"] == (
            "skipped",
            "webhook is turned off for task notifications",
            1,
        )
        # Locks: chat locked off for task (critical too), SMS and webhook locked on over the user's choice.
        become(cur, "notify_admin", admin_of(ORG))
        answer = set_org(
            cur,
            ORG,
            "task",
            {
                "chat_enabled": False,
                "chat_locked": True,
                "sms_enabled": True,
                "sms_locked": True,
                "webhook_enabled": True,
                "webhook_locked": True,
            },
        )
        assert {k: answer[k] for k in answer if k.startswith(("sms", "webhook", "chat"))} == {
            "sms_enabled": True, "sms_locked": True, "webhook_enabled": True, "webhook_locked": True,
            "chat_enabled": False, "chat_locked": True,
        }  # fmt: skip
        become(cur, "notify_authenticated", user())
        assert item(cur, "task")["locked"] == ["sms", "webhook", "chat"]
        for key, message in (
            ("sms_enabled", "SMS is locked on by your organization's admin for task notifications"),
            ("webhook_enabled", "webhook is locked on by your organization's admin for task notifications"),
        ):
            assert refused(cur, "SELECT notify.set_preference('task', %s)", json.dumps({key: False})) == (
                "23514", message,
            )  # fmt: skip
        assert refused(cur, "SELECT notify.set_preference('task', '{\"chat_enabled\": true}')") == (
            "23514",
            "chat is locked off by your organization's admin for task notifications",
        )
        locked_off = ("skipped", "chat is turned off for task notifications by the organization", 1)
        assert new_channels(cur, USER, "task") == {**ALL_ON, "chat": locked_off}
        assert new_channels(cur, USER, "task", "critical") == {**ALL_ON, "chat": locked_off}
        # Another type: the org's global defaults again (webhook off, chat on).
        assert new_channels(cur, USER, "billing")["chat"] == ALL_ON["chat"]


# --- the org admin's side, in SQL ----------------------------------------------------------------------


def test_org_admins_manage_their_own_org_only(as_role: Any) -> None:
    with as_role("notify_admin", admin_of(ORG)) as cur:
        set_org(cur, ORG, "task", {"email_enabled": False, "digest_frequency": "weekly"})
        mine = value(cur, "SELECT notify.org_preferences(%s)", ORG)
        assert mine["org_id"] == str(ORG) and [i["notification_type"] for i in mine["items"]] == TYPES
        assert next(i for i in mine["items"] if i["notification_type"] == "task")["digest_frequency"] == "weekly"
        assert mine["global"] == {
            "push_enabled": None, "email_enabled": None, "sms_enabled": None, "webhook_enabled": None,
            "chat_enabled": None, "digest_frequency": None, "push_locked": False, "email_locked": False,
            "sms_locked": False, "webhook_locked": False, "chat_locked": False, "user_webhook_endpoints": None,
            "updated_at": None,
        }  # fmt: skip
        for sql, args in (
            ("SELECT notify.org_preferences(%s)", (OTHER_ORG,)),
            ("SELECT notify.set_org_preference(%s, 'task', '{\"push_enabled\": false}')", (OTHER_ORG,)),
            ("SELECT notify.org_delivery_stats(%s)", (OTHER_ORG,)),
        ):
            assert refused(cur, sql, *args) == (
                "P0002",
                f"no org {OTHER_ORG} in your scope: an org admin manages their own org only",
            )
        become(cur, "notify_admin", DBA)
        set_org(cur, OTHER_ORG, None, {"push_enabled": False})
        assert value(cur, "SELECT count(*) FROM notify.org_notification_preferences") == 2
        become(cur, "notify_admin", admin_of(ORG))
        assert value(cur, "SELECT array_agg(DISTINCT org_id) FROM notify.org_notification_preferences") == [ORG]
        become(cur, "notify_authenticated", user())
        assert refused(cur, "SELECT notify.org_preferences(%s)", ORG)[0] == "42501"


ORG_REFUSALS = [
    ("task", {"push_locked": True}, "23514", "push_locked needs push_enabled: lock the channel on (true) or off"),
    (None, {"email_locked": True, "email_enabled": None}, "23514", "email_locked needs email_enabled"),
    ("nope", {}, "22023", 'unknown notification type "nope"'),
    (
        "task",
        {"in_app_enabled": True},
        "22023",
        'unknown preference "in_app_enabled": the keys are chat_enabled, chat_locked, digest_frequency',
    ),
    ("task", {"push_locked": None}, "22004", "push_locked cannot be null"),
    ("task", {"digest_frequency": "sometimes"}, "22023", "digest_frequency must be instant, daily, weekly or never"),
    ("task", {"email_enabled": 1}, "22023", "email_enabled must be true or false, got 1"),
    ("task", {"sms_locked": True}, "23514", "sms_locked needs sms_enabled: lock the channel on (true) or off (false)"),
    (
        None,
        {"webhook_locked": True},
        "23514",
        "webhook_locked needs webhook_enabled: lock the channel on (true) or off",
    ),
    ("task", {"chat_locked": True, "chat_enabled": None}, "23514", "chat_locked needs chat_enabled: lock the channel"),
    ("task", {"webhook_enabled": "off"}, "22023", 'webhook_enabled must be true or false, got "off"'),
    ("task", {"chat_locked": None}, "22004", "chat_locked cannot be null"),
    (
        "task",
        {"user_webhook_endpoints": False},
        "22023",
        "user_webhook_endpoints is for every type: set it on the org's defaults (type null), not for task",
    ),
    (None, {"user_webhook_endpoints": "no"}, "22023", 'user_webhook_endpoints must be true or false, got "no"'),
]


def test_bad_org_input_is_refused(as_role: Any) -> None:
    with as_role("notify_admin", admin_of(ORG)) as cur:
        for type_name, changes, sqlstate, fragment in ORG_REFUSALS:
            code, message = refused(
                cur, "SELECT notify.set_org_preference(%s, %s, %s)", ORG, type_name, json.dumps(changes)
            )
            assert (code, fragment in message) == (sqlstate, True), (changes, message)
        assert refused(cur, "SELECT notify.set_org_preference(NULL, 'task', '{}')") == (
            "22004",
            "org_id cannot be null",
        )
        code, message = refused(cur, "SELECT notify.org_delivery_stats(%s, '2026-02-01Z', '2026-01-01Z')", ORG)
        assert (code, "must not be after until" in message) == ("22023", True)
        assert value(cur, "SELECT count(*) FROM notify.org_notification_preferences") == 0


ORG_FORBIDS = "users may not register webhook endpoints here (your organization does not allow it): ask an org admin"
SETTING_FORBIDS = "users may not register webhook endpoints here (webhook.user_endpoints is off): ask an org admin"
ADD_HOOK = "SELECT id FROM notify.add_webhook_endpoint_v1('https://hooks.example.com/in', 'x')"


def test_an_org_says_whether_its_users_may_register_webhook_endpoints(
    db: psycopg.Connection[Any], as_role: Any
) -> None:
    member_a, member_b, loner = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for who, org in ((member_a, ORG), (member_b, OTHER_ORG), (loner, None)):
        db.execute("SELECT notify.upsert_recipient_v2(%s, NULL, org_id => %s)", (who, org))
    db.execute("UPDATE notify.settings SET value = 'false' WHERE key = 'webhook.user_endpoints'")
    with as_role("notify_admin", admin_of(ORG)) as cur:
        assert set_org(cur, ORG, None, {"user_webhook_endpoints": True})["user_webhook_endpoints"] is True
        become(cur, "notify_admin", admin_of(OTHER_ORG))
        assert set_org(cur, OTHER_ORG, None, {"user_webhook_endpoints": False})["user_webhook_endpoints"] is False
        assert "user_webhook_endpoints" not in value(cur, "SELECT notify.org_preferences(%s)", OTHER_ORG)["items"][0]
        become(cur, "notify_authenticated", user(member_a))
        assert value(cur, ADD_HOOK) is not None, "org A allows it, whatever the setting"
        assert value(cur, "SELECT count(*) FROM notify.webhook_endpoints") == 1
        become(cur, "notify_authenticated", user(member_b))
        assert refused(cur, ADD_HOOK) == ("42501", ORG_FORBIDS)
        become(cur, "notify_authenticated", user(loner))
        assert refused(cur, ADD_HOOK) == ("42501", SETTING_FORBIDS), "no org: the setting decides"
        # The org says nothing again: the setting decides for its users too.
        become(cur, "notify_admin", admin_of(ORG))
        assert set_org(cur, ORG, None, {"user_webhook_endpoints": None})["user_webhook_endpoints"] is None
        become(cur, "notify_authenticated", user(member_a))
        assert refused(cur, ADD_HOOK) == ("42501", SETTING_FORBIDS)


def test_org_delivery_stats_count_the_org_only(db: psycopg.Connection[Any], as_role: Any) -> None:
    db.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    with as_role("notify_admin", DBA) as cur:
        join_org(cur, USER, ORG, "ada@example.com")
        join_org(cur, OTHER_USER, OTHER_ORG, "bob@example.com")
        cur.execute("SET LOCAL notify.clock = '2026-03-01 12:00+00'")
        send(cur, USER, "task", "low")
        cur.execute("SET LOCAL notify.clock = '2026-03-02 12:00+00'")
        send(cur, USER, "security", "critical")
        send(cur, OTHER_USER, "task")
        become(cur, "notify_worker", {})
        cur.execute(
            "INSERT INTO notify.notification_analytics (notification_type, channel, event, user_id, org_id) "
            "VALUES ('security', 'email', 'opened', %s, %s)",
            (USER, ORG),
        )
        become(cur, "notify_admin", admin_of(ORG))
        stats = value(cur, "SELECT notify.org_delivery_stats(%s)", ORG)
        assert stats == {
            "org_id": str(ORG), "since": None, "until": None, "users": 1, "notifications": 2,
            "deliveries": {"in_app": {"sent": 2}, "push": {"skipped": 1}, "email": {"held": 1, "pending": 1},
                           "webhook": {}, "chat": {}, "sms": {}},
            "events": {"in_app": {}, "push": {}, "email": {"opened": 1}, "webhook": {}, "chat": {}, "sms": {}},
        }  # fmt: skip
        window = value(cur, "SELECT notify.org_delivery_stats(%s, '2026-03-02 00:00+00', '2026-03-03 00:00+00')", ORG)
        assert (window["notifications"], window["deliveries"]["email"]) == (1, {"pending": 1})
        assert window["since"] is not None and window["until"] is not None
        # RLS, not only the function's check: the other org's rows are not there for this admin.
        other = "SELECT count(*) FROM notify.delivery_decisions WHERE user_id = %s"
        assert value(cur, other, OTHER_USER) == 0
        become(cur, "notify_admin", DBA)
        assert value(cur, other, OTHER_USER) == 3
        assert value(cur, "SELECT notify.org_delivery_stats(%s)", OTHER_ORG)["notifications"] == 1


# --- REST ---------------------------------------------------------------------------------------------

PREFS = "/api/v1/notifications/preferences"
ADMIN = "/api/v1/admin/orgs"
USER_ROUTES = [("GET", PREFS), ("PUT", f"{PREFS}/global"), ("PUT", f"{PREFS}/task")]
ADMIN_ROUTES = [
    ("GET", f"{ADMIN}/{{org}}/preferences"),
    ("PUT", f"{ADMIN}/{{org}}/preferences"),
    ("PUT", f"{ADMIN}/{{org}}/preferences/task"),
    ("GET", f"{ADMIN}/{{org}}/stats"),
]


def admin_headers(org: uuid.UUID | None) -> dict[str, str]:
    """An org admin's token (a DBA's without an org)."""
    token = make_token("ops", role="admin") if org is None else make_token("ops", role="admin", org_id=str(org))
    return {"Authorization": f"Bearer {token}"}


def new_member(owner: psycopg.Connection[Any], org: uuid.UUID, email: str | None = None) -> uuid.UUID:
    member = uuid.uuid4()
    owner.execute("SELECT notify.upsert_recipient_v2(%s, %s, org_id => %s)", (member, email, org))
    return member


@pytest.mark.parametrize(("method", "route"), USER_ROUTES + ADMIN_ROUTES)
def test_every_route_needs_credentials_and_the_right_caller(client: httpx.Client, method: str, route: str) -> None:
    path = route.replace("{org}", str(uuid.uuid4()))
    assert error(client.request(method, path, json={}), 401, "UNAUTHORIZED").startswith("missing credentials")
    expired = {"Authorization": f"Bearer {make_token(uuid.uuid4(), exp_in=-60)}"}
    assert error(client.request(method, path, json={}, headers=expired), 401, "UNAUTHORIZED") == "token expired"
    if (method, route) in USER_ROUTES:
        wrong = [SERVICE, admin_headers(None)]
        expected = "this route is for end users (a token with role authenticated)"
    else:
        wrong = [SERVICE, user_headers(uuid.uuid4())]
        expected = "this route is for admins (a token with role admin; an org admin's org_id claim names their org)"
    for headers in wrong:
        assert error(client.request(method, path, json={}, headers=headers), 403, "FORBIDDEN") == expected


def test_get_has_the_seed_shape_with_global_and_locks(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    org = uuid.uuid4()
    member = new_member(owner, org)
    owner.execute(
        "INSERT INTO notify.org_notification_preferences (org_id, notification_type, email_enabled, email_locked) "
        "VALUES (%s, 'security', true, true)",
        (org,),
    )
    prefs = ok(client.get(PREFS, headers=user_headers(member)), 200)
    assert set(prefs) == {"items", "global", "topics"} and prefs["topics"] == []
    assert [i["notification_type"] for i in prefs["items"]] == TYPES
    assert all(SEED_ITEM_KEYS <= set(i) and i["in_app_enabled"] is True for i in prefs["items"])
    assert {i["notification_type"]: i["locked"] for i in prefs["items"] if i["locked"]} == {"security": ["email"]}
    assert GLOBAL_KEYS <= set(prefs["global"]) and prefs["global"]["default_digest_time"] == "09:00:00"


def test_get_lists_the_callers_topics_with_their_mute_as_put_topic_sets_it(
    client: httpx.Client, owner: psycopg.Connection[Any]
) -> None:
    org = uuid.uuid4()
    me, other = user_headers(new_member(owner, org)), user_headers(new_member(owner, org))
    assert client.put("/api/v1/topics/releases", json={"muted": True}, headers=me).status_code == 201
    assert client.put("/api/v1/topics/billing", headers=me).status_code == 201
    assert client.put("/api/v1/topics/outages", headers=other).status_code == 201
    expected = [{"topic": "billing", "muted": False}, {"topic": "releases", "muted": True}]
    assert ok(client.get(PREFS, headers=me), 200)["topics"] == expected
    # The topic route is the way to change a mute; the preferences show it at once.
    assert client.put("/api/v1/topics/releases", json={"muted": False}, headers=me).status_code == 200
    assert ok(client.get(PREFS, headers=me), 200)["topics"][1] == {"topic": "releases", "muted": False}
    assert client.delete("/api/v1/topics/billing", headers=me).status_code == 204
    assert ok(client.get(PREFS, headers=me), 200)["topics"] == [{"topic": "releases", "muted": False}]
    assert ok(client.get(PREFS, headers=other), 200)["topics"] == [{"topic": "outages", "muted": False}]


def test_put_a_type_changes_the_given_keys_and_answers_the_item(client: httpx.Client) -> None:
    headers = user_headers(uuid.uuid4())
    seed_body = {
        "push_enabled": True, "email_enabled": False, "digest_frequency": "daily", "digest_time": "09:00:00",
        "quiet_hours_start": "22:00:00", "quiet_hours_end": "08:00:00",
    }  # fmt: skip
    answer = ok(client.put(f"{PREFS}/task", json=seed_body, headers=headers), 200)
    assert {k: answer[k] for k in seed_body} == seed_body
    assert answer["notification_type"] == "task" and answer["updated_at"] is not None
    answer = ok(client.put(f"{PREFS}/task", json={"quiet_hours_days": [6, 7]}, headers=headers), 200)
    assert (answer["email_enabled"], answer["quiet_hours_days"]) == (False, [6, 7])
    listed = ok(client.get(PREFS, headers=headers), 200)["items"]
    assert next(i for i in listed if i["notification_type"] == "task") == answer
    assert next(i for i in listed if i["notification_type"] == "user")["customized"] is False


BAD_TYPE_BODIES = [
    ("nope", {"push_enabled": False}, 'unknown notification type "nope"'),
    ("NOPE", {}, "unknown notification type: type names are lowercase words such as task"),
    ("task", {"digest_time": "25:00"}, "digest_time: String should match pattern"),
    ("task", {"digest_frequency": "hourly"}, "digest_frequency: Input should be 'instant', 'daily', 'weekly' or"),
    ("task", {"colour": "red"}, "colour: Extra inputs are not permitted"),
    ("task", {"in_app_enabled": False}, "in_app_enabled cannot be false: in-app notifications are always on"),
    ("task", {"digest_day": 9}, "digest_day: Input should be less than or equal to 7"),
    ("task", {"push_enabled": "yes"}, "push_enabled: Input should be a valid boolean"),
    ("task", {"push_enabled": None}, "push_enabled cannot be null"),
    ("task", {"quiet_hours_end": "07:00"}, "quiet_hours_start and quiet_hours_end are set together"),
    ("task", {"quiet_hours_windows": [{"start": "23:00", "end": "07:00"}]}, "quiet_hours_windows.0.days: Field"),
]


@pytest.mark.parametrize(("type_name", "body", "fragment"), BAD_TYPE_BODIES)
def test_bad_preference_changes_are_422_and_change_nothing(
    client: httpx.Client, type_name: str, body: dict[str, Any], fragment: str
) -> None:
    headers = user_headers(uuid.uuid4())
    message = error(client.put(f"{PREFS}/{type_name}", json=body, headers=headers), 422, "VALIDATION_ERROR")
    assert fragment in message
    assert not any(i["customized"] for i in ok(client.get(PREFS, headers=headers), 200)["items"])


def test_put_global_takes_the_seed_body(client: httpx.Client) -> None:
    headers = user_headers(uuid.uuid4())
    seed_body = {
        "all_push_enabled": True, "all_email_enabled": False, "default_digest_frequency": "weekly",
        "default_digest_time": "08:30:00",
    }  # fmt: skip
    answer = ok(client.put(f"{PREFS}/global", json=seed_body, headers=headers), 200)
    assert {k: answer[k] for k in seed_body} == seed_body and answer["customized"] is True
    assert ok(client.get(PREFS, headers=headers), 200)["global"] == answer
    for body, fragment in (
        ({"push_enabled": False}, "push_enabled: Extra inputs are not permitted"),
        ({"default_digest_time": "8"}, "default_digest_time: String should match pattern"),
        ({"default_digest_frequency": "hourly"}, "default_digest_frequency: Input should be"),
    ):
        assert fragment in error(client.put(f"{PREFS}/global", json=body, headers=headers), 422, "VALIDATION_ERROR")
    for content in (b"", b"[]", b"{", b"null"):
        error(client.put(f"{PREFS}/global", content=content, headers=headers), 422, "VALIDATION_ERROR")


def recipient_zone(owner: psycopg.Connection[Any], who: uuid.UUID) -> str | None:
    row = owner.execute("SELECT timezone FROM notify.recipients WHERE user_id = %s", (who,)).fetchone()
    return None if row is None else str(row[0])


def test_the_time_zone_is_the_recipients_and_the_database_checks_it(
    client: httpx.Client, owner: psycopg.Connection[Any]
) -> None:
    who = uuid.uuid4()
    headers = user_headers(who)
    assert ok(client.get(PREFS, headers=headers), 200)["global"]["timezone"] == "UTC"
    assert recipient_zone(owner, who) is None
    answer = ok(client.put(f"{PREFS}/global", json={"timezone": "Europe/Berlin"}, headers=headers), 200)
    assert answer["timezone"] == "Europe/Berlin" and recipient_zone(owner, who) == "Europe/Berlin"
    assert ok(client.get(PREFS, headers=headers), 200)["global"] == answer
    both = {"timezone": "America/New_York", "all_email_enabled": False}
    answer = ok(client.put(f"{PREFS}/global", json=both, headers=headers), 200)
    assert (answer["timezone"], answer["all_email_enabled"]) == ("America/New_York", False)
    for body, fragment in (
        ({"timezone": "Mars/Olympus"}, 'unknown time zone "Mars/Olympus"'),
        ({"timezone": "Mars/Olympus", "all_push_enabled": False}, 'unknown time zone "Mars/Olympus"'),
        ({"timezone": None}, "timezone must be an IANA time zone name"),
        ({"timezone": ""}, "timezone: String should have at least 1 character"),
        ({"timezone": 1}, "timezone: Input should be a valid string"),
    ):
        assert fragment in error(client.put(f"{PREFS}/global", json=body, headers=headers), 422, "VALIDATION_ERROR")
    assert recipient_zone(owner, who) == "America/New_York"
    assert ok(client.get(PREFS, headers=headers), 200)["global"]["all_push_enabled"] is True


def test_quiet_hours_follow_the_time_zone(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    who = uuid.uuid4()
    headers = user_headers(who)
    nightly = {"quiet_hours_start": "22:00", "quiet_hours_end": "08:00", "quiet_hours_days": [1, 2, 3, 4, 5, 6, 7]}
    ok(client.put(f"{PREFS}/global", json=nightly, headers=headers), 200)
    at = "2026-01-05 14:00:00+00"  # a Monday: 14:00 in London, 23:00 in Tokyo

    def quiet_until() -> Any:
        sql = "SELECT notify_private.quiet_hours_end(%s, 'task', %s) AT TIME ZONE 'UTC'"
        return owner.execute(sql, (who, at)).fetchone()[0]  # type: ignore[index]

    assert quiet_until() is None
    ok(client.put(f"{PREFS}/global", json={"timezone": "Asia/Tokyo"}, headers=headers), 200)
    assert str(quiet_until()) == "2026-01-05 23:00:00"  # 08:00 in Tokyo
    ok(client.put(f"{PREFS}/global", json={"timezone": "Europe/London"}, headers=headers), 200)
    assert quiet_until() is None


def test_org_admin_routes(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    org, other = uuid.uuid4(), uuid.uuid4()
    member = new_member(owner, org, "m@example.com")
    mine, dba = admin_headers(org), admin_headers(None)
    defaults = ok(client.put(f"{ADMIN}/{org}/preferences", json={"digest_frequency": "weekly"}, headers=mine), 200)
    assert defaults["digest_frequency"] == "weekly" and "notification_type" not in defaults
    locked = {"email_enabled": True, "email_locked": True}
    security = ok(client.put(f"{ADMIN}/{org}/preferences/security", json=locked, headers=mine), 200)
    assert (security["notification_type"], security["email_locked"], security["push_enabled"]) == (
        "security", True, None,
    )  # fmt: skip
    listed = ok(client.get(f"{ADMIN}/{org}/preferences", headers=mine), 200)
    assert listed["org_id"] == str(org) and listed["global"] == defaults
    assert next(i for i in listed["items"] if i["notification_type"] == "security") == security
    member_view = ok(client.get(PREFS, headers=user_headers(member)), 200)
    assert member_view["global"]["default_digest_frequency"] == "weekly"

    for method, route in ADMIN_ROUTES:
        # Another org is not found for an org admin, whether or not it exists; a DBA reaches any.
        path = route.replace("{org}", str(other))
        assert error(client.request(method, path, json={}, headers=mine), 404, "NOT_FOUND") == "organization not found"
        ok(client.request(method, path, json={}, headers=dba), 200)
        assert client.request(method, route.replace("{org}", "not-a-uuid"), json={}, headers=dba).status_code == 404
    for path, body, fragment in (
        (f"{ADMIN}/{org}/preferences/task", {"push_locked": True}, "push_locked needs push_enabled"),
        (f"{ADMIN}/{org}/preferences/nope", {}, 'unknown notification type "nope"'),
        (f"{ADMIN}/{org}/preferences", {"in_app_enabled": True}, "in_app_enabled: Extra inputs are not permitted"),
        (f"{ADMIN}/{org}/preferences", {"push_locked": "yes"}, "push_locked: Input should be a valid boolean"),
    ):
        assert fragment in error(client.put(path, json=body, headers=mine), 422, "VALIDATION_ERROR")
    stats = f"{ADMIN}/{org}/stats"
    assert ok(client.get(stats, headers=mine), 200)["users"] == 1
    assert ok(client.get(stats, params={"since": "", "until": ""}, headers=mine), 200)["since"] is None
    assert "since: Input should be a valid datetime" in error(
        client.get(stats, params={"since": "yesterday"}, headers=mine), 422, "VALIDATION_ERROR"
    )
    assert "timezone" in error(client.get(stats, params={"since": "2026-01-01T00:00"}, headers=mine), 422,
                               "VALIDATION_ERROR")  # fmt: skip
    backwards = {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    assert "must not be after until" in error(client.get(stats, params=backwards, headers=mine), 422,
                                              "VALIDATION_ERROR")  # fmt: skip


def test_preference_changes_steer_the_planner(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    org = uuid.uuid4()
    member = new_member(owner, org, "planned@example.com")
    headers = user_headers(member)

    def planned(type_name: str) -> dict[str, tuple[str, str | None]]:
        body = {"user_id": str(member), "type": type_name, "title": "Deploy finished", "priority": "high"}
        sent = ok(client.post("/api/v1/notifications", json=body, headers=SERVICE), 202)["id"]
        rows = owner.execute(
            "SELECT channel, status, reason FROM notify.delivery_decisions WHERE notification_id = %s", (sent,)
        ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    assert planned("task")["push"] == ("skipped", "no active push subscription")
    ok(client.put(f"{PREFS}/task", json={"push_enabled": False}, headers=headers), 200)
    assert planned("task")["push"] == ("skipped", "push is turned off for task notifications")

    lock = {"email_enabled": True, "email_locked": True}
    ok(client.put(f"{ADMIN}/{org}/preferences/security", json=lock, headers=admin_headers(org)), 200)
    refusal = error(client.put(f"{PREFS}/security", json={"email_enabled": False}, headers=headers), 422,
                    "VALIDATION_ERROR")  # fmt: skip
    assert refusal.startswith("e-mail is locked on by your organization's admin for security notifications")
    instant_no_email = {"all_email_enabled": False, "default_digest_frequency": "instant"}
    ok(client.put(f"{PREFS}/global", json=instant_no_email, headers=headers), 200)
    assert planned("security")["email"] == ("pending", None)
    assert planned("billing")["email"] == ("skipped", "e-mail is turned off for billing notifications")


def test_org_webhook_registration_policy_over_rest(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    allows, forbids = uuid.uuid4(), uuid.uuid4()
    member_a, member_b = new_member(owner, allows), new_member(owner, forbids)
    body = {"user_webhook_endpoints": False, "sms_enabled": False, "sms_locked": True}
    answer = ok(client.put(f"{ADMIN}/{forbids}/preferences", json=body, headers=admin_headers(forbids)), 200)
    assert (answer["user_webhook_endpoints"], answer["sms_enabled"], answer["sms_locked"]) == (False, False, True)
    hook = {"url": "https://hooks.example.com/in"}
    forbidden = error(client.post(f"{PREFS[: -len('/preferences')]}/webhooks", json=hook,
                                  headers=user_headers(member_b)), 403, "FORBIDDEN")  # fmt: skip
    assert forbidden == ORG_FORBIDS
    created = ok(client.post(f"{PREFS[: -len('/preferences')]}/webhooks", json=hook, headers=user_headers(member_a)),
                 201)  # fmt: skip
    assert created["url"] == hook["url"]
    # Per type it is not the org's to say: the type's route refuses the key.
    assert "user_webhook_endpoints: Extra inputs are not permitted" in error(
        client.put(f"{ADMIN}/{allows}/preferences/task", json={"user_webhook_endpoints": True},
                   headers=admin_headers(allows)), 422, "VALIDATION_ERROR")  # fmt: skip
    for path, changes, fragment in (
        (f"{ADMIN}/{allows}/preferences", {"chat_locked": True}, "chat_locked needs chat_enabled"),
        (f"{ADMIN}/{allows}/preferences/task", {"webhook_locked": "yes"}, "webhook_locked: Input should be a valid"),
        (f"{PREFS}/task", {"chat_enabled": None}, "chat_enabled cannot be null"),
    ):
        headers = user_headers(member_a) if path.startswith(PREFS) else admin_headers(allows)
        assert fragment in error(client.put(path, json=changes, headers=headers), 422, "VALIDATION_ERROR")
    locked = error(client.put(f"{PREFS}/global", json={"all_sms_enabled": True}, headers=user_headers(member_b)), 422,
                   "VALIDATION_ERROR")  # fmt: skip
    assert locked.startswith("SMS is locked off by your organization's admin for every notification type")
    item_b = ok(client.get(PREFS, headers=user_headers(member_b)), 200)
    assert item_b["global"]["locked"] == ["sms"] and item_b["global"]["all_sms_enabled"] is False


ALL_ROUTES = (
    USER_ROUTES + ADMIN_ROUTES + [("PUT", f"{PREFS}/{{type}}"), ("PUT", f"{ADMIN}/{{org}}/preferences/{{type}}")]
)


@pytest.mark.parametrize(("method", "route"), ALL_ROUTES)
def test_garbage_never_makes_a_500(client: httpx.Client, method: str, route: str) -> None:
    callers = (user_headers(uuid.uuid4()), admin_headers(uuid.uuid4()), admin_headers(None), SERVICE)
    for headers in callers:
        for type_name in ("x", "%00", "1' OR '1'='1", "a" * 300, "global"):
            path = route.replace("{org}", str(uuid.uuid4())).replace("{type}", type_name)
            for content in (b"\xff\xfe", b"{", b'{"push_enabled": null}', b"null", b"9" * 5000,
                            b'{"quiet_hours_windows": [{"start": "\\u0000", "end": "x", "days": []}]}'):  # fmt: skip
                response = client.request(
                    method, path, content=content, params={"since": "\x00", "until": "-1"},
                    headers={**headers, "Content-Type": "application/json"},
                )  # fmt: skip
                assert response.status_code < 500, (method, path, content, response.text)
                assert response.status_code < 400 or set(response.json()) == {"error"}


def test_openapi_lists_the_preference_routes(client: httpx.Client) -> None:
    paths = ok(client.get("/openapi.json"), 200)["paths"]
    assert set(paths[PREFS]) == {"get"} and set(paths[f"{PREFS}/global"]) == {"put"}
    assert set(paths[f"{PREFS}/{{notification_type}}"]) == {"put"}
    assert set(paths[f"{ADMIN}/{{org_id}}/preferences"]) == {"get", "put"}
    assert set(paths[f"{ADMIN}/{{org_id}}/stats"]["get"]["responses"]) >= {"200", "401", "403", "404", "422"}
    assert paths[f"{ADMIN}/{{org_id}}/preferences/{{notification_type}}"]["put"]["security"] == [{"bearerAuth": []}]
