"""The notify SQL API as a service and an end user call it (through the non-superuser login)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from tests.conftest import dsn, service_conn, user_conn
from tests.server import wait_for

SERVICE = ("notify_service", {"sub": "billing", "role": "service"})
USER = str(uuid.UUID(int=1))
OTHER = str(uuid.UUID(int=2))


def columns(db: psycopg.Connection[Any], notification_id: Any) -> dict[str, Any]:
    cur = db.execute(
        """SELECT user_id::text, type, title, body, priority, data, channels, template_id,
                               idempotency_key, group_key, read_at, deleted_at, group_count, seq > 0 AS has_seq
                        FROM notify.notifications WHERE id = %s""",
        (notification_id,),
    )
    row = cur.fetchone()
    assert row is not None and cur.description is not None
    return dict(zip([c.name for c in cur.description], row, strict=True))


def test_plain_insert_behaves_like_send(db: psycopg.Connection[Any], service: psycopg.Connection[Any]) -> None:
    args = (USER, "task", "Review PR", "PR #1 needs you", "high", '{"url": "/pr/1"}')
    sent = service.execute("SELECT notify.send(%s, %s, %s, %s, %s, %s::jsonb)", args).fetchone()
    inserted = service.execute(
        """INSERT INTO notify.notifications (user_id, type, title, body, priority, data)
                                  VALUES (%s, %s, %s, %s, %s, %s::jsonb) RETURNING id""",
        args,
    ).fetchone()
    assert sent and inserted
    assert columns(db, sent[0]) == columns(db, inserted[0])
    # Both created the bare recipient once and advanced its seq twice.
    assert db.execute(
        "SELECT email, locale, timezone, last_seq FROM notify.recipients WHERE user_id = %s", (USER,)
    ).fetchone() == (None, "en", "UTC", 2)


def test_send_takes_named_arguments(db: psycopg.Connection[Any], service: psycopg.Connection[Any]) -> None:
    row = service.execute(
        """SELECT notify.send(user_id => %s, type => 'billing', title => 'Invoice',
                                                channels => ARRAY['email'], group_key => 'inv')""",
        (USER,),
    ).fetchone()
    assert row is not None
    got = columns(db, row[0])
    assert (got["priority"], got["channels"], got["group_key"], got["body"]) == ("normal", ["email"], "inv", "")


def test_idempotency_key_returns_the_first_id_and_creates_nothing(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any]
) -> None:
    first = service.execute("SELECT notify.send(%s, 'task', 'one', idempotency_key => 'k')", (USER,)).fetchone()
    again = service.execute("SELECT notify.send(%s, 'task', 'one', idempotency_key => 'k')", (USER,)).fetchone()
    assert first == again
    other = service.execute("SELECT notify.send(%s, 'task', 'one', idempotency_key => 'k')", (OTHER,)).fetchone()
    assert other != first
    plain = service.execute(
        """INSERT INTO notify.notifications (user_id, type, title, idempotency_key)
                               VALUES (%s, 'task', 'three', 'k') RETURNING id""",
        (USER,),
    ).fetchall()
    assert plain == []
    assert db.execute("SELECT count(*) FROM notify.notifications").fetchone() == (2,)


def test_concurrent_sends_with_one_idempotency_key_create_one(db: psycopg.Connection[Any]) -> None:
    ids: list[Any] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        with service_conn(db) as conn:
            barrier.wait()
            row = conn.execute("SELECT notify.send(%s, 'task', 'x', idempotency_key => 'race')", (USER,)).fetchone()
            assert row is not None
            ids.append(row[0])

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert db.execute("SELECT count(*) FROM notify.notifications").fetchone() == (1,)


def test_send_bulk_creates_one_per_distinct_user_in_one_batch(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any]
) -> None:
    users = [str(uuid.uuid4()) for _ in range(250)]
    row = service.execute(
        "SELECT notify.send_bulk(%s::uuid[], 'system', 'Maintenance at 22:00')", (users + users[:10],)
    ).fetchone()
    assert row is not None
    batch = row[0]
    assert db.execute(
        "SELECT recipient_count, created_by FROM notify.notification_batches WHERE id = %s", (batch,)
    ).fetchone() == (250, "billing")
    assert db.execute(
        "SELECT count(*), count(DISTINCT user_id) FROM notify.notifications WHERE batch_id = %s", (batch,)
    ).fetchone() == (250, 250)


def test_send_bulk_replay_with_idempotency_key_returns_the_batch(service: psycopg.Connection[Any]) -> None:
    users = [str(uuid.uuid4()) for _ in range(3)]
    first = service.execute(
        "SELECT notify.send_bulk(%s::uuid[], 'system', 'x', idempotency_key => 'b1')", (users,)
    ).fetchone()
    again = service.execute(
        "SELECT notify.send_bulk(%s::uuid[], 'system', 'x', idempotency_key => 'b1')", (users,)
    ).fetchone()
    assert first == again


BAD_SENDS = [
    ("unknown type", "SELECT notify.send(%(u)s, 'nope', 'x')", "22023", 'unknown notification type "nope"'),
    (
        "unknown priority",
        "SELECT notify.send(%(u)s, 'task', 'x', priority => 'urgent')",
        "23514",
        "priority must be critical, high, normal or low",
    ),
    ("empty title", "SELECT notify.send(%(u)s, 'task', '  ')", "23514", "a notification needs a title or a template"),
    ("no title", "SELECT notify.send(%(u)s, 'task')", "23514", "a notification needs a title or a template"),
    (
        "title too long",
        "SELECT notify.send(%(u)s, 'task', repeat('x', 256))",
        "23514",
        "title must be at most 255 characters",
    ),
    (
        "data not an object",
        "SELECT notify.send(%(u)s, 'task', 'x', data => '[1, 2]')",
        "23514",
        "data must be a JSON object of at most 16 KB",
    ),
    ("data not JSON", "SELECT notify.send(%(u)s, 'task', 'x', data => '{oops')", "22P02", "invalid input syntax"),
    (
        "data too big",
        "SELECT notify.send(%(u)s, 'task', 'x', data => jsonb_build_object('k', repeat(md5(random()::text), 1000)))",
        "23514",
        "data must be a JSON object of at most 16 KB",
    ),
    (
        "unknown channel",
        "SELECT notify.send(%(u)s, 'task', 'x', channels => ARRAY['fax'])",
        "23514",
        "channels must be in_app, push, email, webhook, chat or sms",
    ),
    ("no user", "SELECT notify.send(NULL, 'task', 'x')", "23502", "a notification needs a user_id"),
    (
        "bulk unknown type",
        "SELECT notify.send_bulk(ARRAY[%(u)s]::uuid[], 'nope', 'x')",
        "22023",
        'unknown notification type "nope"',
    ),
    (
        "bulk too many",
        "SELECT notify.send_bulk(ARRAY(SELECT gen_random_uuid() FROM generate_series(1, 10001)), 'system', 'x')",
        "22003",
        "send_bulk takes at most 10000 recipients, got 10001",
    ),
    (
        "bulk empty",
        "SELECT notify.send_bulk('{}'::uuid[], 'system', 'x')",
        "22023",
        "send_bulk needs at least one user_id",
    ),
    (
        "bulk null user",
        "SELECT notify.send_bulk(ARRAY[%(u)s, NULL]::uuid[], 'system', 'x')",
        "22004",
        "user_ids must not contain NULL",
    ),
    (
        "bad time zone",
        "SELECT notify.upsert_recipient_v2(%(u)s, timezone => 'Mars/Olympus')",
        "22023",
        'unknown time zone "Mars/Olympus"',
    ),
    (
        "bad e-mail",
        "SELECT notify.upsert_recipient_v2(%(u)s, email => 'not-an-address')",
        "23514",
        "email must be an address of at most 254 characters",
    ),
    (
        "bad locale",
        "SELECT notify.upsert_recipient_v2(%(u)s, locale => 'english please')",
        "23514",
        "locale must be a language tag such as en or pt-BR",
    ),
]


@pytest.mark.parametrize(("sql", "sqlstate", "message"), [pytest.param(*case[1:], id=case[0]) for case in BAD_SENDS])
def test_bad_input_is_a_clear_error_and_writes_nothing(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], sql: str, sqlstate: str, message: str
) -> None:
    with pytest.raises(psycopg.Error) as raised:
        service.execute(sql, {"u": USER})
    assert raised.value.sqlstate == sqlstate
    assert sqlstate[:2] in ("22", "23")
    assert message in str(raised.value)
    assert db.execute("""SELECT (SELECT count(*) FROM notify.notifications) + (SELECT count(*) FROM notify.recipients)
                         + (SELECT count(*) FROM notify.notification_batches)""").fetchone() == (0,)


def test_upsert_recipient_keeps_what_a_null_argument_leaves_out(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any]
) -> None:
    org = str(uuid.uuid4())
    service.execute("SELECT notify.upsert_recipient_v2(%s, 'a@example.com', 'pt_BR', 'Europe/Berlin', %s)", (USER, org))
    service.execute("SELECT notify.upsert_recipient_v2(%s, locale => 'de')", (USER,))
    assert db.execute(
        "SELECT email, locale, timezone, org_id::text FROM notify.recipients WHERE user_id = %s", (USER,)
    ).fetchone() == ("a@example.com", "de", "Europe/Berlin", org)


def test_read_status_and_unread_count(db: psycopg.Connection[Any], service: psycopg.Connection[Any]) -> None:
    ids = [
        service.execute("SELECT notify.send(%s, %s, 'x')", (USER, t)).fetchone()[0]  # type: ignore[index]
        for t in ("task", "task", "user")
    ]
    service.execute("SELECT notify.send(%s, 'task', 'not yours')", (OTHER,))
    with user_conn(db, USER) as me, user_conn(db, OTHER) as other:
        assert me.execute("SELECT notify.unread_count()").fetchone() == (
            {"count": 3, "by_type": {"task": 2, "user": 1}},
        )
        assert other.execute("SELECT notify.mark_read(%s)", (ids[0],)).fetchone() == (None,)
        read_at = me.execute("SELECT notify.mark_read(%s)", (ids[0],)).fetchone()
        assert read_at is not None and read_at[0] is not None
        assert me.execute("SELECT notify.mark_read(%s)", (ids[0],)).fetchone() == read_at
        assert me.execute("SELECT notify.unread_count()").fetchone() == (
            {"count": 2, "by_type": {"task": 1, "user": 1}},
        )
        assert me.execute("SELECT notify.mark_all_read()").fetchone() == (2,)
        assert me.execute("SELECT notify.mark_all_read()").fetchone() == (0,)
        assert me.execute("SELECT notify.unread_count()").fetchone() == ({"count": 0, "by_type": {}},)
        assert other.execute("SELECT notify.unread_count()").fetchone() == ({"count": 1, "by_type": {"task": 1}},)


def test_every_change_gives_a_new_seq_and_a_no_op_does_not(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any]
) -> None:
    first = service.execute("SELECT notify.send(%s, 'task', 'a')", (USER,)).fetchone()[0]  # type: ignore[index]
    service.execute("SELECT notify.send(%s, 'task', 'b')", (USER,))

    def seq() -> int:
        row = db.execute("SELECT seq FROM notify.notifications WHERE id = %s", (first,)).fetchone()
        assert row is not None
        return int(row[0])

    assert seq() == 1
    with user_conn(db, USER) as me:
        me.execute("SELECT notify.mark_read(%s)", (first,))
        assert seq() == 3
        me.execute("SELECT notify.mark_read(%s)", (first,))
        assert seq() == 3
        me.execute("UPDATE notify.notifications SET deleted_at = now() WHERE id = %s", (first,))
        assert seq() == 4


def test_seq_follows_commit_order_per_user(db: psycopg.Connection[Any]) -> None:
    """A later transaction for the same user waits for the earlier one's commit, so its seq is larger."""
    early = service_conn(db)
    early.autocommit = False
    early_id = early.execute("SELECT notify.send(%s, 'task', 'early')", (USER,)).fetchone()[0]  # type: ignore[index]
    late_id: list[Any] = []

    def late() -> None:
        with service_conn(db) as conn:
            late_id.append(conn.execute("SELECT notify.send(%s, 'task', 'late')", (USER,)).fetchone()[0])  # type: ignore[index]

    thread = threading.Thread(target=late)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive(), "the later send must wait for the recipient's row lock"
    early.commit()
    thread.join(5)
    early.close()
    seqs = dict(db.execute("SELECT id, seq FROM notify.notifications").fetchall())
    assert seqs[late_id[0]] > seqs[early_id]


def test_send_bulk_gives_each_recipient_a_seq_after_theirs_in_commit_order(db: psycopg.Connection[Any]) -> None:
    """send_bulk takes its recipients' seqs in one statement: each is above the recipient's earlier ones,
    and a single send to one of them that holds the recipient's lock commits first and keeps the lower seq."""
    users = sorted(str(uuid.uuid4()) for _ in range(3))
    with service_conn(db) as conn:
        for _ in range(2):
            conn.execute("SELECT notify.send(%s, 'task', 'before')", (users[0],))
    early = service_conn(db)
    early.autocommit = False
    early.execute("SELECT notify.send(%s, 'task', 'single')", (users[1],))
    bulk = service_conn(db)
    bulk_pid = bulk.info.backend_pid
    errors: list[BaseException] = []

    def send_bulk() -> None:
        try:
            bulk.execute("SELECT notify.send_bulk(%s::uuid[], 'system', 'bulk')", (users,))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    thread = threading.Thread(target=send_bulk)
    thread.start()
    wait_for(
        lambda: (
            db.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (bulk_pid,)).fetchone()
            == (True,)
        ),
        what="send_bulk waiting for the recipient's row lock the single send holds",
    )
    early.commit()
    thread.join(10)
    early.close()
    bulk.close()
    assert errors == []
    with service_conn(db) as conn:
        conn.execute("SELECT notify.send(%s, 'task', 'after')", (users[1],))
    for user in users:
        titles = [
            r[0] for r in db.execute("SELECT title FROM notify.notifications WHERE user_id = %s ORDER BY seq", (user,))
        ]
        assert titles == {users[0]: ["before", "before", "bulk"], users[1]: ["single", "bulk", "after"]}.get(
            user, ["bulk"]
        )
    assert db.execute(
        "SELECT count(*) FROM notify.recipients AS r WHERE r.user_id = ANY (%s::uuid[]) "
        "AND r.last_seq = (SELECT max(n.seq) FROM notify.notifications AS n WHERE n.user_id = r.user_id)",
        (users,),
    ).fetchone() == (3,), "the recipients' last_seq is the seq they gave out last"


@pytest.mark.parametrize("offset", [-3, -1, 1, 5], ids=lambda o: f"last_seq{o:+d}")
def test_a_forged_bulk_marker_cannot_choose_a_seq(db: psycopg.Connection[Any], offset: int) -> None:
    """notify.bulk_batch is a setting anyone can set: an INSERT naming a real batch, with a seq of its choosing and
    the marker set, still gets the next seq, taken under the recipient's lock."""
    user = str(uuid.uuid4())
    with service_conn(db) as conn:
        batch = conn.execute("SELECT notify.send_bulk(ARRAY[%s]::uuid[], 'system', 'bulk')", (user,)).fetchone()
        for _ in range(3):
            conn.execute("SELECT notify.send(%s, 'task', 'single')", (user,))
    assert batch is not None
    last = db.execute("SELECT last_seq FROM notify.recipients WHERE user_id = %s", (user,)).fetchone()
    assert last is not None
    forged = last[0] + offset
    with service_conn(db) as conn:
        conn.execute("SELECT set_config('notify.bulk_batch', %s, true)", (f"{batch[0]} in_app",))
        conn.execute(
            "INSERT INTO notify.notifications (user_id, type, title, batch_id, seq) "
            "VALUES (%s, 'task', 'forged', %s, %s)",
            (user, batch[0], forged),
        )
    row = db.execute(
        "SELECT n.seq, r.last_seq FROM notify.notifications AS n JOIN notify.recipients AS r USING (user_id) "
        "WHERE n.user_id = %s AND n.title = 'forged'",
        (user,),
    ).fetchone()
    assert row is not None
    assert row[0] == last[0] + 1 == row[1], "the forged row got the next seq, taken under the lock"


def test_a_statement_signals_once_with_an_id_and_never_the_data(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any]
) -> None:
    listener = psycopg.connect(**dsn(db, login=False), autocommit=True)
    listener.execute("LISTEN notify_notifications")
    users = [str(uuid.uuid4()) for _ in range(10_000)]
    service.execute("SELECT notify.send_bulk(%s::uuid[], 'system', 'Secret title')", (users,))
    received = list(listener.notifies(timeout=2.0))
    listener.close()
    assert len(received) == 1
    xid = received[0].payload
    assert xid.isdigit() and len(xid) < 20
    assert db.execute("SELECT count(*) FROM notify.notifications WHERE changed_xid = %s::xid8", (xid,)).fetchone() == (
        10_000,
    )


def test_a_rolled_back_transaction_signals_nothing(db: psycopg.Connection[Any]) -> None:
    listener = psycopg.connect(**dsn(db, login=False), autocommit=True)
    listener.execute("LISTEN notify_notifications")
    conn = service_conn(db)
    conn.autocommit = False
    conn.execute("SELECT notify.send(%s, 'task', 'never')", (USER,))
    conn.rollback()
    conn.close()
    assert list(listener.notifies(timeout=0.5)) == []
    listener.close()
    assert db.execute("SELECT count(*) FROM notify.notifications").fetchone() == (0,)


def test_the_clock_can_be_pinned_only_where_the_dba_allows_it(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any]
) -> None:
    service.execute("SET notify.clock = '2030-01-01 09:00+00'")
    assert service.execute("SELECT notify.now() < '2030-01-01'").fetchone() == (True,)
    db.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    assert service.execute("SELECT notify.now() = '2030-01-01 09:00+00'").fetchone() == (True,)
    nid = service.execute("SELECT notify.send(%s, 'task', 'x')", (USER,)).fetchone()[0]  # type: ignore[index]
    assert db.execute(
        "SELECT created_at = '2030-01-01 09:00+00' FROM notify.notifications WHERE id = %s", (nid,)
    ).fetchone() == (True,)


def test_a_dba_changes_a_policy_value_and_a_wrong_one_is_refused(db: psycopg.Connection[Any], as_role: Any) -> None:
    with as_role("notify_admin", {"sub": "dba"}) as cur:
        cur.execute("UPDATE notify.settings SET value = '5' WHERE key = 'batch.max_recipients'")
        assert cur.rowcount == 1
        cur.execute("SELECT notify.setting('batch.max_recipients')")
        assert cur.fetchone() == (5,)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="must be a JSON integer"):
            cur.execute("UPDATE notify.settings SET value = '\"lots\"' WHERE key = 'batch.max_recipients'")
    with as_role("notify_admin", {"sub": "x", "org_id": str(uuid.uuid4())}) as cur:
        cur.execute("UPDATE notify.settings SET value = '5' WHERE key = 'batch.max_recipients'")
        assert cur.rowcount == 0
    with pytest.raises(psycopg.errors.InvalidParameterValue, match='unknown setting "nope"'):
        db.execute("SELECT notify.setting('nope')")
