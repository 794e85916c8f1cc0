"""Rate limits as token buckets: excess waits its turn (never dropped), a full queue is refused (429 / NT429)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import dsn
from tests.server import make_token, wait_for
from tests.test_delivery_sql import add_device

USER = uuid.UUID(int=31)
HOUR = 3600.0


def pinned_sender(db: psycopg.Connection[Any], clock: dt.datetime) -> psycopg.Connection[Any]:
    conn = psycopg.connect(**dsn(db, login=True), autocommit=True)
    conn.execute("SET ROLE notify_service")
    conn.execute("SELECT set_config('notify.clock', %s, false)", (clock.isoformat(),))
    return conn


def settings(db: psycopg.Connection[Any], **values: str) -> None:
    for key, value in {"clock.pinnable": "true", **values}.items():
        db.execute("UPDATE notify.settings SET value = %s::jsonb WHERE key = %s", (value, key.replace("__", ".")))


def concurrent_sends(db: psycopg.Connection[Any], clock: dt.datetime, total: int, channels: str) -> None:
    """total sends from 10 connections at once, half by notify.send and half by plain INSERT."""
    errors: list[BaseException] = []
    start = threading.Barrier(10)

    def sender(index: int) -> None:
        try:
            with pinned_sender(db, clock) as conn:
                start.wait()
                for i in range(total // 10):
                    if (index + i) % 2:
                        conn.execute("SELECT notify.send(%s, 'user', 'Liked', channels => %s)", (USER, channels))
                    else:
                        conn.execute(
                            "INSERT INTO notify.notifications (user_id, type, title, channels) "
                            "VALUES (%s, 'user', 'Liked', %s)",
                            (USER, channels),
                        )
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def offsets(db: psycopg.Connection[Any], sql: str, clock: dt.datetime) -> list[float]:
    return sorted(0.0 if r[0] is None else (r[0] - clock).total_seconds() for r in db.execute(sql))


def test_200_concurrent_sends_never_exceed_the_limits_and_none_is_lost(db: psycopg.Connection[Any]) -> None:
    add_device(db, USER)
    settings(db, rate_limit__max_queued="1000")
    clock = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
    concurrent_sends(db, clock, 200, "{in_app,push}")
    assert db.execute("SELECT count(*) FROM notify.notifications").fetchone() == (200,)
    in_app = offsets(db, "SELECT held_until FROM notify.notifications", clock)
    push = offsets(db, "SELECT scheduled_for FROM notify.notification_deliveries WHERE channel = 'push'", clock)
    assert len(push) == 200, "every push waits its turn: none dropped"
    # A token bucket of capacity C refilled at C per hour: by t seconds, at most C + C*t/3600 went.
    for limit, planned in ((100, in_app), (10, push)):
        for position, at in enumerate(planned, 1):
            assert position <= limit + limit * at / HOUR + 1e-6, (limit, position, at)
        assert planned.count(0.0) == limit, "the first C go at once"
    assert in_app[-1] == pytest.approx(100 * 36), "the 100th excess in-app event waits 100 × 36 s"
    held = db.execute(
        "SELECT count(*) FROM notify.notification_deliveries WHERE channel = 'in_app' AND status = 'pending' "
        "AND reason LIKE 'in-app rate limit (100 per hour)%'"
    ).fetchone()
    assert held == (100,)


def test_held_events_are_released_when_their_token_frees(db: psycopg.Connection[Any], own_worker: Any) -> None:
    # Sent "an hour ago" on the pinned clock: every held event is due now, so a real worker releases it.
    settings(db, rate_limit__in_app_per_hour="10")
    clock = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    concurrent_sends(db, clock, 20, "{in_app}")
    first_seqs = dict(db.execute("SELECT id, seq FROM notify.notifications WHERE held_until IS NOT NULL").fetchall())
    assert len(first_seqs) == 10
    own_worker(WORKER_HEARTBEAT_INTERVAL="1", WORKER_STALLED_AFTER="3")
    wait_for(
        lambda: db.execute("SELECT count(*) FROM notify.notifications WHERE held_until IS NULL").fetchone() == (20,),
        timeout=30,
        what="every held in-app event released",
    )
    for notification_id, seq in db.execute("SELECT id, seq FROM notify.notifications"):
        if notification_id in first_seqs:
            assert seq > first_seqs[notification_id], "released with a new seq, so the WebSocket sends it"
    assert db.execute(
        "SELECT count(*) FROM notify.delivery_decisions WHERE channel = 'in_app' AND status = 'sent'"
    ).fetchone() == (20,)
    assert db.execute(
        "SELECT count(*) FROM notify.notification_deliveries WHERE channel = 'in_app' AND status = 'sent'"
    ).fetchone() == (10,), "only the held ones had a row, which their release marked sent"


def test_a_full_queue_is_refused_with_nt429_and_nothing_half_written(
    db: psycopg.Connection[Any], own_server: Any
) -> None:
    settings(db, rate_limit__in_app_per_hour="2", rate_limit__max_queued="3")
    conn = pinned_sender(db, dt.datetime.now(dt.UTC))
    for _ in range(5):
        conn.execute("SELECT notify.send(%s, 'user', 'Followed')", (USER,))
    with pytest.raises(psycopg.Error) as refused:
        conn.execute("SELECT notify.send(%s, 'user', 'Followed')", (USER,))
    assert refused.value.sqlstate == "NT429" and "3 in_app deliveries waiting" in str(refused.value)
    assert refused.value.diag.message_detail is not None and "retry after" in refused.value.diag.message_detail
    assert db.execute("SELECT count(*) FROM notify.notifications").fetchone() == (5,)
    # Critical bypasses per-user limits.
    conn.execute("SELECT notify.send(%s, 'security', 'New login', priority => 'critical')", (USER,))
    conn.close()

    server = own_server()
    answer = httpx.post(
        f"{server.url}/api/v1/notifications",
        json={"user_id": str(USER), "type": "user", "title": "Followed"},
        headers={"Authorization": f"Bearer {make_token('social', role='service')}"},
    )
    assert answer.status_code == 429, answer.text
    assert answer.json()["error"]["code"] == "RATE_LIMITED"
    assert int(answer.headers["Retry-After"]) > 0
    assert db.execute("SELECT count(*) FROM notify.notifications").fetchone() == (6,)


def test_bulk_sends_share_a_global_rate_and_are_throttled_not_refused(
    db: psycopg.Connection[Any], own_server: Any
) -> None:
    settings(db, rate_limit__global_per_minute="60")
    db.execute("UPDATE notify.global_rate_bucket SET tokens = 60, refreshed_at = now()")
    users = [uuid.UUID(int=5000 + i) for i in range(100)]
    for user in users:
        add_device(db, user)
    server = own_server()
    answer = httpx.post(
        f"{server.url}/api/v1/notifications/bulk",
        json={"user_ids": [str(u) for u in users], "type": "system", "title": "Maintenance tonight",
              "channels": ["in_app", "push"]},
        headers={"Authorization": f"Bearer {make_token('ops', role='service')}"},
    )  # fmt: skip
    assert answer.status_code == 202, answer.text
    assert answer.headers["X-RateLimit-Limit"] == "60"
    assert answer.headers["X-RateLimit-Remaining"] == "0"
    assert int(answer.headers["X-RateLimit-Reset"]) > 0
    waits = [
        r[0]
        for r in db.execute(
            "SELECT extract(epoch FROM scheduled_for - created_at) FROM notify.notification_deliveries "
            "WHERE channel = 'push' AND scheduled_for IS NOT NULL ORDER BY scheduled_for"
        )
    ]
    assert len(waits) == 40, "60 go at once, the other 40 one per second"
    assert float(waits[0]) == pytest.approx(1, abs=0.5) and float(waits[-1]) == pytest.approx(40, abs=0.5)


def test_a_template_sent_from_sql_spends_its_in_app_token_when_rendered(db: psycopg.Connection[Any]) -> None:
    settings(db, rate_limit__in_app_per_hour="1")
    conn = pinned_sender(db, dt.datetime.now(dt.UTC))
    ids = [
        conn.execute(
            "SELECT notify.send(%s, 'task', template => 'task_assigned', "
            """template_vars => '{"task_title": "Review", "assigned_by": "Grace"}')""",
            (USER,),
        ).fetchone()[0]  # type: ignore[index]
        for _ in range(2)
    ]
    conn.close()
    worker = psycopg.connect(**dsn(db, login=True), autocommit=True)
    worker.execute("SET ROLE notify_worker")
    for notification_id in ids:
        worker.execute(
            "SELECT notify_private.store_rendering(%s, 'Review', 'Grace assigned you a task', '{}'::jsonb)",
            (notification_id,),
        )
    worker.close()
    rows = db.execute(
        "SELECT n.held_until IS NULL, d.status, d.reason FROM notify.notifications n "
        "JOIN notify.notification_deliveries d ON d.notification_id = n.id AND d.channel = 'in_app' "
        "ORDER BY n.created_at, n.seq"
    ).fetchall()
    assert rows == [
        (True, "sent", None),
        (False, "pending", "in-app rate limit (1 per hour): its real-time event waits for a token"),
    ]


def test_a_bucket_is_a_row_only_where_its_limit_can_bite(db: psycopg.Connection[Any]) -> None:
    """Up to half a bucket's capacity per refill time, sends spend no row; from then on the bucket is a row,
    started as if every recent notification had spent from it, and the limit holds exactly as before."""
    add_device(db, USER)
    settings(db, rate_limit__in_app_per_hour="8", rate_limit__push_per_hour="4")
    clock = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)

    def buckets() -> dict[str, float]:
        rows = db.execute("SELECT channel, tokens FROM notify.rate_buckets WHERE user_id = %s", (USER,))
        return {r[0]: r[1] for r in rows}

    def send(conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT notify.send(%s, 'user', 'Liked', channels => '{in_app,push}')", (USER,))

    with pinned_sender(db, clock) as conn:
        send(conn)
        send(conn)
        assert buckets() == {}, "two sends are half of push's 4 per hour: no bucket written"
        send(conn)
        assert buckets() == {"push": 1.0}, "the third push: the bucket starts with the two before it spent"
        send(conn)
        send(conn)
        assert buckets() == {"push": -1.0, "in_app": 3.0}
    push = offsets(db, "SELECT scheduled_for FROM notify.notification_deliveries WHERE channel = 'push'", clock)
    assert push == [0.0, 0.0, 0.0, 0.0, HOUR / 4], "the fifth push waits a quarter hour, as from a full bucket"
    # An hour later the earlier sends are too old to count: again no bucket is needed for a quiet user.
    other = uuid.UUID(int=32)
    add_device(db, other)
    with pinned_sender(db, clock) as conn:
        for _ in range(2):
            conn.execute("SELECT notify.send(%s, 'user', 'Liked', channels => '{in_app,push}')", (other,))
    with pinned_sender(db, clock + dt.timedelta(hours=2)) as conn:
        for _ in range(2):
            conn.execute("SELECT notify.send(%s, 'user', 'Liked', channels => '{in_app,push}')", (other,))
    assert db.execute("SELECT count(*) FROM notify.rate_buckets WHERE user_id = %s", (other,)).fetchone() == (0,)


def test_a_bulk_send_spends_in_app_tokens_as_single_sends_do(db: psycopg.Connection[Any]) -> None:
    """send_bulk reads all its recipients' in-app buckets at once; one at its limit still waits for its token."""
    settings(db, rate_limit__in_app_per_hour="2")
    clock = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
    busy, quiet = uuid.UUID(int=33), uuid.UUID(int=34)
    with pinned_sender(db, clock) as conn:
        for _ in range(2):
            conn.execute("SELECT notify.send(%s, 'user', 'Liked', channels => '{in_app}')", (busy,))
        conn.execute("SELECT notify.send_bulk(%s::uuid[], 'user', 'News', channels => '{in_app}')", ([busy, quiet],))
    held = dict(db.execute("SELECT user_id, held_until FROM notify.notifications WHERE title = 'News'").fetchall())
    assert held == {busy: clock + dt.timedelta(seconds=HOUR / 2), quiet: None}
    assert db.execute(
        "SELECT n.user_id, d.status, d.scheduled_for FROM notify.notification_deliveries AS d "
        "JOIN notify.notifications AS n ON n.id = d.notification_id WHERE n.title = 'News' AND d.status = 'pending'"
    ).fetchall() == [(busy, "pending", clock + dt.timedelta(seconds=HOUR / 2))], "the release job finds it"
    assert db.execute("SELECT user_id FROM notify.rate_buckets").fetchall() == [(busy,)]
