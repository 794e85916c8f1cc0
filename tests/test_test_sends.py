"""Self-service test sends have their own limit (rate_limit.test_sends_per_hour): they are critical, and
critical skips every other limit, so without it one user could spend the e-mail provider's quota.

The database decides (notify.send_test): REST answers 429 with Retry-After, SQL raises SQLSTATE NT429,
and a refused send writes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import user_conn
from tests.server import ServerProcess, make_token, wait_for
from tests.standins.resend import ResendService
from tests.test_email import emails_to, mail_env

TEST_ROUTE = "/api/v1/notifications/test"
LIMIT = 5  # the default of rate_limit.test_sends_per_hour
REFUSED = f"rate limited: test notifications are limited to {LIMIT} per hour"


def new_user(db: psycopg.Connection[Any], address: str) -> uuid.UUID:
    user = uuid.uuid4()
    db.execute("INSERT INTO notify.recipients (user_id, email) VALUES (%s, %s)", (user, address))
    return user


def written(db: psycopg.Connection[Any], user: uuid.UUID) -> tuple[Any, ...]:
    """What a test send writes: the user's notifications, their deliveries, and the user's buckets."""
    row = db.execute(
        """SELECT (SELECT count(*) FROM notify.notifications WHERE user_id = %(u)s),
                  (SELECT count(*) FROM notify.notification_deliveries d
                   JOIN notify.notifications n ON n.id = d.notification_id WHERE n.user_id = %(u)s),
                  (SELECT array_agg(ARRAY[channel, tokens::text, refreshed_at::text] ORDER BY channel)
                   FROM notify.rate_buckets WHERE user_id = %(u)s)""",
        {"u": user},
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_past_the_limit_rest_answers_429_with_retry_after_writes_nothing_and_resets(
    db: psycopg.Connection[Any], own_server: Any, own_worker: Any, resend_service: ResendService
) -> None:
    env = mail_env(resend_service)
    server: ServerProcess = own_server(**env)
    own_worker(**env)
    ada, bob = new_user(db, "ada@example.com"), new_user(db, "bob@example.com")
    as_ada = {"Authorization": f"Bearer {make_token(ada)}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for n in range(LIMIT):
            sent = client.post(TEST_ROUTE, json={"channel": "all"} if n % 2 else {"channel": "email"}, headers=as_ada)
            assert sent.status_code == 202, sent.text
        before = written(db, ada)
        for body in ({"channel": "email"}, {"channel": "in_app"}, {}):
            refused = client.post(TEST_ROUTE, json=body, headers=as_ada)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "RATE_LIMITED"
            assert refused.json()["error"]["message"] == REFUSED
            # The next token comes an hour / LIMIT after the last one was taken.
            assert 0 < int(refused.headers["Retry-After"]) <= 3600 // LIMIT
        assert written(db, ada) == before

        # Another user has a bucket of their own.
        as_bob = {"Authorization": f"Bearer {make_token(bob)}"}
        other = client.post(TEST_ROUTE, json={"channel": "email"}, headers=as_bob)
        assert other.status_code == 202, other.text

        # An hour later the bucket is full again.
        db.execute(
            "UPDATE notify.rate_buckets SET refreshed_at = refreshed_at - interval '1 hour'"
            " WHERE user_id = %s AND channel = 'test'",
            (ada,),
        )
        for _ in range(LIMIT):
            assert client.post(TEST_ROUTE, json={"channel": "email"}, headers=as_ada).status_code == 202
        assert client.post(TEST_ROUTE, json={"channel": "email"}, headers=as_ada).status_code == 429

    # The provider received exactly the allowed ones: 2 * LIMIT for ada (each send has one e-mail), 1 for bob.
    wait_for(lambda: len(emails_to(resend_service, "ada@example.com")) == 2 * LIMIT, what="ada's test e-mails")
    wait_for(lambda: len(emails_to(resend_service, "bob@example.com")) == 1, what="bob's test e-mail")
    wait_for(lambda: db.execute(
        "SELECT count(*) = 0 FROM notify.notification_deliveries WHERE channel = 'email' AND status = 'pending'"
    ).fetchone() == (True,), what="every e-mail settled")  # fmt: skip
    assert len(emails_to(resend_service, "ada@example.com")) == 2 * LIMIT


def test_sql_callers_meet_the_same_limit_and_it_refills_with_the_clock(db: psycopg.Connection[Any]) -> None:
    db.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    db.execute("UPDATE notify.settings SET value = '3' WHERE key = 'rate_limit.test_sends_per_hour'")
    start = dt.datetime(2026, 12, 7, 9, tzinfo=dt.UTC)
    user = new_user(db, "ada@example.com")
    with user_conn(db, str(user)) as conn:
        conn.execute("SELECT set_config('notify.clock', %s, false)", (start.isoformat(),))
        for _ in range(3):
            conn.execute("SELECT notify.send_test('in_app')")
        before = written(db, user)
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("SELECT notify.send_test('all')")
        assert refused.value.sqlstate == "NT429"
        assert refused.value.diag.message_primary == "rate limited: test notifications are limited to 3 per hour"
        assert refused.value.diag.message_detail == "retry after 1200 seconds"
        assert written(db, user) == before
        # 20 minutes (an hour / 3) bring one token back, and only one.
        conn.execute("SELECT set_config('notify.clock', %s, false)", ((start + dt.timedelta(minutes=20)).isoformat(),))
        conn.execute("SELECT notify.send_test('in_app')")
        with pytest.raises(psycopg.Error, match="limited to 3 per hour"):
            conn.execute("SELECT notify.send_test('in_app')")
    assert written(db, user)[0] == 4
