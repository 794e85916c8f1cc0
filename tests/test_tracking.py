"""Tracking (push receipts, e-mail open pixel and click redirect, WebSocket acks) and the analytics report."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import markupsafe
import psycopg
import pytest
from psycopg.types.json import Jsonb

from notifyd.core.config import Settings
from notifyd.core.crypto import seal_token
from notifyd.domain import email
from notifyd.domain.deliveries import Delivery
from notifyd.domain.email import read_unsubscribe_token, render
from notifyd.domain.tracking import read_token
from notifyd.domain.webpush import push_payload
from notifyd.rest.tracking_api import PIXEL
from tests.server import JWT_SECRET, ServerProcess, make_token
from tests.test_realtime import recv_until, ws_for

URL = "https://app.example.com/tasks/7"


@pytest.fixture
def owner(server_owner_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(server_owner_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, follow_redirects=False) as c:
        yield c


def notification(conn: psycopg.Connection[Any], org: uuid.UUID | None = None, **kw: Any) -> dict[str, Any]:
    """A critical notification (every channel planned) and its delivery ids per channel; a push one is added."""
    user = uuid.uuid4()
    conn.execute("SELECT notify.upsert_recipient_v2(%s, %s, org_id => %s)", (user, f"{user}@example.com", org))
    row = conn.execute(
        "INSERT INTO notify.notifications (user_id, type, title, body, priority, data) "
        "VALUES (%s, %s, 'T', 'B', 'critical', %s) RETURNING id",
        (user, kw.get("type", "task"), Jsonb(kw.get("data", {}))),
    ).fetchone()
    assert row is not None
    # No device: the planner skipped push; make it a sent push, as if a device had taken it.
    conn.execute(
        "INSERT INTO notify.notification_deliveries (notification_id, user_id, channel, status) "
        "VALUES (%s, %s, 'push', 'sent') ON CONFLICT (notification_id, channel, subscription_id, target_id) "
        "DO UPDATE SET status = 'sent'",
        (row[0], user),
    )
    ids = dict(conn.execute("SELECT channel, id FROM notify.notification_deliveries WHERE notification_id = %s",
                            (row[0],)).fetchall())  # fmt: skip
    return {"id": row[0], "user": user, **ids}


def in_app_row(conn: psycopg.Connection[Any], n: dict[str, Any]) -> Any:
    """The id of the notification's in-app delivery row; None while it has none (sent at once, nothing tracked)."""
    row = conn.execute(
        "SELECT id FROM notify.notification_deliveries WHERE notification_id = %s AND channel = 'in_app'", (n["id"],)
    ).fetchone()
    return None if row is None else row[0]


def token(purpose: str, n: dict[str, Any], channel: str, **extra: str) -> str:
    claims = {"d": str(n[channel]), "n": str(n["id"]), "u": str(n["user"]), **extra}
    return seal_token(JWT_SECRET, purpose, claims)


def events(conn: psycopg.Connection[Any], n: dict[str, Any]) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT channel, event FROM notify.notification_analytics "
        "WHERE notification_id = %s AND delivery_id IS NOT NULL ORDER BY channel, event",
        (n["id"],),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def stamps(conn: psycopg.Connection[Any], delivery: uuid.UUID) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT status, delivered_at IS NOT NULL, opened_at IS NOT NULL, clicked_at IS NOT NULL "
        "FROM notify.notification_deliveries WHERE id = %s",
        (delivery,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def tampered(text: str) -> str:
    body, _, tag = text.partition(".")
    return f"{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{tag}"


# --- e-mail -----------------------------------------------------------------------------------------------


def test_render_signs_the_pixel_and_the_link_and_stays_deterministic() -> None:
    settings = Settings(database_url="postgresql://unused", jwt_secret=JWT_SECRET, public_base_url="https://n.example")
    ids = {"d": uuid.uuid4(), "n": uuid.uuid4(), "u": uuid.uuid4()}
    delivery = Delivery(
        id=ids["d"], channel="email", attempts=1, subscription=None, vapid_key=None, unread_count=0,
        notification={"id": str(ids["n"]), "type": "task", "title": "T", "body": "B", "data": {"url": URL}},
        recipient={"user_id": ids["u"], "email": "a@example.com", "locale": "en"},
    )  # fmt: skip
    first, again = render(delivery, settings), render(delivery, settings)
    assert first == again, "a retry must send the same bytes (Resend idempotency)"
    pixel = first.html.split('<img src="https://n.example/t/open/')[1].split('"')[0]
    link = first.html.split('href="https://n.example/t/click/')[1].split('"')[0]
    assert URL not in first.html and f"https://n.example/t/click/{link}" in first.text
    opened, clicked = read_token(settings, "open", pixel), read_token(settings, "click", link)
    assert opened is not None and clicked is not None
    assert (opened.delivery_id, opened.notification_id, opened.user_id) == (ids["d"], ids["n"], ids["u"])
    assert clicked.url == URL
    assert read_token(settings, "click", pixel) is None, "a token of one purpose never passes as another"
    receipt = push_payload(delivery.notification, "r.t")
    assert b'"receipt":"r.t"' in receipt


def test_one_notification_to_many_renders_once_and_each_email_has_its_own_links() -> None:
    """A bulk send's e-mail is rendered once: each delivery still gets its own unsubscribe, click and pixel
    tokens, and the bytes are those of a first rendering (a retry after a restart sends the same)."""
    settings = Settings(database_url="postgresql://unused", jwt_secret=JWT_SECRET, public_base_url="https://n.example")
    notification = {"id": str(uuid.uuid4()), "type": "task", "title": "T <&>", "body": "B", "data": {"url": URL}}
    deliveries = [
        Delivery(
            id=uuid.uuid4(),
            channel="email",
            attempts=1,
            subscription=None,
            vapid_key=None,
            unread_count=0,
            notification=notification,
            recipient={"user_id": uuid.uuid4(), "email": f"{n}@example.com", "locale": "en"},
        )  # fmt: skip
        for n in range(3)
    ]
    email._rendered.cache_clear()
    cold = [render(d, settings) for d in reversed(deliveries)][::-1]
    assert email._rendered.cache_info().misses == 1, "the templates ran once for the three"
    warm = [render(d, settings) for d in deliveries]
    email._rendered.cache_clear()
    assert warm == cold == [render(d, settings) for d in deliveries]
    for delivery, sent in zip(deliveries, warm, strict=True):
        unsubscribe = sent.headers["List-Unsubscribe"].strip("<>")
        assert read_unsubscribe_token(settings, unsubscribe.rsplit("/", 1)[1]) == (
            delivery.recipient["user_id"],
            "task",
        )
        assert sent.html.count(str(markupsafe.escape(unsubscribe))) == 1 and sent.text.count(unsubscribe) == 1
        link = sent.html.split('href="https://n.example/t/click/')[1].split('"')[0]
        clicked = read_token(settings, "click", link)
        assert clicked is not None and clicked.delivery_id == delivery.id
        assert email.UNSUBSCRIBE_MARK not in sent.html + sent.text and email.OPEN_MARK not in sent.html + sent.text
        assert "T &lt;&amp;&gt;" in sent.html


def test_pixel_records_one_open_and_always_answers_the_gif(
    owner: psycopg.Connection[Any], client: httpx.Client
) -> None:
    n = notification(owner)
    good = token("open", n, "email")
    for _ in range(3):  # a second and third load of the same e-mail count once: deliveries, not loads
        answer = client.get(f"/t/open/{good}")
        assert answer.status_code == 200 and answer.content == PIXEL
        assert answer.headers["content-type"] == "image/gif" and answer.headers["cache-control"] == "no-store"
    assert events(owner, n) == [("email", "opened")]
    assert stamps(owner, n["email"])[2] is True

    other = notification(owner)
    for bad in (tampered(token("open", other, "email")), token("click", other, "email", url=URL), "x", "é.é"):
        answer = client.get(f"/t/open/{bad}")
        assert answer.status_code == 200 and answer.content == PIXEL
    assert events(owner, other) == [], "a forged or foreign token records nothing"


def test_click_redirects_only_to_the_signed_link_once(owner: psycopg.Connection[Any], client: httpx.Client) -> None:
    n = notification(owner)
    good = token("click", n, "email", url=URL)
    for _ in range(2):
        answer = client.get(f"/t/click/{good}")
        assert answer.status_code == 302 and answer.headers["location"] == URL
    assert client.get(f"/t/click/{good}?url=https://evil.example").headers["location"] == URL
    assert events(owner, n) == [("email", "clicked")]
    assert stamps(owner, n["email"])[2:] == (True, True), "a click proves the open"

    other = notification(owner)
    claims = {"d": str(other["email"]), "n": str(other["id"]), "u": str(other["user"]), "url": "https://evil.example"}
    unsigned = seal_token("another secret", "click", claims)
    # The signed link's tag on a body naming another URL: the URL is covered by the signature.
    forged_url = f"{unsigned.split('.')[0]}.{token('click', other, 'email', url=URL).split('.')[1]}"
    script = token("click", other, "email", url="javascript:alert(1)")
    for bad in (tampered(token("click", other, "email", url=URL)), unsigned, forged_url, script,
                token("open", other, "email"), "nothing"):  # fmt: skip
        answer = client.get(f"/t/click/{bad}")
        assert answer.status_code == 404 and "location" not in answer.headers
    assert events(owner, other) == []


# --- push receipts ---------------------------------------------------------------------------------------


def test_push_receipts_record_once_and_refuse_forgeries(owner: psycopg.Connection[Any], client: httpx.Client) -> None:
    n = notification(owner)
    receipt = token("receipt", n, "push")
    path = "/api/v1/notifications/receipts"
    first = client.post(path, json={"token": receipt, "event": "received"})
    assert (first.status_code, first.json()) == (202, {"recorded": True})
    again = client.post(path, json={"token": receipt, "event": "received"})
    assert (again.status_code, again.json()) == (202, {"recorded": False})
    assert client.post(path, json={"token": receipt, "event": "clicked"}).json() == {"recorded": True}
    assert events(owner, n) == [("push", "clicked"), ("push", "delivered")]
    assert stamps(owner, n["push"]) == ("delivered", True, True, True)

    other = notification(owner)
    for bad in (tampered(token("receipt", other, "push")), token("open", other, "push"), "é"):
        answer = client.post(path, json={"token": bad, "event": "received"})
        assert answer.status_code == 401 and answer.json()["error"]["message"] == "the receipt token is not valid"
    assert client.post(path, json={"token": receipt, "event": "opened"}).status_code == 422
    gone = {**other, "push": uuid.uuid4()}
    assert client.post(path, json={"token": token("receipt", gone, "push"), "event": "received"}).status_code == 404
    assert events(owner, other) == []


def action_taken(conn: psycopg.Connection[Any], n: dict[str, Any]) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT n.action_taken, (SELECT array_agg(a.action ORDER BY a.taken_at) FROM notify.notification_actions AS a "
        "WHERE a.notification_id = n.id AND a.user_id = n.user_id) FROM notify.notifications AS n WHERE n.id = %s",
        (n["id"],),
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_an_action_button_in_the_push_takes_the_action_as_the_notifications_user(
    owner: psycopg.Connection[Any], client: httpx.Client
) -> None:
    offered = {"actions": [{"action": "approve", "label": "Approve"}, {"action": "reject", "label": "Reject"}]}
    n = notification(owner, data=offered)
    receipt, path = token("receipt", n, "push"), "/api/v1/notifications/receipts"
    pressed = client.post(path, json={"token": receipt, "event": "action", "action": "approve"})
    assert (pressed.status_code, pressed.json()) == (202, {"recorded": True, "action_taken": True})
    assert action_taken(owner, n) == ("approve", ["approve"])
    assert events(owner, n) == [("push", "clicked")]
    assert stamps(owner, n["push"])[3] is True

    # Only an action the notification offers; the click is not recorded either then.
    other = notification(owner, data=offered)
    unknown = client.post(path, json={"token": token("receipt", other, "push"), "event": "action", "action": "wipe"})
    assert unknown.status_code == 422 and 'offers no action "wipe"' in unknown.json()["error"]["message"]
    assert action_taken(owner, other) == (None, None) and events(owner, other) == []

    # A notification the user deleted takes no action; the click still counts.
    owner.execute("UPDATE notify.notifications SET deleted_at = now() WHERE id = %s", (other["id"],))
    late = client.post(path, json={"token": token("receipt", other, "push"), "event": "action", "action": "approve"})
    assert (late.status_code, late.json()) == (202, {"recorded": True, "action_taken": False})
    assert action_taken(owner, other) == (None, None) and events(owner, other) == [("push", "clicked")]


def test_action_receipts_need_their_action_and_a_valid_token(
    owner: psycopg.Connection[Any], client: httpx.Client
) -> None:
    n = notification(owner, data={"actions": [{"action": "approve", "label": "Approve"}]})
    receipt, path = token("receipt", n, "push"), "/api/v1/notifications/receipts"
    for body in ({"event": "action"}, {"event": "clicked", "action": "approve"}, {"event": "action", "action": ""}):
        answer = client.post(path, json={"token": receipt, **body})
        assert answer.status_code == 422, body
    forged = client.post(path, json={"token": tampered(receipt), "event": "action", "action": "approve"})
    assert forged.status_code == 401
    assert action_taken(owner, n) == (None, None) and events(owner, n) == []


# --- WebSocket ack ---------------------------------------------------------------------------------------


def test_websocket_ack_records_in_app_delivered_once(owner: psycopg.Connection[Any], server: ServerProcess) -> None:
    n = notification(owner)
    stranger = notification(owner)

    async def run() -> list[dict[str, Any]]:
        async with ws_for(server, n["user"]) as ws:
            for _ in range(2):
                await ws.send(json.dumps({"type": "ack", "notification_id": str(n["id"])}))
            await ws.send(json.dumps({"type": "ack", "notification_id": str(stranger["id"])}))
            await ws.send('{"type": "ack", "notification_id": "nope"}')
            errors = [e for e in await recv_until(ws, "error") if e["type"] == "error"]
            errors += [e for e in await recv_until(ws, "error") if e["type"] == "error"]
            return errors

    assert in_app_row(owner, n) is None, "an in-app delivery sent at once has no row"
    errors = asyncio.run(run())
    assert [e["code"] for e in errors] == ["NOT_FOUND", "INVALID_MESSAGE"]
    assert events(owner, n) == [("in_app", "delivered")]
    in_app = in_app_row(owner, n)
    assert in_app is not None, "the first ack made its row"
    assert stamps(owner, in_app)[:2] == ("delivered", True)
    assert owner.execute(
        "SELECT count(*) FROM notify.notification_deliveries WHERE notification_id = %s AND channel = 'in_app'",
        (n["id"],),
    ).fetchone() == (1,), "the second ack found it"
    assert in_app_row(owner, stranger) is None, "nor did the stranger's ack make one"
    assert events(owner, stranger) == [], "another user's notification cannot be acked"


# --- analytics -------------------------------------------------------------------------------------------

# Per delivery: (notification, channel, device) -> events with their hour offsets from DAY.
DAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def fixture_rows(conn: psycopg.Connection[Any], org: uuid.UUID) -> None:
    """As the owner: a known set of events in one org (hours after DAY)."""
    plan: list[tuple[str, str, list[tuple[str, float]]]] = [
        # e-mail, task: 4 sent on day 1; 3 delivered; 2 opened (one by pixel twice, one only clicked); 1 clicked
        ("task", "email", [("sent", 1), ("delivered", 1.1), ("opened", 2), ("opened", 30)]),
        ("task", "email", [("sent", 1), ("delivered", 1.1), ("clicked", 26)]),  # the next day: still day 1's
        ("task", "email", [("sent", 2), ("delivered", 2.1)]),
        ("task", "email", [("sent", 3), ("bounced", 3.1)]),
        # push, task: 2 sent on day 1 without receipts (FCM): open rate on sent; 1 clicked
        ("task", "push", [("sent", 5), ("clicked", 6)]),
        ("task", "push", [("sent", 5)]),
        # push, user: day 2 (hour 25): 1 sent, 1 failed
        ("user", "push", [("sent", 25)]),
        ("user", "push", [("failed", 25)]),
    ]
    for kind, channel, evs in plan:
        n = notification(conn, org, type=kind)
        for event, hours in evs:
            if event in ("sent", "failed"):
                # What the worker records: the ledger row, no analytics row (the report reads the ledger).
                conn.execute(
                    "UPDATE notify.notification_deliveries SET attempts = 1, status = %s,"
                    " sent_at = CASE WHEN %s = 'sent' THEN %s + make_interval(secs => %s) END,"
                    " failed_at = CASE WHEN %s = 'failed' THEN %s + make_interval(secs => %s) END WHERE id = %s",
                    (event, event, DAY, hours * 3600, event, DAY, hours * 3600, n[channel]),
                )
                continue
            conn.execute(
                "INSERT INTO notify.notification_analytics (notification_id, notification_type, channel, event,"
                " user_id, org_id, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s + make_interval(secs => %s))",
                (n["id"], kind, channel, event, n["user"], org, DAY, hours * 3600),
            )


def rates(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    keys = ("sent", "delivered", "opened", "clicked", "bounced", "failed", "delivery_rate", "open_rate",
            "open_basis", "click_rate")  # fmt: skip
    return {(r["bucket_start"][:10], r["notification_type"], r["channel"]): tuple(r[k] for k in keys) for r in rows}


def test_analytics_match_a_hand_computed_fixture_per_org(owner: psycopg.Connection[Any], client: httpx.Client) -> None:
    org, other_org = uuid.uuid4(), uuid.uuid4()
    fixture_rows(owner, org)
    fixture_rows(owner, other_org)
    admin = {"authorization": f"Bearer {make_token('ops', role='admin', org_id=str(org))}"}
    params = {"from": DAY.isoformat(), "to": "2026-03-04T00:00:00+00:00", "bucket": "day"}
    answer = client.get("/api/v1/notifications/analytics", params=params, headers=admin)
    assert answer.status_code == 200, answer.text
    assert rates(answer.json()["rows"]) == {
        # sent, delivered, opened, clicked, bounced, failed, delivery, open (basis), click rate
        ("2026-03-02", "task", "email"): (4, 3, 2, 1, 1, 0, "0.7500", "0.6667", "delivered", "0.5000"),
        ("2026-03-02", "task", "push"): (2, 1, 1, 1, 0, 0, "0.5000", "1.0000", "delivered", "1.0000"),
        ("2026-03-03", "user", "push"): (1, 0, 0, 0, 0, 1, "0.0000", "0.0000", "sent", None),
    }, "an org admin sees their org once, not the other org's identical rows"

    weekly = client.get("/api/v1/notifications/analytics", params={**params, "bucket": "week"}, headers=admin).json()
    assert rates(weekly["rows"])[("2026-03-02", "task", "email")][:4] == (4, 3, 2, 1)
    assert {r["bucket_start"] for r in weekly["rows"]} == {"2026-03-02T00:00:00Z"}

    # Range: a delivery belongs to its first event's bucket; one whose send is outside is left out.
    later = client.get("/api/v1/notifications/analytics", params={**params, "from": "2026-03-03T00:00:00Z"},
                       headers=admin).json()  # fmt: skip
    assert set(rates(later["rows"])) == {("2026-03-03", "user", "push")}

    dba = {"authorization": f"Bearer {make_token('dba', role='admin')}"}
    both = client.get("/api/v1/notifications/analytics", params=params, headers=dba).json()
    assert rates(both["rows"])[("2026-03-02", "task", "email")][:4] >= (8, 6, 4, 2)


def test_analytics_refuse_non_admins_and_bad_input(client: httpx.Client) -> None:
    path = "/api/v1/notifications/analytics"
    params = {"from": "2026-03-02T00:00:00Z", "to": "2026-03-03T00:00:00Z"}
    user = {"authorization": f"Bearer {make_token(uuid.uuid4())}"}
    admin = {"authorization": f"Bearer {make_token('ops', role='admin')}"}
    assert client.get(path, params=params).status_code == 401
    assert client.get(path, params=params, headers=user).status_code == 403
    assert client.get(path, params={**params, "bucket": "year"}, headers=admin).status_code == 422
    assert client.get(path, params={**params, "to": "2026-03-01T00:00:00Z"}, headers=admin).status_code == 422
    assert (
        client.get(path, params={"from": "2026-03-02T00:00:00", "to": params["to"]}, headers=admin).status_code == 422
    )
    assert client.get(path, params={"to": params["to"]}, headers=admin).status_code == 422


def test_sql_analytics_for_dbas_and_bad_arguments(db: psycopg.Connection[Any]) -> None:
    org = uuid.uuid4()
    fixture_rows(db, org)
    rows = db.execute(
        "SELECT notification_type, channel, sent, delivered, opened, clicked, open_basis FROM notify.analytics_monthly"
    ).fetchall()
    assert ("task", "email", 4, 3, 2, 1, "delivered") in rows and ("user", "push", 1, 0, 0, 0, "sent") in rows
    for bucket, message in (("year", "bucket must be hour, day, week or month"),):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            db.execute("SELECT * FROM notify.analytics(now(), now() + interval '1 day', %s)", (bucket,))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="from must be before to"):
        db.execute("SELECT * FROM notify.analytics(now(), now(), 'day')")
    hourly = db.execute(
        "SELECT bucket_start, sent FROM notify.analytics(%s, %s + interval '1 day', 'hour') "
        "WHERE notification_type = 'task' AND channel = 'email' ORDER BY 1",
        (DAY, DAY),
    ).fetchall()
    assert [(b.hour, s) for b, s in hourly] == [(1, 2), (2, 1), (3, 1)]
    assert isinstance(db.execute("SELECT delivery_rate FROM notify.analytics_daily LIMIT 1").fetchone()[0], Decimal)  # type: ignore[index]


def test_sent_and_failed_counts_outlive_their_deliveries(db: psycopg.Connection[Any]) -> None:
    org = uuid.uuid4()
    fixture_rows(db, org)
    totals = "SELECT sum(sent), sum(failed) FROM notify.analytics(%s, %s + interval '2 days', 'day')"
    assert db.execute(totals, (DAY, DAY)).fetchone() == (7, 1)
    assert db.execute(
        "SELECT count(*) FROM notify.notification_analytics WHERE event IN ('sent', 'failed')"
    ).fetchone() == (0,)
    # Retention removes the notifications (their deliveries cascade): their sent and failed events stay, anonymous.
    db.execute("DELETE FROM notify.notifications")
    assert db.execute(totals, (DAY, DAY)).fetchone() == (7, 1)
    kept = db.execute(
        "SELECT count(*), count(*) FILTER (WHERE user_id IS NULL AND notification_id IS NULL AND device_id IS NULL) "
        "FROM notify.notification_analytics WHERE event IN ('sent', 'failed')"
    ).fetchone()
    assert kept == (8, 8)
