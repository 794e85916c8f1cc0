"""notify.explain answers "why didn't I get it?"; notify.cancel takes back a scheduled notification."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import dsn, user_conn
from tests.server import ServerProcess, make_token

USER, OTHER = uuid.UUID(int=21), uuid.UUID(int=22)
LATER = "2099-01-01T09:00:00Z"


def sent(service: psycopg.Connection[Any], user: uuid.UUID, **args: Any) -> Any:
    names = ", ".join(f"{k} => %({k})s" for k in args)
    row = service.execute(
        f"SELECT notify.send(%(user)s, 'task', 'Reminder', 'in 15 minutes'{', ' + names if names else ''})",
        {"user": user, **args},
    ).fetchone()
    assert row is not None
    return row[0]


def explain(conn: psycopg.Connection[Any], notification_id: Any) -> Any:
    row = conn.execute("SELECT notify.explain(%s)", (notification_id,)).fetchone()
    assert row is not None
    return row[0]


def test_explain_gives_every_decision_with_its_reason(db: psycopg.Connection[Any], service: Any) -> None:
    service.execute("SELECT notify.upsert_recipient_v2(%s, 'u@example.com')", (USER,))
    notification = sent(service, USER, priority="high")
    as_user = user_conn(db, str(USER))
    found = explain(as_user, notification)
    assert found["priority"] == "high" and found["rule"].startswith("high: in-app and push at once")
    assert [(d["channel"], d["status"], d["reason"]) for d in found["decisions"]] == [
        ("in_app", "sent", None),
        ("push", "skipped", "no active push subscription"),
        ("email", "held", "for the daily digest"),
    ]
    assert explain(service, notification) == found, "a service (support tooling) sees the same"
    assert explain(user_conn(db, str(OTHER)), notification) is None, "another user sees nothing"
    org_admin = psycopg.connect(**dsn(db, login=True), autocommit=True)
    org_admin.execute("SET ROLE notify_admin")
    org_admin.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"org_id": str(OTHER)}),))
    assert explain(org_admin, notification) is None, "an admin of another org sees nothing"


def test_a_scheduled_notification_is_cancelled_until_it_fires(db: psycopg.Connection[Any], service: Any) -> None:
    service.execute("SELECT notify.upsert_recipient_v2(%s, 'u@example.com')", (USER,))
    scheduled = sent(service, USER, priority="critical", send_at=LATER, idempotency_key="reminder-1")
    now = sent(service, USER, priority="critical")
    assert service.execute("SELECT notify.cancel(%s)", (now,)).fetchone() == (False,), "already sent: too late"
    assert service.execute("SELECT notify.cancel(%s, 'reminder-1')", (USER,)).fetchone() == (True,)
    assert service.execute("SELECT notify.cancel(%s)", (scheduled,)).fetchone() == (False,), "only once"
    statuses = db.execute(
        "SELECT channel, status, reason FROM notify.delivery_decisions WHERE notification_id = %s "
        "AND channel <> 'in_app' ORDER BY channel",
        (scheduled,),
    ).fetchall()
    assert statuses == [
        ("email", "cancelled", "cancelled before it was sent"),
        ("push", "skipped", "no active push subscription"),
    ]
    gone = db.execute("SELECT deleted_at IS NOT NULL FROM notify.notifications WHERE id = %s", (scheduled,))
    assert gone.fetchone() == (True,), "it leaves the notification center"
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        user_conn(db, str(USER)).execute("SELECT notify.cancel(%s)", (now,))


def test_explain_and_cancel_over_rest(server: ServerProcess, server_owner_url: str) -> None:
    user = uuid.uuid4()
    service = {"Authorization": f"Bearer {make_token('billing', role='service')}"}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        body = {"user_id": str(user), "type": "task", "title": "Stand-up", "send_at": LATER}
        created = client.post("/api/v1/notifications", json=body, headers=service)
        assert created.status_code == 202
        nid = created.json()["id"]
        mine = {"Authorization": f"Bearer {make_token(user)}"}
        why = client.get(f"/api/v1/notifications/{nid}/explain", headers=mine)
        assert why.status_code == 200 and why.json()["send_at"].startswith("2099-01-01")
        stranger = {"Authorization": f"Bearer {make_token(uuid.uuid4())}"}
        assert client.get(f"/api/v1/notifications/{nid}/explain", headers=stranger).status_code == 404
        assert client.post(f"/api/v1/notifications/{nid}/cancel", headers=mine).status_code == 403
        assert client.post(f"/api/v1/notifications/{nid}/cancel", headers=service).json() == {
            "id": nid,
            "cancelled": True,
        }
        again = client.post(f"/api/v1/notifications/{nid}/cancel", headers=service)
        assert again.status_code == 404 and "not scheduled" in again.json()["error"]["message"]
        assert client.get(f"/api/v1/notifications/{uuid.uuid4()}/explain", headers=service).status_code == 404


def test_a_scheduled_notification_enters_the_center_when_due(db: psycopg.Connection[Any], service: Any) -> None:
    db.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    service.execute("SET notify.clock = '2026-11-20 12:00+00'")
    reminder = sent(service, USER, send_at="2026-11-20 12:15+00")
    assert db.execute(
        "SELECT d.status, d.reason, d.scheduled_for = n.send_at, n.held_until = n.send_at "
        "FROM notify.notification_deliveries d JOIN notify.notifications n ON n.id = d.notification_id "
        "WHERE n.id = %s AND d.channel = 'in_app'",
        (reminder,),
    ).fetchone() == ("pending", "scheduled for send_at", True, True), "its real-time event waits for send_at"
    as_user = user_conn(db, str(USER))
    for clock, unread in (("2026-11-20 12:14+00", 0), ("2026-11-20 12:15+00", 1)):
        as_user.execute("SELECT set_config('notify.clock', %s, false)", (clock,))
        assert as_user.execute("SELECT notify.unread_count() -> 'count'").fetchone() == (unread,)
