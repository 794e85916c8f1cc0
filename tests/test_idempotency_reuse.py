"""An idempotency key is bound to its first request: a replay of the same request answers the first id, a
different request under the same key is refused — 422 on REST, SQLSTATE 23505 from notify.send and
notify.send_bulk — and writes nothing, also when the two race.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.conftest import service_conn
from tests.server import make_token

REUSED = "idempotency key reused with a different request"
API = "/api/v1/notifications"
SERVICE = {"Authorization": f"Bearer {make_token('billing', role='service')}"}

# One request, and for each argument a change of it that makes it another request.
FIRST: dict[str, Any] = {
    "type": "task", "title": "Review PR #1", "body": "Alice asked you.", "priority": "normal",
    "data": {"url": "https://app.example.com/pr/1", "n": 1}, "channels": ["in_app", "email"],
    "expires_at": "2030-01-01T00:00:00+00:00", "send_at": None, "group_key": None,
}  # fmt: skip
DIFFERENT: list[tuple[str, Any]] = [
    ("type", "system"),
    ("title", "Review PR #2"),
    ("body", "Bob asked you."),
    ("priority", "high"),
    ("priority", "critical"),
    ("data", {"url": "https://app.example.com/pr/1", "n": 2}),
    ("data", {"url": "https://app.example.com/pr/1"}),
    ("channels", ["in_app"]),
    ("channels", None),
    ("expires_at", "2030-01-01T00:00:01+00:00"),
    ("expires_at", None),
    ("send_at", "2029-01-01T00:00:00+00:00"),
    ("group_key", "pr-1"),
]
# Other spellings of the first request: the same request, so a replay.
SAME: list[tuple[str, Any]] = [
    ("channels", ["email", "in_app"]),
    ("expires_at", "2030-01-01T01:00:00+01:00"),
    ("data", {"n": 1, "url": "https://app.example.com/pr/1"}),
    ("title", "  Review PR #1 "),
]
IDS = [f"{field}={value}" for field, value in DIFFERENT]


def new_user(db: psycopg.Connection[Any]) -> uuid.UUID:
    user = uuid.uuid4()
    db.execute("INSERT INTO notify.recipients (user_id, email) VALUES (%s, 'ada@example.com')", (user,))
    return user


def call(conn: psycopg.Connection[Any], function: str, key: str, **arguments: Any) -> uuid.UUID:
    """notify.<function>(<arguments by name>, idempotency_key => key): the id it answers."""
    args = {name: Jsonb(value) if isinstance(value, dict) else value for name, value in arguments.items()}
    names = ", ".join(f"{name} => %({name})s" for name in args)
    cursor = conn.execute(f"SELECT notify.{function}({names}, idempotency_key => %(key)s)", {"key": key, **args})
    row = cursor.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def sql_send(conn: psycopg.Connection[Any], user: uuid.UUID, key: str, **request: Any) -> uuid.UUID:
    return call(conn, "send", key, user_id=user, **request)


def written(db: psycopg.Connection[Any]) -> tuple[Any, ...]:
    row = db.execute(
        """SELECT (SELECT count(*) FROM notify.notifications), (SELECT count(*) FROM notify.notification_folds),
                  (SELECT count(*) FROM notify.notification_batches),
                  (SELECT count(*) FROM notify.notification_deliveries),
                  (SELECT coalesce(max(seq), 0) FROM notify.notifications)"""
    ).fetchone()
    assert row is not None
    return tuple(row)


# --- SQL ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "different"),
    [(f, v, True) for f, v in DIFFERENT] + [(f, v, False) for f, v in SAME],
    ids=IDS + [f"same:{f}={v}" for f, v in SAME],
)
def test_sql_send_refuses_a_key_reused_with_another_request_and_replays_the_same_one(
    db: psycopg.Connection[Any], field: str, value: Any, different: bool
) -> None:
    user = new_user(db)
    with service_conn(db) as service:
        first = sql_send(service, user, "k", **FIRST)
        before = written(db)
        if different:
            with pytest.raises(psycopg.errors.UniqueViolation) as refused:
                sql_send(service, user, "k", **{**FIRST, field: value})
            assert refused.value.diag.message_primary == REUSED
            assert refused.value.diag.column_name == "idempotency_key"
        else:  # the same request spelled otherwise
            assert sql_send(service, user, "k", **{**FIRST, field: value}) == first
        assert written(db) == before
        assert sql_send(service, user, "k", **FIRST) == first


def test_sql_template_sends_compare_their_template_and_vars(db: psycopg.Connection[Any]) -> None:
    user = new_user(db)
    request = {"type": "task", "template": "task_assigned",
               "template_vars": {"task_title": "Fix it", "assigned_by": "Grace"}}  # fmt: skip
    with service_conn(db) as service:
        first = sql_send(service, user, "t", **request)
        before = written(db)
        for change in ({"template_vars": {"task_title": "Fix that", "assigned_by": "Grace"}},
                       {"template_vars": {"task_title": "Fix it"}}, {"template": None, "title": "Fix it"}):  # fmt: skip
            with pytest.raises(psycopg.errors.UniqueViolation, match=REUSED):
                sql_send(service, user, "t", **{**request, **change})
        assert written(db) == before
        assert sql_send(service, user, "t", **request) == first


def test_a_folded_notification_keeps_its_request_too(db: psycopg.Connection[Any]) -> None:
    user = new_user(db)
    folding = {**FIRST, "group_key": "pr"}
    with service_conn(db) as service:
        group = sql_send(service, user, "first", **folding)
        assert sql_send(service, user, "second", **{**folding, "title": "Review PR #2"}) == group
        assert db.execute("SELECT count(*) FROM notify.notification_folds").fetchone() == (1,)
        before = written(db)
        with pytest.raises(psycopg.errors.UniqueViolation, match=REUSED):
            sql_send(service, user, "second", **{**folding, "title": "Review PR #3"})
        assert written(db) == before
        assert sql_send(service, user, "second", **{**folding, "title": "Review PR #2"}) == group


def test_a_key_is_per_recipient_and_keys_from_before_digests_replay_as_before(db: psycopg.Connection[Any]) -> None:
    ada, bob = new_user(db), new_user(db)
    with service_conn(db) as service:
        first = sql_send(service, ada, "k", **FIRST)
        # Keys are unique per recipient: bob's is another key, so another notification.
        assert sql_send(service, bob, "k", **{**FIRST, "title": "other"}) != first
        # A key stored before migration 0015 has no digest: any replay answers its first id.
        db.execute("UPDATE notify.notifications SET request_digest = NULL WHERE id = %s", (first,))
        assert sql_send(service, ada, "k", **{**FIRST, "title": "other"}) == first


BULK = {"type": "task", "title": "Maintenance tonight", "priority": "normal", "data": {}}


def sql_bulk(conn: psycopg.Connection[Any], users: list[uuid.UUID], key: str, **request: Any) -> uuid.UUID:
    return call(conn, "send_bulk", key, user_ids=users, **request)


def test_sql_send_bulk_refuses_a_key_reused_with_other_recipients_or_content(db: psycopg.Connection[Any]) -> None:
    users = [new_user(db) for _ in range(3)]
    with service_conn(db) as service:
        batch = sql_bulk(service, users[:2], "b", **BULK)
        before = written(db)
        for recipients, change in (
            (users, {}),
            (users[:1], {}),
            ([users[0], users[2]], {}),
            (users[:2], {"title": "Maintenance tomorrow"}),
            (users[:2], {"data": {"window": "2h"}}),
            (users[:2], {"priority": "high"}),
            (users[:2], {"channels": ["in_app"]}),
        ):
            with pytest.raises(psycopg.errors.UniqueViolation, match=REUSED):
                sql_bulk(service, recipients, "b", **{**BULK, **change})
        assert written(db) == before
        # The same recipients in another order, or named twice, are the same request.
        assert sql_bulk(service, [users[1], users[0], users[1]], "b", **BULK) == batch
        assert written(db) == before


def test_two_different_requests_racing_with_one_key_make_one_row(db: psycopg.Connection[Any]) -> None:
    user = new_user(db)
    barrier = threading.Barrier(8)
    sent: list[tuple[str, uuid.UUID]] = []
    refused: list[tuple[str, str]] = []

    def send(title: str) -> None:
        with service_conn(db) as conn:
            barrier.wait()
            try:
                sent.append((title, sql_send(conn, user, "race", **{**FIRST, "title": title})))
            except psycopg.errors.UniqueViolation as error:
                refused.append((title, str(error.diag.message_primary)))

    threads = [threading.Thread(target=send, args=(f"title {n % 2}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = db.execute("SELECT id, title FROM notify.notifications WHERE user_id = %s", (user,)).fetchall()
    assert len(rows) == 1
    [(row_id, winner)] = rows
    assert sent and all(title == winner and notification == row_id for title, notification in sent)
    assert len(refused) == 8 - len(sent) and all(title != winner and m == REUSED for title, m in refused)
    assert len(sent) == 4  # the four that asked for what was made got its id


def test_two_different_bulk_sends_racing_with_one_key_make_one_batch(db: psycopg.Connection[Any]) -> None:
    users = [new_user(db) for _ in range(2)]
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def send(title: str) -> None:
        with service_conn(db) as conn:
            barrier.wait()
            try:
                sql_bulk(conn, users, "bulk-race", **{**BULK, "title": title})
                outcomes.append(title)
            except psycopg.errors.UniqueViolation as error:
                outcomes.append(str(error.diag.message_primary))

    threads = [threading.Thread(target=send, args=(f"title {n % 2}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    titles = db.execute("SELECT DISTINCT title FROM notify.notifications").fetchall()
    assert len(titles) == 1 and db.execute("SELECT count(*) FROM notify.notification_batches").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM notify.notifications").fetchone() == (2,)
    assert sorted(outcomes) == sorted([titles[0][0]] * 3 + [REUSED] * 3)


# --- REST ---------------------------------------------------------------------------------------------


def rest_body(user: uuid.UUID, **changes: Any) -> dict[str, Any]:
    body = {"user_id": str(user), **FIRST, **changes}
    return {name: value for name, value in body.items() if value is not None}


def refused_with_reuse(answer: httpx.Response) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == {"code": "VALIDATION_ERROR", "message": REUSED, "field": "idempotency_key",
                                      "hint": answer.json()["error"]["hint"]}  # fmt: skip
    assert "replay must repeat the first request" in answer.json()["error"]["hint"]


@pytest.mark.parametrize("route", [API, "/api/v1/internal/notifications/send"])
@pytest.mark.parametrize(("field", "value"), DIFFERENT, ids=IDS)
def test_rest_answers_422_to_a_key_reused_with_another_body(
    client: httpx.Client, owner: psycopg.Connection[Any], route: str, field: str, value: Any
) -> None:
    user = new_user(owner)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post(route, json=rest_body(user), headers={**SERVICE, **key})
    assert first.status_code == 202, first.text
    before = written(owner)
    refused_with_reuse(client.post(route, json=rest_body(user, **{field: value}), headers={**SERVICE, **key}))
    # The key in the body instead of the header: the same answer.
    body = {**rest_body(user, **{field: value}), "idempotency_key": key["Idempotency-Key"]}
    refused_with_reuse(client.post(route, json=body, headers=SERVICE))
    assert written(owner) == before
    replay = client.post(route, json=rest_body(user), headers={**SERVICE, **key})
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    assert written(owner) == before


def test_rest_template_sends_compare_the_template_and_its_vars(
    client: httpx.Client, owner: psycopg.Connection[Any]
) -> None:
    user = new_user(owner)
    key = {**SERVICE, "Idempotency-Key": str(uuid.uuid4())}
    body = {"user_id": str(user), "type": "task", "template_id": "task_assigned",
            "template_vars": {"task_title": "Fix it", "assigned_by": "Grace"}}  # fmt: skip
    first = client.post(API, json=body, headers=key)
    assert first.status_code == 202, first.text
    before = written(owner)
    for changed in ({**body, "template_vars": {"task_title": "Fix that", "assigned_by": "Grace"}},
                    {**body, "priority": "high"}, {**body, "data": {"x": 1}}):  # fmt: skip
        refused_with_reuse(client.post(API, json=changed, headers=key))
    assert written(owner) == before
    # The rendering is not the request: the recipient's language changed, the replay is still one.
    owner.execute("UPDATE notify.recipients SET locale = 'de' WHERE user_id = %s", (user,))
    replay = client.post(API, json=body, headers=key)
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]


def test_rest_bulk_answers_422_to_a_key_reused_with_other_recipients_or_content(
    client: httpx.Client, owner: psycopg.Connection[Any]
) -> None:
    users = [str(new_user(owner)) for _ in range(3)]
    key = {**SERVICE, "Idempotency-Key": str(uuid.uuid4())}
    body = {"user_ids": users[:2], "type": "task", "title": "Maintenance tonight"}
    first = client.post(f"{API}/bulk", json=body, headers=key)
    assert first.status_code == 202, first.text
    before = written(owner)
    for changed in ({**body, "user_ids": users}, {**body, "user_ids": users[1:]}, {**body, "title": "Tomorrow"},
                    {**body, "send_email": True}, {**body, "priority": "low"}):  # fmt: skip
        refused_with_reuse(client.post(f"{API}/bulk", json=changed, headers=key))
    assert written(owner) == before
    replay = client.post(f"{API}/bulk", json={**body, "user_ids": users[1::-1]}, headers=key)
    assert replay.status_code == 200 and replay.json()["batch_id"] == first.json()["batch_id"]


def test_two_different_bodies_racing_through_rest_make_one_row(
    client: httpx.Client, owner: psycopg.Connection[Any]
) -> None:
    user = new_user(owner)
    key = {**SERVICE, "Idempotency-Key": str(uuid.uuid4())}
    barrier = threading.Barrier(6)
    answers: list[tuple[str, httpx.Response]] = []

    def post(title: str) -> None:
        barrier.wait()
        answers.append((title, client.post(API, json=rest_body(user, title=title), headers=key)))

    threads = [threading.Thread(target=post, args=(f"title {n % 2}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [(row_id, winner)] = owner.execute(
        "SELECT id::text, title FROM notify.notifications WHERE user_id = %s", (user,)
    ).fetchall()
    for title, answer in answers:
        if title == winner:
            assert answer.status_code in (200, 202) and answer.json()["id"] == row_id, answer.text
        else:
            refused_with_reuse(answer)
    assert sorted(a.status_code for _, a in answers) == [200, 200, 202, 422, 422, 422]
