"""Topics and org broadcasts: the SQL of sql/functions/075_topics.sql as users, services, org admins and DBAs
(the test login role, neither superuser, owner nor BYPASSRLS), then its REST routes and the WebSocket against
the session's notifyd.

SQL tests run each scenario in one rolled-back transaction that switches between the real roles.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import service_conn
from tests.server import ServerProcess
from tests.test_delivery_sql import add_device
from tests.test_preferences import admin_headers, become, new_member, refused, value
from tests.test_realtime import notifications, quiet, recv_until, settle, ws_for
from tests.test_rest import SERVICE, error, ok, user_headers

ORG, OTHER_ORG = uuid.UUID(int=0x7A0), uuid.UUID(int=0x7B0)
SERVICE_CLAIMS = {"sub": "billing", "role": "service"}
DBA: dict[str, Any] = {"sub": "dba"}
TOPICS = "/api/v1/topics"
BROADCASTS = "/api/v1/admin/broadcasts"
BULK = "/api/v1/notifications/bulk"


def admin_of(org: uuid.UUID) -> dict[str, Any]:
    return {"sub": "ops", "org_id": str(org)}


def member(db: psycopg.Connection[Any], org: uuid.UUID, n: int, locale: str = "en", tz: str = "UTC") -> uuid.UUID:
    """A recipient of the org (as the owner: setting up, not under test)."""
    who = uuid.UUID(int=org.int * 1000 + n)
    db.execute(
        "SELECT notify.upsert_recipient(%s, %s, locale => %s, timezone => %s, org_id => %s)",
        (who, f"{who}@example.test", locale, tz, org),
    )
    return who


def follow(db: psycopg.Connection[Any], topic: str, *users: uuid.UUID, muted: bool = False) -> None:
    for who in users:
        db.execute(
            "INSERT INTO notify.topic_subscriptions (user_id, topic, muted) VALUES (%s, %s, %s)", (who, topic, muted)
        )


def user(who: uuid.UUID) -> dict[str, Any]:
    return {"sub": str(who)}


def received(cur: psycopg.Cursor[Any], batch: Any) -> list[uuid.UUID]:
    """Who got a notification of the batch, as a DBA sees it."""
    become(cur, "notify_admin", DBA)
    rows = cur.execute("SELECT user_id FROM notify.notifications WHERE batch_id = %s ORDER BY user_id", (batch,))
    return [r[0] for r in rows.fetchall()]


# --- subscriptions, in SQL ---------------------------------------------------------------------------------


def test_users_manage_their_own_subscriptions_admins_their_org_services_all(
    db: psycopg.Connection[Any], as_role: Any
) -> None:
    alice, bob = member(db, ORG, 1), member(db, OTHER_ORG, 1)
    with as_role("notify_authenticated", user(alice)) as cur:
        assert value(cur, "SELECT notify.subscribe(%s, 'releases')", alice) is True
        assert value(cur, "SELECT notify.subscribe(%s, 'releases')", alice) is False  # already
        assert value(cur, "SELECT notify.mute_topic(%s, 'releases')", alice) is True
        # Subscribing again keeps the mute.
        assert value(cur, "SELECT notify.subscribe(%s, 'releases')", alice) is False
        assert cur.execute("SELECT topic, muted FROM notify.topic_subscriptions").fetchall() == [("releases", True)]
        # Another user is not found, whether or not they exist; nothing written.
        for someone in (bob, uuid.uuid4()):
            for call in ("subscribe(%s, 'releases')", "unsubscribe(%s, 'releases')", "mute_topic(%s, 'releases')"):
                assert refused(cur, f"SELECT notify.{call}", someone) == (
                    "P0002",
                    f"no recipient {someone} in your scope",
                )
        assert refused(cur, "SELECT notify.mute_topic(%s, 'other')", alice) == (
            "P0002",
            f'user {alice} is not subscribed to topic "other"',
        )
        # RLS: a direct insert for someone else is refused too.
        with pytest.raises(psycopg.errors.InsufficientPrivilege), cur.connection.transaction():
            cur.execute("INSERT INTO notify.topic_subscriptions (user_id, topic) VALUES (%s, 'x')", (bob,))
        become(cur, "notify_admin", admin_of(OTHER_ORG))
        assert value(cur, "SELECT notify.subscribe(%s, 'releases')", bob) is True
        assert refused(cur, "SELECT notify.subscribe(%s, 'releases')", alice)[0] == "P0002"
        # The other org's admin sees their member's row only.
        assert cur.execute("SELECT user_id FROM notify.topic_subscriptions").fetchall() == [(bob,)]
        become(cur, "notify_service", SERVICE_CLAIMS)
        assert value(cur, "SELECT count(*) FROM notify.topic_subscriptions") == 2
        assert value(cur, "SELECT notify.unsubscribe(%s, 'releases')", alice) is True
        assert value(cur, "SELECT notify.unsubscribe(%s, 'releases')", alice) is False


BAD_TOPICS = st.one_of(
    st.just(""),
    st.just("a" * 201),
    st.text(min_size=1, max_size=20).filter(lambda t: not t[0].isascii() or not t[0].isalnum()),
    st.text(min_size=1, max_size=10).map(lambda t: f"ok{t}/x"),
    st.sampled_from(["with space", "slash/y", "-leading", "émoji🎉", "tab\tx", "semi;colon"]),
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(topic=BAD_TOPICS)
def test_a_bad_topic_name_is_22023_everywhere_and_writes_nothing(
    db: psycopg.Connection[Any], as_role: Any, topic: str
) -> None:
    if "\x00" in topic:
        topic = topic.replace("\x00", "/")
    alice = member(db, ORG, 1)
    expected_start = "topic must be 1 to 200 letters, digits or . _ : - (starting with a letter or digit)"
    with as_role("notify_service", SERVICE_CLAIMS) as cur:
        for sql in (
            "SELECT notify.subscribe(%(u)s, %(t)s)",
            "SELECT notify.unsubscribe(%(u)s, %(t)s)",
            "SELECT notify.mute_topic(%(u)s, %(t)s)",
            "SELECT notify.send_topic(%(t)s, 'system', 'hello')",
        ):
            with pytest.raises(psycopg.Error) as caught, cur.connection.transaction():
                cur.execute(sql, {"u": alice, "t": topic})
            assert caught.value.sqlstate == "22023"
            assert (caught.value.diag.message_primary or "").startswith(expected_start)
        become(cur, "notify_admin", DBA)
        with pytest.raises(psycopg.Error) as caught, cur.connection.transaction():
            cur.execute("SELECT notify.broadcast_preview(NULL, 'system', topic => %s)", (topic,))
        assert caught.value.sqlstate == "22023"
        assert value(cur, "SELECT count(*) FROM notify.topic_subscriptions") == 0
        assert value(cur, "SELECT count(*) FROM notify.notification_batches") == 0


def test_null_arguments_are_22004(db: psycopg.Connection[Any], as_role: Any) -> None:
    alice = member(db, ORG, 1)
    with as_role("notify_service", SERVICE_CLAIMS) as cur:
        assert refused(cur, "SELECT notify.subscribe(%s, NULL)", alice) == ("22004", "topic cannot be null")
        assert refused(cur, "SELECT notify.subscribe(NULL, 'x')") == ("22004", "user_id cannot be null")
        cur.execute("SELECT notify.subscribe(%s, 'x')", (alice,))
        assert refused(cur, "SELECT notify.mute_topic(%s, 'x', NULL)", alice)[0] == "22004"


# --- sending to a topic -------------------------------------------------------------------------------------


def test_send_topic_reaches_every_unmuted_follower_with_their_preferences(
    db: psycopg.Connection[Any], as_role: Any
) -> None:
    a, b, c, d = (member(db, ORG, n) for n in range(1, 5))
    stranger = member(db, ORG, 9)
    follow(db, "releases", a, b, c)
    follow(db, "releases", d, muted=True)
    follow(db, "other", stranger)
    add_device(db, a)
    # b turned push off for system notifications: the topic send honours it as send_bulk does.
    db.execute(
        "INSERT INTO notify.notification_preferences (user_id, notification_type, push_enabled) "
        "VALUES (%s, 'system', false)",
        (b,),
    )
    with as_role("notify_service", SERVICE_CLAIMS) as cur:
        batch = value(cur, "SELECT notify.send_topic('releases', 'system', 'v2 is out', priority => 'high')")
        assert received(cur, batch) == sorted([a, b, c])
        rows = cur.execute(
            "SELECT recipient_count, audience, org_id, created_by FROM notify.notification_batches WHERE id = %s",
            (batch,),
        ).fetchall()
        assert rows == [(3, {"topic": "releases"}, None, "billing")]
        push = dict(
            cur.execute(
                "SELECT d.user_id, d.status FROM notify.delivery_decisions AS d "
                "JOIN notify.notifications AS n ON n.id = d.notification_id "
                "WHERE n.batch_id = %s AND d.channel = 'push'",
                (batch,),
            ).fetchall()
        )
        assert push[a] == "pending" and push[b] == "skipped"
        # Each follower's seq is their own next one.
        seqs = cur.execute(
            "SELECT n.seq = r.last_seq FROM notify.notifications n JOIN notify.recipients r USING (user_id) "
            "WHERE n.batch_id = %s",
            (batch,),
        ).fetchall()
        assert seqs == [(True,)] * 3
        become(cur, "notify_service", SERVICE_CLAIMS)
        # Nobody follows it: nothing sent, no batch.
        assert value(cur, "SELECT notify.send_topic('nobody-here', 'system', 'x')") is None
        assert refused(cur, "SELECT notify.send_topic('releases', 'nope', 'x')") == (
            "22023",
            'unknown notification type "nope"',
        )


def test_a_topic_is_chunked_by_max_recipients_and_spends_the_global_rate(
    db: psycopg.Connection[Any], as_role: Any
) -> None:
    followers = [member(db, ORG, n) for n in range(1, 8)]
    follow(db, "big", *followers)
    for who in followers:  # e-mail at once, not in the daily digest (the default)
        db.execute(
            "INSERT INTO notify.notification_preferences (user_id, notification_type, digest_frequency) "
            "VALUES (%s, 'system', 'instant')",
            (who,),
        )
    db.execute("UPDATE notify.settings SET value = '3' WHERE key = 'batch.max_recipients'")
    db.execute("UPDATE notify.settings SET value = '60' WHERE key = 'rate_limit.global_per_minute'")
    db.execute("UPDATE notify.global_rate_bucket SET tokens = 2, refreshed_at = now()")
    with as_role("notify_service", SERVICE_CLAIMS) as cur:
        # send_bulk stays bound by batch.max_recipients; a topic is not.
        assert refused(cur, "SELECT notify.send_bulk(%s, 'system', 'x')", followers)[0] == "22003"
        batch = value(
            cur, "SELECT notify.send_topic('big', 'system', 'hello', priority => 'high', channels => ARRAY['email'])"
        )
        assert received(cur, batch) == sorted(followers)
        # 7 e-mails over 3 chunks: the 2 tokens left go now, the others one a second (60 per minute) in order.
        waits = cur.execute(
            "SELECT extract(epoch FROM d.scheduled_for - n.created_at)::int, d.reason "
            "FROM notify.notification_deliveries d JOIN notify.notifications n ON n.id = d.notification_id "
            "WHERE n.batch_id = %s AND d.channel = 'email' ORDER BY d.scheduled_for NULLS FIRST",
            (batch,),
        ).fetchall()
        assert [w for w, _ in waits] == [None, None, 1, 2, 3, 4, 5]
        assert sum("global rate limit (60 per minute for bulk sends)" in (r or "") for _, r in waits) == 5


def test_concurrent_topic_and_bulk_sends_to_the_same_users_neither_deadlock_nor_share_a_seq(
    db: psycopg.Connection[Any],
) -> None:
    followers = [member(db, ORG, n) for n in range(1, 10)]
    follow(db, "busy", *followers)
    db.execute("UPDATE notify.settings SET value = '3' WHERE key = 'batch.max_recipients'")  # 3 chunks of 3
    rounds = 8
    errors: list[BaseException] = []

    def sends(sql: str, *args: Any) -> None:
        with service_conn(db) as conn:
            for _ in range(rounds):
                try:
                    conn.execute(sql, args)
                except psycopg.Error as error:  # a deadlock would be 40P01 here
                    errors.append(error)

    # The bulk sends name the users in the opposite order: each statement locks in user order anyway.
    threads = [
        threading.Thread(target=sends, args=("SELECT notify.send_topic('busy', 'system', 'topic')",)),
        threading.Thread(target=sends, args=("SELECT notify.send_bulk(%s, 'system', 'bulk')", followers[1::3][::-1])),
        threading.Thread(target=sends, args=("SELECT notify.send_topic('busy', 'system', 'topic')",)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    # Every user's seqs are 1..n without a gap or a repeat, and n is what they were sent.
    per_user = db.execute(
        "SELECT user_id, count(*), min(seq), max(seq), count(DISTINCT seq) FROM notify.notifications "
        "GROUP BY user_id ORDER BY user_id"
    ).fetchall()
    bulk_users = set(followers[1::3])
    assert [(u, n) for u, n, *_ in per_user] == [
        (u, 2 * rounds + (rounds if u in bulk_users else 0)) for u in followers
    ]
    assert all(low == 1 and high == n and distinct == n for _, n, low, high, distinct in per_user)


def test_an_org_admin_sends_to_their_orgs_followers_only(db: psycopg.Connection[Any], as_role: Any) -> None:
    mine, theirs = member(db, ORG, 1), member(db, OTHER_ORG, 1)
    follow(db, "releases", mine, theirs)
    with as_role("notify_admin", admin_of(ORG)) as cur:
        batch = value(cur, "SELECT notify.send_topic('releases', 'system', 'ours')")
        assert cur.execute("SELECT org_id, recipient_count FROM notify.notification_batches").fetchall() == [(ORG, 1)]
        become(cur, "notify_admin", admin_of(OTHER_ORG))
        # The other org's admin sees neither the batch nor its notifications.
        assert cur.execute("SELECT id FROM notify.notification_batches").fetchall() == []
        assert value(cur, "SELECT count(*) FROM notify.notifications WHERE batch_id = %s", batch) == 0
        assert received(cur, batch) == [mine]


def test_a_replayed_key_answers_the_first_batch_and_another_request_is_refused(
    db: psycopg.Connection[Any], as_role: Any
) -> None:
    follow(db, "releases", member(db, ORG, 1))
    send = "SELECT notify.send_topic(%s, 'system', %s, idempotency_key => 'k1')"
    with as_role("notify_service", SERVICE_CLAIMS) as cur:
        first = value(cur, send, "releases", "v2")
        follow(db, "releases", member(db, ORG, 2))  # a new follower does not make it another request
        assert value(cur, send, "releases", "v2") == first
        assert refused(cur, send, "releases", "v3")[0] == "23505"
        assert value(cur, "SELECT count(*) FROM notify.notifications") == 1


# --- broadcasts ---------------------------------------------------------------------------------------------


def test_broadcast_preview_and_filters(db: psycopg.Connection[Any], as_role: Any) -> None:
    de = member(db, ORG, 1, locale="de-AT", tz="Europe/Vienna")
    en = member(db, ORG, 2, locale="en", tz="Europe/Vienna")
    de_ny = member(db, ORG, 3, locale="de", tz="America/New_York")
    outsider = member(db, OTHER_ORG, 1, locale="de")
    add_device(db, de)
    follow(db, "releases", en, de_ny)
    with as_role("notify_admin", admin_of(ORG)) as cur:
        preview = value(cur, "SELECT notify.broadcast_preview(%s, 'system', 'high')", ORG)
        assert preview == {
            "recipients": 3,
            "channels": {"in_app": 3, "push": 1, "email": 0, "email_digest": 3},
            "global_rate_per_minute": 10000,
        }
        assert value(cur, "SELECT notify.broadcast_preview(%s, 'system', locale => 'de')", ORG)["recipients"] == 2
        assert (
            value(cur, "SELECT notify.broadcast_preview(%s, 'system', timezone => 'Europe/Vienna')", ORG)["recipients"]
            == 2
        )
        assert value(cur, "SELECT notify.broadcast_preview(%s, 'system', topic => 'releases')", ORG)["recipients"] == 2
        batch = value(
            cur, "SELECT notify.broadcast(%s, 'system', 'Hallo', locale => 'de', timezone => 'Europe/Vienna')", ORG
        )
        assert received(cur, batch) == [de]
        audience = value(cur, "SELECT audience FROM notify.notification_batches WHERE id = %s", batch)
        assert audience == {"org_id": str(ORG), "locale": "de", "timezone": "Europe/Vienna"}
        # A DBA broadcasts to everyone.
        everyone = value(cur, "SELECT notify.broadcast(NULL, 'system', 'Maintenance tonight')")
        assert received(cur, everyone) == sorted([de, en, de_ny, outsider])


def test_broadcast_scope_and_bad_input(db: psycopg.Connection[Any], as_role: Any) -> None:
    member(db, ORG, 1)
    member(db, OTHER_ORG, 1)
    with as_role("notify_admin", admin_of(ORG)) as cur:
        for sql in ("broadcast(NULL, 'system', 'x')", "broadcast_preview(NULL, 'system')"):
            assert refused(cur, f"SELECT notify.{sql}") == (
                "42501",
                "only a DBA broadcasts to every org: an org admin names their org_id",
            )
        for sql in ("broadcast(%s, 'system', 'x')", "broadcast_preview(%s, 'system')"):
            assert refused(cur, f"SELECT notify.{sql}", OTHER_ORG) == (
                "P0002",
                f"no org {OTHER_ORG} in your scope: an org admin manages their own org only",
            )
        bad = [
            ("broadcast_preview(%s, 'system', locale => 'German')", "locale must be a language tag"),
            ("broadcast_preview(%s, 'system', timezone => 'Mars/Olympus')", 'unknown time zone "Mars/Olympus"'),
            ("broadcast_preview(%s, 'system', 'urgent')", "priority must be critical, high, normal or low"),
            ("broadcast_preview(%s, 'system', channels => ARRAY['sms'])", "channels must be some of"),
            ("broadcast_preview(%s, 'system', channels => '{}')", "channels must be some of"),
            ("broadcast_preview(%s, 'nope')", 'unknown notification type "nope"'),
            ("broadcast(%s, 'nope', 'x')", 'unknown notification type "nope"'),
            ("broadcast(%s, 'system', 'x', locale => 'x')", "locale must be a language tag"),
        ]
        for sql, message in bad:
            state, said = refused(cur, f"SELECT notify.{sql}", ORG)
            assert state == "22023" and said.startswith(message), (sql, said)
        # Refused by the notifications' own rules: nothing half-written.
        assert refused(cur, "SELECT notify.broadcast(%s, 'system', '   ')", ORG)[0] == "23514"
        assert value(cur, "SELECT count(*) FROM notify.notification_batches") == 0
    for role in ("notify_service", "notify_authenticated"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(role, SERVICE_CLAIMS) as cur:
            cur.execute("SELECT notify.broadcast(%s, 'system', 'x')", (ORG,))


def test_erasure_removes_the_users_subscriptions(db: psycopg.Connection[Any], as_role: Any) -> None:
    alice = member(db, ORG, 1)
    follow(db, "releases", alice)
    follow(db, "other", alice, muted=True)
    with as_role("notify_admin", admin_of(ORG)) as cur:
        counts = value(cur, "SELECT notify.erase_user(%s)", alice)
        assert counts["topic_subscriptions"] == 2
        become(cur, "notify_admin", DBA)
        assert value(cur, "SELECT count(*) FROM notify.topic_subscriptions") == 0


# --- REST ---------------------------------------------------------------------------------------------------


def test_a_user_manages_their_subscriptions_over_rest(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    alice = new_member(owner, ORG)
    me = user_headers(alice)
    assert ok(client.get(TOPICS, headers=me), 200) == {"items": []}
    made = ok(client.put(f"{TOPICS}/releases", headers=me), 201)
    assert made["topic"] == "releases" and made["muted"] is False
    assert ok(client.put(f"{TOPICS}/releases", json={"muted": True}, headers=me), 200)["muted"] is True
    ok(client.put(f"{TOPICS}/project:42", json={}, headers=me), 201)
    listed = ok(client.get(TOPICS, headers=me), 200)["items"]
    assert [(i["topic"], i["muted"]) for i in listed] == [("project:42", False), ("releases", True)]
    assert ok(client.delete(f"{TOPICS}/releases", headers=me), 204) is None
    assert error(client.delete(f"{TOPICS}/releases", headers=me), 404, "NOT_FOUND") == (
        "you are not subscribed to this topic"
    )
    # Bad names and bodies: 422, nothing written.
    for path, body in [("with%20space", None), ("-x", None), ("a" * 201, None), ("ok", {"muted": None})]:
        response = client.put(f"{TOPICS}/{path}", json=body, headers=me)
        assert response.status_code == 422, response.text
    assert error(client.put(f"{TOPICS}/ok", json={"muted": "yes"}, headers=me), 422, "VALIDATION_ERROR")
    assert [i["topic"] for i in ok(client.get(TOPICS, headers=me), 200)["items"]] == ["project:42"]
    # Someone nobody told notifyd about is no recipient yet.
    stranger = user_headers(uuid.uuid4())
    assert "not a recipient yet" in error(client.put(f"{TOPICS}/releases", headers=stranger), 404, "NOT_FOUND")
    # Only end users: services and admins manage subscriptions in SQL.
    for headers in (SERVICE, admin_headers(ORG)):
        error(client.get(TOPICS, headers=headers), 403, "FORBIDDEN")


def test_send_topic_and_broadcast_over_rest(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    org, other = uuid.uuid4(), uuid.uuid4()
    topic = f"t{uuid.uuid4().hex[:12]}"
    mine = [new_member(owner, org) for _ in range(3)]
    theirs = new_member(owner, other)
    for who in [*mine, theirs]:
        ok(client.put(f"{TOPICS}/{topic}", headers=user_headers(who)), 201)
    body = {"type": "system", "title": "v2 is out"}
    sent = client.post(f"{TOPICS}/{topic}/notifications", json=body, headers=SERVICE)
    answer = ok(sent, 202)
    assert answer["recipient_count"] == 4 and answer["status"] == "processing"
    assert "X-RateLimit-Limit" in sent.headers and "X-RateLimit-Remaining" in sent.headers
    replay = {**body, "idempotency_key": f"k-{topic}"}
    first = ok(client.post(f"{TOPICS}/{topic}/notifications", json=replay, headers=SERVICE), 202)
    assert ok(client.post(f"{TOPICS}/{topic}/notifications", json=replay, headers=SERVICE), 200) == first
    changed = {**replay, "title": "another"}
    error(client.post(f"{TOPICS}/{topic}/notifications", json=changed, headers=SERVICE), 422, "VALIDATION_ERROR")
    nobody = ok(client.post(f"{TOPICS}/nobody-{topic}/notifications", json=body, headers=SERVICE), 200)
    assert nobody == {"batch_id": None, "recipient_count": 0, "status": "completed"}
    error(client.post(f"{TOPICS}/bad%20name/notifications", json=body, headers=SERVICE), 422, "VALIDATION_ERROR")
    error(client.post(f"{TOPICS}/{topic}/notifications", json=body, headers=user_headers(mine[0])), 403, "FORBIDDEN")

    # An org admin: preview, then broadcast to their org; the batch's progress is theirs alone.
    admin, other_admin = admin_headers(org), admin_headers(other)
    audience: dict[str, Any] = {"org_id": str(org), "topic": topic}
    preview = ok(client.post(f"{BROADCASTS}/preview", json={**audience, "type": "system"}, headers=admin), 200)
    assert preview["recipients"] == 3 and preview["channels"]["in_app"] == 3
    assert preview["channels"]["email"] == 0  # no addresses
    made = ok(client.post(BROADCASTS, json={**audience, **body}, headers=admin), 202)
    assert made["recipient_count"] == 3
    status = ok(client.get(f"{BULK}/{made['batch_id']}", headers=admin), 200)
    assert status["counts"]["total"] == 3 and status["counts"]["created"] == 3
    error(client.get(f"{BULK}/{made['batch_id']}", headers=other_admin), 404, "NOT_FOUND")
    # Another org's admin: not found; every org: DBAs only.
    error(client.post(f"{BROADCASTS}/preview", json={**audience, "type": "system"}, headers=other_admin), 404,
          "NOT_FOUND")  # fmt: skip
    error(client.post(BROADCASTS, json={**audience, **body}, headers=other_admin), 404, "NOT_FOUND")
    error(client.post(BROADCASTS, json={**body, "org_id": None}, headers=admin), 403, "FORBIDDEN")
    dba = ok(client.post(f"{BROADCASTS}/preview", json={"org_id": None, "type": "system"}, headers=admin_headers(None)),
             200)  # fmt: skip
    assert dba["recipients"] >= 4
    # Bad bodies: 422.
    for bad in (
        {**audience, "type": "system", "locale": "German"},
        {**audience, "type": "system", "timezone": "Mars/Olympus"},
        {**audience, "type": "system", "priority": "urgent"},
        {"type": "system"},  # org_id must be said, even as null
        {**audience, "type": "system", "extra": 1},
    ):
        response = client.post(f"{BROADCASTS}/preview", json=bad, headers=admin)
        assert response.status_code == 422, (bad, response.text)
    for headers in (SERVICE, user_headers(mine[0])):
        error(client.post(BROADCASTS, json={**audience, **body}, headers=headers), 403, "FORBIDDEN")


def test_online_followers_get_a_topic_send_and_muted_ones_do_not(
    server: ServerProcess, client: httpx.Client, owner: psycopg.Connection[Any]
) -> None:
    follower, muted = new_member(owner, ORG), new_member(owner, ORG)
    topic = f"live-{uuid.uuid4().hex[:8]}"
    ok(client.put(f"{TOPICS}/{topic}", headers=user_headers(follower)), 201)
    ok(client.put(f"{TOPICS}/{topic}", json={"muted": True}, headers=user_headers(muted)), 201)

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with ws_for(server, follower) as ws_follower, ws_for(server, muted) as ws_muted:
            await settle(ws_follower)
            await settle(ws_muted)
            body = {"type": "system", "title": "Deploy finished"}
            await asyncio.to_thread(
                lambda: ok(client.post(f"{TOPICS}/{topic}/notifications", json=body, headers=SERVICE), 202)
            )
            return await recv_until(ws_follower, "notification"), await quiet(ws_muted, 1.0)

    got, nothing = asyncio.run(run())
    assert [n["title"] for n in notifications(got)] == ["Deploy finished"]
    assert notifications(nothing) == []
    rows = owner.execute(
        "SELECT user_id FROM notify.notifications WHERE title = 'Deploy finished' AND user_id = ANY(%s)",
        ([follower, muted],),
    ).fetchall()
    assert rows == [(follower,)]
