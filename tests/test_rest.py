"""The REST notification center against a real notifyd (docs/rest.md): auth, RLS through HTTP, no 500s."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.server import make_token

API = "/api/v1/notifications"
INTERNAL = "/api/v1/internal/notifications/send"
ROUTE_TEMPLATES = [
    ("POST", API),
    ("POST", f"{API}/bulk"),
    ("GET", f"{API}/bulk/{{id}}"),
    ("POST", INTERNAL),
    ("GET", API),
    ("GET", f"{API}/unread-count"),
    ("POST", f"{API}/read-all"),
    ("GET", f"{API}/{{id}}"),
    ("PATCH", f"{API}/{{id}}/read"),
    ("DELETE", f"{API}/{{id}}"),
    ("POST", f"{API}/{{id}}/actions/dismiss"),
    ("POST", f"{API}/seen"),
    ("GET", f"{API}/seen"),
    ("POST", f"{API}/{{id}}/archive"),
    ("POST", f"{API}/{{id}}/unarchive"),
    ("POST", f"{API}/{{id}}/snooze"),
]


def user_headers(user: uuid.UUID, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user, **claims)}"}


SERVICE = {"Authorization": f"Bearer {make_token('billing', role='service')}"}


def ok(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return str(body["error"]["message"])


def send(client: httpx.Client, user: uuid.UUID, **fields: Any) -> str:
    body = {"user_id": str(user), "type": "task", "title": "Review PR #123", **fields}
    return str(ok(client.post(API, json=body, headers=SERVICE), 202)["id"])


def fill(route: str, some_id: str) -> str:
    return route.replace("{id}", some_id)


# --- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "route"), ROUTE_TEMPLATES)
def test_every_route_needs_credentials(client: httpx.Client, method: str, route: str) -> None:
    path = fill(route, str(uuid.uuid4()))
    message = error(client.request(method, path, json={}), 401, "UNAUTHORIZED")
    assert message == "missing credentials: send Authorization: Bearer <token> or X-Internal-Service-Key"
    expired = {"Authorization": f"Bearer {make_token(uuid.uuid4(), exp_in=-3600)}"}
    assert error(client.request(method, path, headers=expired), 401, "UNAUTHORIZED") == "token expired"
    forged = {"Authorization": f"Bearer {make_token(uuid.uuid4(), secret='not-the-secret-but-long-enough-for-hs256')}"}
    assert error(client.request(method, path, headers=forged), 401, "UNAUTHORIZED") == "invalid token"
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert error(client.request(method, path, headers=basic), 401, "UNAUTHORIZED") == (
        "the Authorization header must be: Bearer <token>"
    )


@pytest.mark.parametrize(("method", "route"), ROUTE_TEMPLATES)
def test_every_route_refuses_the_wrong_kind_of_caller(client: httpx.Client, method: str, route: str) -> None:
    path = fill(route, str(uuid.uuid4()))
    senders_route = route.startswith(f"{API}/bulk") or (method == "POST" and route in (API, INTERNAL))
    wrong = user_headers(uuid.uuid4()) if senders_route else SERVICE
    message = error(client.request(method, path, json={}, headers=wrong), 403, "FORBIDDEN")
    assert message == (
        "only services and admins send notifications"
        if senders_route
        else "this route is for end users (a token with role authenticated)"
    )


def test_service_key_flow(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    row = owner.execute("SELECT notify.create_service_key(%s)", (name,)).fetchone()
    assert row is not None
    key = row[0]
    assert key.startswith("nsk_") and len(key) == 68
    stored = owner.execute(
        "SELECT key_hash = sha256(convert_to(%s, 'UTF8')), position(convert_to(%s, 'UTF8') IN key_hash) "
        "FROM notify.service_keys WHERE name = %s",
        (key, key, name),
    ).fetchone()
    assert stored == (True, 0), "only the hash is stored"
    user = uuid.uuid4()
    body = {"user_id": str(user), "type": "task", "title": "Task Updated", "channels": ["push", "in_app"]}
    headers = {"X-Internal-Service-Key": key, "X-Service-Name": name}

    sent = ok(client.post(INTERNAL, json=body, headers=headers), 202)
    assert sent["status"] == "queued"
    found = owner.execute("SELECT user_id, title FROM notify.notifications WHERE id = %s", (sent["notification_id"],))
    assert found.fetchone() == (user, "Task Updated")
    # The same key opens the other sending routes.
    # The user has no device yet: push is skipped, so the notification goes out in-app only.
    assert ok(client.post(API, json=body, headers=headers), 202)["channels"] == ["in_app"]

    wrong = {"X-Internal-Service-Key": key + "x", "X-Service-Name": name}
    assert error(client.post(INTERNAL, json=body, headers=wrong), 401, "UNAUTHORIZED") == "invalid service key"
    other_name = {"X-Internal-Service-Key": key, "X-Service-Name": "someone-else"}
    assert error(client.post(INTERNAL, json=body, headers=other_name), 401, "UNAUTHORIZED") == "invalid service key"
    nameless = {"X-Internal-Service-Key": key}
    assert error(client.post(INTERNAL, json=body, headers=nameless), 401, "UNAUTHORIZED") == (
        "X-Service-Name is required with X-Internal-Service-Key"
    )
    # A service key is a sender, not a user.
    assert error(client.get(API, headers=headers), 403, "FORBIDDEN")

    revoked = owner.execute("SELECT notify.revoke_service_key(%s)", (name,)).fetchone()
    assert revoked == (True,)
    assert error(client.post(INTERNAL, json=body, headers=headers), 401, "UNAUTHORIZED") == "invalid service key"
    assert owner.execute("SELECT notify.revoke_service_key(%s)", (name,)).fetchone() == (False,)


def test_only_dbas_manage_service_keys(owner: psycopg.Connection[Any]) -> None:
    with owner.transaction(force_rollback=True):
        owner.execute("SET LOCAL ROLE notify_admin")
        owner.execute(
            "SELECT set_config('request.jwt.claims', %s, true)",
            (json.dumps({"sub": "admin", "role": "admin", "org_id": str(uuid.uuid4())}),),
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            owner.execute("SELECT notify.create_service_key('sneaky')")
    for role in ("notify_service", "notify_authenticated", "notify_worker"):
        with owner.transaction(force_rollback=True):
            owner.execute(f"SET LOCAL ROLE {role}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                owner.execute("SELECT notify.create_service_key('sneaky')")


# --- sending --------------------------------------------------------------------------------------


def test_create_is_queued_and_in_the_database(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    user = uuid.uuid4()
    body = {
        "user_id": str(user),
        "type": "task",
        "priority": "high",
        "title": "New Task Assigned",
        "body": "You have been assigned a new task: 'Review PR #123'",
        "data": {"task_id": "t1", "actions": [{"label": "Dismiss", "action": "dismiss"}]},
        "channels": ["in_app", "email"],
        "group_key": "pr-123",
        "send_at": "2030-01-01T09:00:00+00:00",
        "expires_at": "2030-02-01T09:00:00Z",
    }
    created = ok(client.post(API, json=body, headers=SERVICE), 202)
    assert set(created) == {"id", "notification_id", "status", "channels", "created_at"}
    assert created["notification_id"] == created["id"], "both create routes answer both fields"
    # The user has no e-mail address: that delivery is skipped, so only in-app is listed.
    assert created["status"] == "queued" and created["channels"] == ["in_app"]
    row = owner.execute(
        "SELECT user_id, priority, title, data, channels, group_key, send_at::text, seq FROM notify.notifications "
        "WHERE id = %s",
        (created["id"],),
    ).fetchone()
    assert row is not None
    assert row[:6] == (user, "high", "New Task Assigned", body["data"], ["in_app", "email"], "pr-123")
    assert row[6] == "2030-01-01 09:00:00+00" and row[7] >= 1


def test_an_idempotency_key_replay_answers_200_with_the_first_id(
    client: httpx.Client, owner: psycopg.Connection[Any]
) -> None:
    user = uuid.uuid4()
    body = {"user_id": str(user), "type": "task", "title": "once"}
    first = ok(client.post(API, json=body, headers={**SERVICE, "Idempotency-Key": "k-1"}), 202)
    again = ok(client.post(API, json=body, headers={**SERVICE, "Idempotency-Key": "k-1"}), 200)
    assert again["id"] == first["id"]
    by_field = ok(client.post(API, json={**body, "idempotency_key": "k-1"}, headers=SERVICE), 200)
    assert by_field["id"] == first["id"]
    internal = ok(client.post(INTERNAL, json={**body, "idempotency_key": "k-1"}, headers=SERVICE), 200)
    assert internal["notification_id"] == first["id"]
    count = owner.execute("SELECT count(*) FROM notify.notifications WHERE user_id = %s", (user,)).fetchone()
    assert count == (1,)
    assert ok(client.post(API, json={**body, "idempotency_key": "k-2"}, headers=SERVICE), 202)["id"] != first["id"]
    clash = client.post(API, json={**body, "idempotency_key": "a"}, headers={**SERVICE, "Idempotency-Key": "b"})
    assert error(clash, 422, "VALIDATION_ERROR") == "the Idempotency-Key header and the idempotency_key field differ"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"not json", "Invalid JSON"),
        (b"", "Invalid JSON"),
        (b"[]", "body: Input should be an object"),
        (b'{"type": "task", "title": "x"}', "user_id: Field required"),
        (b'{"user_id": "nope", "type": "task", "title": "x"}', "user_id: Input should be a valid UUID"),
        (b'{"user_id": "%(u)s", "type": "task", "title": "x", "extra": 1}', "extra: Extra inputs are not permitted"),
        (b'{"user_id": "%(u)s", "type": "task", "title": 5}', "title: Input should be a valid string"),
        (b'{"user_id": "%(u)s", "type": "task", "title": "x", "priority": "urgent"}', "priority: Input should be"),
        (b'{"user_id": "%(u)s", "type": "task", "title": "x", "channels": ["fax"]}', "channels.0: Input should be"),
        (b'{"user_id": "%(u)s", "type": "task", "title": "x", "channels": []}', "channels: List should have"),
        (b'{"user_id": "%(u)s", "type": "task", "title": "x", "data": [1]}', "data: Input should be an object"),
        (b'{"user_id": "%(u)s", "type": "task", "title": "x", "send_at": "2030-01-01T00:00:00"}', "timezone"),
        (b'{"user_id": "%(u)s", "type": "tweet", "title": "x"}', 'unknown notification type "tweet"'),
        (b'{"user_id": "%(u)s", "type": "task", "title": " "}', "a notification needs a title or a template"),
    ],
)
@pytest.mark.parametrize("route", [API, INTERNAL])
def test_bad_create_bodies_are_422(client: httpx.Client, route: str, content: bytes, fragment: str) -> None:
    body = content.replace(b"%(u)s", str(uuid.uuid4()).encode())
    headers = {**SERVICE, "Content-Type": "application/json"}
    assert fragment in error(client.post(route, content=body, headers=headers), 422, "VALIDATION_ERROR")


def test_bulk_send_status_and_limit(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    users = [uuid.uuid4() for _ in range(3)]
    body = {"user_ids": [str(u) for u in [*users, users[0]]], "type": "system", "priority": "high",
            "title": "System Maintenance", "body": "in 1 hour", "data": {}, "send_email": True}  # fmt: skip
    accepted = ok(client.post(f"{API}/bulk", json=body, headers={**SERVICE, "Idempotency-Key": "bulk-1"}), 202)
    assert accepted["recipient_count"] == 3 and accepted["status"] == "processing"
    batch_id = accepted["batch_id"]
    rows = owner.execute(
        "SELECT user_id, channels FROM notify.notifications WHERE batch_id = %s ORDER BY user_id", (batch_id,)
    ).fetchall()
    assert rows == [(u, ["in_app", "push", "email"]) for u in sorted(users)]
    replay = ok(client.post(f"{API}/bulk", json=body, headers={**SERVICE, "Idempotency-Key": "bulk-1"}), 200)
    assert replay["batch_id"] == batch_id

    first = owner.execute(
        "SELECT id FROM notify.notifications WHERE batch_id = %s AND user_id = %s", (batch_id, users[0])
    ).fetchone()
    assert first is not None
    ok(client.patch(f"{API}/{first[0]}/read", headers=user_headers(users[0])), 200)
    batch = ok(client.get(f"{API}/bulk/{batch_id}", headers=SERVICE), 200)
    assert batch["batch_id"] == batch_id and batch["type"] == "system" and batch["created_by"] == "billing"
    # In-app sent to all three; push skipped (no device) and e-mail skipped (no address) for each.
    assert batch["counts"] == {"total": 3, "created": 3, "read": 1, "unread": 2, "deleted": 0,
                               "actions_taken": 0, "deliveries": {"sent": 3, "skipped": 6}}  # fmt: skip
    assert batch["status"] == "completed"

    assert error(client.get(f"{API}/bulk/{uuid.uuid4()}", headers=SERVICE), 404, "NOT_FOUND") == "batch not found"
    assert error(client.get(f"{API}/bulk/not-a-uuid", headers=SERVICE), 404, "NOT_FOUND")

    too_many = {"user_ids": [str(uuid.uuid4()) for _ in range(10_001)], "type": "system", "title": "x"}
    message = error(client.post(f"{API}/bulk", json=too_many, headers=SERVICE), 400, "BAD_REQUEST")
    assert message == "send_bulk takes at most 10000 recipients, got 10001"
    assert owner.execute(
        "SELECT count(*) FROM notify.notifications WHERE user_id = %s", (too_many["user_ids"][0],)
    ).fetchone() == (0,)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"user_ids": [], "type": "system", "title": "x"}, "user_ids: List should have at least 1 item"),
        ({"user_ids": ["x"], "type": "system", "title": "x"}, "user_ids.0: Input should be a valid UUID"),
        ({"type": "system", "title": "x"}, "user_ids: Field required"),
        ({"user_ids": [str(uuid.uuid4())], "type": "nope", "title": "x"}, 'unknown notification type "nope"'),
        ({"user_ids": [str(uuid.uuid4())], "type": "system", "title": "x", "send_email": "maybe"}, "send_email"),
    ],
)
def test_bad_bulk_bodies_are_422(client: httpx.Client, body: dict[str, Any], fragment: str) -> None:
    assert fragment in error(client.post(f"{API}/bulk", json=body, headers=SERVICE), 422, "VALIDATION_ERROR")


# --- the notification center ----------------------------------------------------------------------


def test_get_read_delete_and_other_users(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    alice, mallory = uuid.uuid4(), uuid.uuid4()
    nid = send(client, alice, priority="high", data={"task_id": "t1"})
    # Two devices, one failed and one delivered: the channel shows the furthest along.
    for status_of_device in ("failed", "delivered"):
        owner.execute(
            "WITH device AS (INSERT INTO notify.push_subscriptions (user_id, kind, fcm_token, token_hash) "
            "VALUES (%(u)s, 'fcm', 'enc1.x.y', sha256(gen_random_uuid()::text::bytea)) RETURNING id) "
            "INSERT INTO notify.notification_deliveries (notification_id, user_id, channel, status, subscription_id) "
            "SELECT %(n)s, %(u)s, 'push', %(s)s, id FROM device",
            {"n": nid, "u": alice, "s": status_of_device},
        )
    # Alice had no address when it was sent (e-mail skipped, on the notification row); a row that went out wins.
    owner.execute(
        "INSERT INTO notify.notification_deliveries (notification_id, user_id, channel, status) "
        "VALUES (%s, %s, 'email', 'sent')",
        (nid, alice),
    )
    got = ok(client.get(f"{API}/{nid}", headers=user_headers(alice)), 200)
    assert got["id"] == nid and got["priority"] == "high" and got["data"] == {"task_id": "t1"}
    assert got["read_at"] is None and got["seq"] >= 1
    assert got["delivery_status"] == {"in_app": "sent", "push": "delivered", "email": "sent"}

    for method, path in [("GET", f"{API}/{nid}"), ("PATCH", f"{API}/{nid}/read"), ("DELETE", f"{API}/{nid}"),
                         ("POST", f"{API}/{nid}/actions/dismiss")]:  # fmt: skip
        assert error(client.request(method, path, headers=user_headers(mallory)), 404, "NOT_FOUND") == (
            "notification not found"
        )
        for bad_id in ("not-a-uuid", "123", str(uuid.uuid4())):
            response = client.request(method, path.replace(nid, bad_id), headers=user_headers(alice))
            error(response, 404, "NOT_FOUND")
    state = owner.execute("SELECT read_at, deleted_at, action_taken FROM notify.notifications WHERE id = %s", (nid,))
    assert state.fetchone() == (None, None, None), "another user's requests changed nothing"

    read = ok(client.patch(f"{API}/{nid}/read", headers=user_headers(alice)), 200)
    assert read["id"] == nid and read["read_at"] is not None
    again = ok(client.patch(f"{API}/{nid}/read", headers=user_headers(alice)), 200)
    assert again["read_at"] == read["read_at"]
    in_sql = owner.execute("SELECT read_at IS NOT NULL FROM notify.notifications WHERE id = %s", (nid,)).fetchone()
    assert in_sql == (True,)

    response = client.delete(f"{API}/{nid}", headers=user_headers(alice))
    assert response.status_code == 204 and response.content == b""
    in_sql = owner.execute("SELECT deleted_at IS NOT NULL FROM notify.notifications WHERE id = %s", (nid,)).fetchone()
    assert in_sql == (True,), "a soft delete keeps the row"
    error(client.get(f"{API}/{nid}", headers=user_headers(alice)), 404, "NOT_FOUND")
    error(client.delete(f"{API}/{nid}", headers=user_headers(alice)), 404, "NOT_FOUND")
    assert ok(client.get(API, headers=user_headers(alice)), 200)["items"] == []


def test_read_all_and_unread_count(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    user, bystander = uuid.uuid4(), uuid.uuid4()
    for kind in ("task", "task", "user"):
        send(client, user, type=kind)
    send(client, bystander)
    counts = ok(client.get(f"{API}/unread-count", headers=user_headers(user)), 200)
    assert counts == {"count": 3, "by_type": {"task": 2, "user": 1}}
    assert ok(client.get(API, headers=user_headers(user)), 200)["unread_count"] == 3
    assert ok(client.post(f"{API}/read-all", headers=user_headers(user)), 200) == {"updated_count": 3}
    assert ok(client.post(f"{API}/read-all", headers=user_headers(user)), 200) == {"updated_count": 0}
    unread = owner.execute(
        "SELECT user_id, count(*) FROM notify.notifications WHERE user_id IN (%s, %s) AND read_at IS NULL "
        "GROUP BY user_id",
        (user, bystander),
    ).fetchall()
    assert unread == [(bystander, 1)], "read-all touched only the caller's rows"
    assert ok(client.get(f"{API}/unread-count", headers=user_headers(user)), 200) == {"count": 0, "by_type": {}}


def test_list_filters_and_sorts(client: httpx.Client) -> None:
    user = uuid.uuid4()
    made = {}
    for title, kind, priority in [("a", "task", "low"), ("b", "user", "critical"), ("c", "task", "high"),
                                  ("d", "system", "normal"), ("e", "task", "critical")]:  # fmt: skip
        made[title] = send(client, user, title=title, type=kind, priority=priority)
    ok(client.patch(f"{API}/{made['c']}/read", headers=user_headers(user)), 200)
    send(client, uuid.uuid4(), title="someone else's")

    def titles(**params: Any) -> list[str]:
        page = ok(client.get(API, params=params, headers=user_headers(user)), 200)
        assert set(page) == {"items", "unread_count", "next_cursor", "has_more"}
        return [item["title"] for item in page["items"]]

    assert titles() == ["e", "d", "c", "b", "a"]
    assert titles(sort="newest") == ["e", "d", "c", "b", "a"]
    assert titles(sort="oldest") == ["a", "b", "c", "d", "e"]
    assert titles(sort="priority") == ["e", "b", "c", "d", "a"]
    assert titles(type="task") == ["e", "c", "a"]
    assert titles(priority="critical") == ["e", "b"]
    assert titles(is_read="true") == ["c"]
    assert titles(is_read="false", type="task", sort="oldest") == ["a", "e"]
    assert titles(type="billing") == []
    item = ok(client.get(API, params={"limit": 1}, headers=user_headers(user)), 200)["items"][0]
    assert set(item) >= {"id", "type", "priority", "title", "body", "data", "read_at", "created_at",
                         "delivery_status", "seq"}  # fmt: skip

    invalid: list[tuple[dict[str, str | int], str]] = [
        ({"limit": 0}, "limit: Input should be greater than or equal to 1"),
        ({"limit": 101}, "limit: Input should be less than or equal to 100"),
        ({"limit": "ten"}, "limit: Input should be a valid integer"),
        ({"sort": "random"}, "sort: Input should be 'newest', 'oldest' or 'priority'"),
        ({"priority": "urgent"}, "priority: Input should be"),
        ({"is_read": "perhaps"}, "is_read: Input should be a valid boolean"),
        ({"cursor": "!!!"}, "cursor is not valid"),
        ({"cursor": "eyJzb3J0IjoibmV3ZXN0In0"}, "cursor is not valid"),
    ]
    for params, fragment in invalid:
        response = client.get(API, params=params, headers=user_headers(user))
        assert fragment in error(response, 422, "VALIDATION_ERROR")
    page = ok(client.get(API, params={"limit": 2, "sort": "oldest"}, headers=user_headers(user)), 200)
    assert page["has_more"] and page["next_cursor"]
    wrong_sort = client.get(API, params={"cursor": page["next_cursor"]}, headers=user_headers(user))
    assert error(wrong_sort, 422, "VALIDATION_ERROR") == "cursor is not valid"


@pytest.mark.parametrize("sort", ["newest", "oldest", "priority"])
def test_pagination_sees_each_row_once_while_rows_arrive(
    client: httpx.Client, owner: psycopg.Connection[Any], sort: str
) -> None:
    user = uuid.uuid4()
    # One statement: 30 rows with the very same created_at, so only the id tiebreak orders them.
    existing = {
        str(r[0])
        for r in owner.execute(
            "SELECT notify.send(%s, 'task', 'old ' || i, "
            "                   priority => (ARRAY['low', 'normal', 'high', 'critical'])[i %% 4 + 1]) "
            "FROM generate_series(1, 30) AS i",
            (user,),
        ).fetchall()
    }
    assert len(existing) == 30
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 4, "sort": sort, **({"cursor": cursor} if cursor else {})}
        page = ok(client.get(API, params=params, headers=user_headers(user)), 200)
        seen += [item["id"] for item in page["items"]]
        pages += 1
        # New rows (of every priority) arrive between pages.
        owner.execute(
            "SELECT notify.send(%s, 'task', 'new', priority => p) FROM unnest(ARRAY['low','critical']) AS p", (user,)
        )
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
        assert pages < 50
    assert len(seen) == len(set(seen)), "no row twice"
    assert existing <= set(seen), "every row that existed before the walk"


def test_actions_are_recorded_and_announced(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    user, other = uuid.uuid4(), uuid.uuid4()
    offered = [
        {"label": "View", "url": "/tasks/1", "primary": True},
        {"label": "Dismiss", "action": "dismiss"},
        {"label": "Approve", "action": "approve"},
    ]
    data = {"actions": offered}
    nid = send(client, user, data=data)
    owner.execute("LISTEN notify_actions")

    taken = ok(client.post(f"{API}/{nid}/actions/approve", headers=user_headers(user)), 200)
    assert taken["id"] == nid and taken["action"] == "approve" and taken["result"] == "recorded"
    notifies = list(owner.notifies(timeout=5, stop_after=1))
    assert [n.payload for n in notifies] == [taken["action_id"]], "NOTIFY carries only the action row id"
    row = owner.execute(
        "SELECT a.notification_id, a.user_id, a.action, a.type, n.action_taken, n.action_taken_at = a.taken_at "
        "FROM notify.notification_actions a JOIN notify.notifications n ON n.id = a.notification_id WHERE a.id = %s",
        (taken["action_id"],),
    ).fetchone()
    assert row == (uuid.UUID(nid), user, "approve", "task", "approve", True)
    assert ok(client.get(f"{API}/{nid}", headers=user_headers(user)), 200)["action_taken"] == "approve"

    unoffered = client.post(f"{API}/{nid}/actions/explode", headers=user_headers(user))
    assert f'notification {nid} offers no action "explode"' in error(unoffered, 422, "VALIDATION_ERROR")
    error(client.post(f"{API}/{nid}/actions/approve", headers=user_headers(other)), 404, "NOT_FOUND")
    long_action = client.post(f"{API}/{nid}/actions/{'x' * 101}", headers=user_headers(user))
    assert error(long_action, 422, "VALIDATION_ERROR") == "action must be 1 to 100 characters"
    actions = owner.execute("SELECT count(*) FROM notify.notification_actions WHERE notification_id = %s", (nid,))
    assert actions.fetchone() == (1,), "refused actions record nothing"
    assert list(owner.notifies(timeout=0.5, stop_after=1)) == []

    # Without a list of actions, any action name is recorded.
    plain = send(client, user)
    assert ok(client.post(f"{API}/{plain}/actions/snooze", headers=user_headers(user)), 200)["action"] == "snooze"
    owner.execute("UNLISTEN notify_actions")


def test_the_action_ledger_is_append_only(owner: psycopg.Connection[Any]) -> None:
    for role in ("notify_authenticated", "notify_service", "notify_admin", "notify_worker"):
        for statement in ("UPDATE notify.notification_actions SET action = 'x'",
                          "DELETE FROM notify.notification_actions",
                          "INSERT INTO notify.notification_actions (notification_id, user_id, type, action) "
                          "VALUES (gen_random_uuid(), gen_random_uuid(), 'task', 'x')"):  # fmt: skip
            with owner.transaction(force_rollback=True):
                owner.execute(f"SET LOCAL ROLE {role}")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    owner.execute(statement)


# --- never a 500, and the document ---------------------------------------------------------------


@pytest.mark.parametrize(("method", "route"), ROUTE_TEMPLATES)
def test_garbage_never_makes_a_500(client: httpx.Client, method: str, route: str) -> None:
    for headers in (user_headers(uuid.uuid4()), SERVICE):
        for some_id in (str(uuid.uuid4()), "x", "%00", "1' OR '1'='1"):
            for content in (b"\xff\xfe", b"{", b'{"user_id": null}', b"null", b"9" * 5000):
                response = client.request(
                    method, fill(route, some_id), content=content,
                    params={"limit": "-1", "cursor": "\x00", "sort": "x"},
                    headers={**headers, "Content-Type": "application/json", "Idempotency-Key": "k" * 300},
                )  # fmt: skip
                assert response.status_code < 500, (method, route, some_id, content, response.text)
                assert response.status_code < 400 or set(response.json()) == {"error"}


def test_openapi_describes_every_route(client: httpx.Client) -> None:
    doc = ok(client.get("/openapi.json"), 200)
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    expected = {
        (m, r.replace("{id}", "{batch_id}" if "bulk/" in r else "{notification_id}")) for m, r in ROUTE_TEMPLATES
    }
    expected = {(m, r.replace("/dismiss", "/{action}")) for m, r in expected}
    listed = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    delivery_routes = {
        ("POST", f"{API}/push/subscribe"), ("POST", f"{API}/push/resubscribe"), ("DELETE", f"{API}/push/unsubscribe"),
        ("GET", f"{API}/push/subscriptions"),
        ("GET", f"{API}/vapid-public-key"), ("POST", f"{API}/test"), ("POST", "/api/v1/webhooks/resend"),
        ("GET", "/unsubscribe/{token}"), ("POST", "/unsubscribe/{token}"),
        ("GET", f"{API}/{{notification_id}}/explain"), ("POST", f"{API}/{{notification_id}}/cancel"),
        ("GET", f"{API}/preferences"), ("PUT", f"{API}/preferences/global"),
        ("PUT", f"{API}/preferences/{{notification_type}}"), ("GET", "/api/v1/admin/orgs/{org_id}/preferences"),
        ("PUT", "/api/v1/admin/orgs/{org_id}/preferences"),
        ("PUT", "/api/v1/admin/orgs/{org_id}/preferences/{notification_type}"),
        ("GET", "/api/v1/admin/orgs/{org_id}/stats"),
        ("GET", "/api/v1/admin/templates"), ("GET", "/api/v1/admin/templates/{name}"),
        ("PUT", "/api/v1/admin/templates/{name}/{language}"), ("POST", "/api/v1/admin/templates/{name}/preview"),
        ("GET", f"{API}/history"), ("GET", f"{API}/export"), ("DELETE", "/api/v1/admin/users/{user_id}"),
        ("POST", f"{API}/receipts"), ("GET", "/t/open/{token}"), ("GET", "/t/click/{token}"),
        ("GET", f"{API}/analytics"), ("GET", f"{API}/stream"),
        ("GET", f"{API}/{{notification_id}}/sensitive"),
        ("GET", "/api/v1/topics"), ("PUT", "/api/v1/topics/{topic}"), ("DELETE", "/api/v1/topics/{topic}"),
        ("POST", "/api/v1/topics/{topic}/notifications"), ("POST", "/api/v1/admin/broadcasts/preview"),
        ("POST", "/api/v1/admin/broadcasts"),
        ("GET", "/api/v1/admin/notifications"), ("GET", "/api/v1/admin/dead-letters"),
        ("POST", "/api/v1/admin/dead-letters/retry"), ("POST", "/api/v1/admin/dead-letters/discard"),
        ("GET", "/api/v1/admin/figures"), ("GET", "/api/v1/admin/policies"), ("PUT", "/api/v1/admin/settings/{key}"),
        ("PUT", "/api/v1/admin/retention"), ("POST", "/api/v1/admin/templates/{name}/{language}/preview"),
        ("GET", "/api/v1/admin/activity/stream"),
        ("PUT", "/api/v1/recipients/{user_id}"), ("POST", "/api/v1/webhooks/twilio"),
        ("GET", "/api/v1/admin/escalations"), ("PUT", "/api/v1/admin/escalations/{notification_type}"),
        ("POST", f"{API}/webhooks"), ("GET", f"{API}/webhooks"), ("DELETE", f"{API}/webhooks/{{endpoint_id}}"),
        ("POST", f"{API}/webhooks/{{endpoint_id}}/rotate"), ("POST", f"{API}/webhooks/{{endpoint_id}}/enable"),
        ("GET", f"{API}/webhooks/{{endpoint_id}}/deliveries"),
        ("POST", f"{API}/webhooks/{{endpoint_id}}/deliveries/{{delivery_id}}/replay"),
        ("POST", f"{API}/chat-connections"), ("GET", f"{API}/chat-connections"),
        ("DELETE", f"{API}/chat-connections/{{connection_id}}"),
    }  # fmt: skip
    operational = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/openapi.json")}
    assert expected | delivery_routes | operational == listed
    schemas = doc["components"]["schemas"]
    assert set(doc["components"]["securitySchemes"]) == {"bearerAuth", "serviceKey", "serviceName"}

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema["$ref"]
        assert ref.startswith("#/components/schemas/")
        return schemas[ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]

    create = paths[API]["post"]
    request_schema = resolve(create["requestBody"]["content"]["application/json"]["schema"])
    assert request_schema["additionalProperties"] is False
    assert {"user_id", "type", "title", "template_vars", "channels", "send_at", "idempotency_key"} <= set(
        request_schema["properties"]
    )
    assert set(resolve(create["responses"]["202"]["content"]["application/json"]["schema"])["properties"]) == {
        "id", "notification_id", "status", "channels", "created_at",
    }  # fmt: skip
    internal = paths[INTERNAL]["post"]["responses"]["202"]["content"]["application/json"]["schema"]
    assert set(resolve(internal)["properties"]) == {"id", "notification_id", "status"}
    assert create["security"] == [{"bearerAuth": []}, {"serviceKey": [], "serviceName": []}]
    page = resolve(paths[API]["get"]["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(page["properties"]) == {"items", "unread_count", "next_cursor", "has_more"}
    listing = {"type", "priority", "is_read", "state", "sort", "limit", "cursor", "X-Notifyd-Read-After"}
    assert {p["name"] for p in paths[API]["get"]["parameters"]} == listing
    assert "400" in paths[f"{API}/bulk"]["post"]["responses"]
    for path, ops in paths.items():
        for method, op in ops.items():
            assert {"200", "201", "202", "204", "302"} & set(op["responses"]), (path, method)
            if op.get("security"):  # public routes (the VAPID key, signed webhooks) have none
                for code in ("401", "403"):
                    assert (
                        resolve(op["responses"][code]["content"]["application/json"]["schema"]) == schemas["ErrorBody"]
                    ), (path, method, code)
                if "notification_id" in path:
                    assert "404" in op["responses"]


def test_admins_send_within_their_org_only(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    org, other_org = uuid.uuid4(), uuid.uuid4()
    member, outsider = uuid.uuid4(), uuid.uuid4()
    owner.execute("SELECT notify.upsert_recipient_v2(%s, org_id => %s)", (member, org))
    owner.execute("SELECT notify.upsert_recipient_v2(%s, org_id => %s)", (outsider, other_org))
    admin = {"Authorization": f"Bearer {make_token('ops', role='admin', org_id=str(org))}"}
    body = {"type": "system", "title": "Maintenance"}
    created = ok(client.post(API, json={**body, "user_id": str(member)}, headers=admin), 202)
    row = owner.execute("SELECT user_id FROM notify.notifications WHERE id = %s", (created["id"],)).fetchone()
    assert row == (member,)
    refused = client.post(API, json={**body, "user_id": str(outsider)}, headers=admin)
    error(refused, 403, "FORBIDDEN")
    count = owner.execute("SELECT count(*) FROM notify.notifications WHERE user_id = %s", (outsider,)).fetchone()
    assert count == (0,)
