"""Web Push end to end: REST subscriptions, a real worker, and a push service stand-in that checks VAPID and decrypts.

The delivery tests run their own `notifyd serve` and `notifyd worker` on the test's own database
(the worker makes the first VAPID key when it starts); the REST validation tests use the session's
server, with a VAPID key put in its database here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import http_ece
import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifyd.core.config import Settings
from notifyd.core.crypto import SecretBox, parse_key, token_hash
from notifyd.domain import vapid
from notifyd.domain.deliveries import Delivery, Failed, Sent, Subscription, VapidKey
from notifyd.domain.push import delivery_headers
from notifyd.domain.webpush import (
    MAX_PLAINTEXT,
    NOT_ALLOWED,
    WebPushChannel,
    encrypt,
    endpoint_allowed,
    push_payload,
)
from notifyd.http.errors import CODES
from tests.server import ENCRYPTION_KEY, QUICK_WORKER_ENV, ServerProcess, WorkerProcess, make_token, wait_for
from tests.standins.http import Response
from tests.standins.push_service import PushMessage, PushService

API = "/api/v1/notifications"
SUBSCRIBE = f"{API}/push/subscribe"
UNSUBSCRIBE = f"{API}/push/unsubscribe"
DEVICES = f"{API}/push/subscriptions"
VAPID_KEY = f"{API}/vapid-public-key"
SERVICE = {"Authorization": f"Bearer {make_token('builds', role='service')}"}
SUBJECT = "mailto:ops@example.com"
# What the worker needs to be quick in tests: fast heartbeats, a 1 s provider timeout.


def user_headers(user: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


def ok(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == CODES[status], body
    return str(body["error"]["message"])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def browser_subscription(endpoint: str) -> dict[str, Any]:
    """What a browser posts, for tests that never push to it."""
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {
        "endpoint": endpoint,
        "expirationTime": None,
        "keys": {"p256dh": b64url(point), "auth": b64url(os.urandom(16))},
    }


def add_vapid_key(conn: psycopg.Connection[Any]) -> str:
    """Makes a new key pair the current one (as `notifyd vapid` keys are stored); returns its public key."""
    public, private = vapid.generate()
    sealed = SecretBox(parse_key(ENCRYPTION_KEY)).encrypt(private)
    conn.execute("SELECT notify.add_vapid_key(%s, %s)", (public, sealed))
    return public


def fetch(conn: psycopg.Connection[Any], sql: str, *args: Any) -> dict[str, Any] | None:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(sql, args).fetchone()


def device_row(conn: psycopg.Connection[Any], subscription_id: str) -> dict[str, Any]:
    row = fetch(conn, "SELECT * FROM notify.push_subscriptions WHERE id = %s", subscription_id)
    assert row is not None
    return row


def push_delivery(conn: psycopg.Connection[Any], notification_id: str) -> dict[str, Any] | None:
    return fetch(
        conn, "SELECT * FROM notify.delivery_decisions WHERE notification_id = %s AND channel = 'push'",
        notification_id,
    )  # fmt: skip


# --- the stack of one delivery test ----------------------------------------------------------------------


class Stack:
    """A worker and a server on the test's database, the push service, and what the tests do with them."""

    def __init__(
        self, db: psycopg.Connection[Any], server: ServerProcess, worker: WorkerProcess, push: PushService
    ) -> None:
        self.db = db
        self.push = push
        self.processes = (server, worker)
        self.client = httpx.Client(base_url=server.url, timeout=30)
        self.browsers: dict[str, dict[str, Any]] = {}  # endpoint -> the subscription the browser posted

    def current_key(self) -> str:
        return str(ok(self.client.get(VAPID_KEY), 200)["public_key"])

    def subscribe(self, user: uuid.UUID, **extra: Any) -> tuple[str, str]:
        """A browser of `user` subscribes with the current VAPID key: (subscription id, endpoint)."""
        subscription = self.push.subscribe(self.current_key())
        self.browsers[subscription["endpoint"]] = subscription
        body = {"subscription": subscription, "device_info": {"platform": "web"}, **extra}
        created = ok(self.client.post(SUBSCRIBE, json=body, headers=user_headers(user)), 201)
        return str(created["id"]), str(subscription["endpoint"])

    def send(self, user: uuid.UUID, **fields: Any) -> str:
        body = {"user_id": str(user), "type": "task", "title": "Build finished", "body": "All green", **fields}
        return str(ok(self.client.post(API, json=body, headers=SERVICE), 202)["id"])

    def settled(self, notification_id: str, timeout: float = 15) -> dict[str, Any]:
        """The push delivery once it is no longer pending."""
        return dict(
            wait_for(
                lambda: (
                    (row := push_delivery(self.db, notification_id)) is not None and row["status"] != "pending" and row
                ),
                timeout,
                what=f"the push delivery of {notification_id} to settle",
            )
        )

    def logs(self) -> str:
        return "".join(p.log() for p in self.processes)

    def message(self, notification_id: str) -> PushMessage:
        def arrived() -> PushMessage | None:
            return next((m for m in self.push.messages if m.json and m.json["id"] == notification_id), None)

        found = wait_for(arrived, 15, what=f"push of {notification_id}")
        assert isinstance(found, PushMessage)
        return found


def start_stack(
    db: psycopg.Connection[Any], own_server: Any, own_worker: Any, push: PushService, **worker_env: str
) -> Stack:
    """A server and a worker (QUICK_WORKER_ENV + worker_env) on the test's database, once the worker made its
    VAPID key."""
    # Retries within the test's time: the first one after 0.1-0.2 s (Retry-After still wins).
    db.execute("UPDATE notify.settings SET value = '\"0.2 seconds\"' WHERE key = 'delivery.retry_base'")
    with ThreadPoolExecutor(2) as pool:
        worker = pool.submit(own_worker, **{**QUICK_WORKER_ENV, **worker_env})
        server = pool.submit(own_server)
        started = Stack(db, server.result(), worker.result(), push)
    wait_for(lambda: fetch(db, "SELECT 1 FROM notify.vapid_keys"), 10, what="the worker's first VAPID key")
    return started


@pytest.fixture
def stack(db: psycopg.Connection[Any], own_server: Any, own_worker: Any, push_service: PushService) -> Iterator[Stack]:  # noqa: F811
    started = start_stack(db, own_server, own_worker, push_service)
    yield started
    started.client.close()


# --- delivery ------------------------------------------------------------------------------------------


def test_push_arrives_decrypted_with_ttl_urgency_topic_and_is_recorded(stack: Stack) -> None:
    user = uuid.uuid4()
    device, endpoint = stack.subscribe(user)
    expires = datetime.now(UTC) + timedelta(minutes=10)
    data = {"url": "/builds/42", "actions": [{"action": "view", "title": "View"}], "build": 42}
    grouped = stack.send(user, priority="high", data=data, group_key="build-42")
    urgent = stack.send(user, priority="critical", expires_at=expires.isoformat(), data={"action_url": "/alerts/7"})
    quiet = stack.send(user, priority="low", channels=["in_app", "push"])

    first = stack.message(grouped)
    assert first.endpoint == endpoint
    assert first.json == {
        "id": grouped, "seq": first.json["seq"], "type": "task", "priority": "high", "title": "Build finished",
        "body": "All green", "url": "/builds/42", "data": data, "actions": data["actions"],
        "receipt": first.json["receipt"],
    }  # fmt: skip
    assert isinstance(first.json["seq"], int) and isinstance(first.json["receipt"], str)
    assert (first.ttl, first.urgency) == (12 * 3600, "high")
    assert first.topic is not None and len(first.topic) <= 32
    assert first.claims["sub"] == SUBJECT and first.vapid_key == stack.current_key()

    second = stack.message(urgent)
    assert second.urgency == "high" and second.json["url"] == "/alerts/7" and second.json["actions"] == []
    assert 500 < second.ttl <= 600, "a critical push never outlives its notification"
    assert second.topic is None

    third = stack.message(quiet)
    assert (third.ttl, third.urgency, third.json["url"]) == (3600, "low", None)

    for notification_id in (grouped, urgent, quiet):
        delivery = stack.settled(notification_id)
        assert delivery["status"] == "sent" and delivery["attempts"] == 1, delivery
        assert delivery["provider_message_id"].startswith(f"{stack.push.url}/message/")
    row = device_row(stack.db, device)
    assert row["last_used_at"] is not None and row["failure_count"] == 0 and row["is_active"]
    keys = stack.browsers[endpoint]["keys"]
    for secret in (keys["p256dh"], keys["auth"], endpoint.rsplit("/", 1)[1]):
        assert secret not in stack.logs(), "keys and endpoints stay out of the logs"


def test_oversized_payload_is_truncated_keeping_id_and_url(stack: Stack) -> None:
    user = uuid.uuid4()
    stack.subscribe(user)
    long_body = stack.send(user, body="word " * 2000, data={"url": "/docs/1", "small": True})
    huge_data = stack.send(user, body="short", data={"url": "/docs/2", "blob": "x" * 6000})

    cut = stack.message(long_body)
    assert len(cut.plaintext) <= MAX_PLAINTEXT
    assert cut.json["body"].endswith("…") and cut.json["body"].startswith("word word")
    assert cut.json["data"] == {"url": "/docs/1", "small": True} and cut.json["url"] == "/docs/1"

    dropped = stack.message(huge_data)
    assert len(dropped.plaintext) <= MAX_PLAINTEXT
    assert dropped.json["data"] == {} and dropped.json["body"] == "short"
    assert (dropped.json["id"], dropped.json["url"]) == (huge_data, "/docs/2")
    assert stack.settled(huge_data)["status"] == "sent"


def test_gone_deactivates_the_device_at_once(stack: Stack) -> None:
    user = uuid.uuid4()
    device, endpoint = stack.subscribe(user)
    stack.push.unsubscribe(endpoint)  # the user revoked permission: 410 from now on

    delivery = stack.settled(stack.send(user))
    assert delivery["status"] == "failed" and delivery["attempts"] == 1, delivery
    row = device_row(stack.db, device)
    assert not row["is_active"] and "gone" in row["deactivated_reason"]
    listed = ok(stack.client.get(DEVICES, headers=user_headers(user)), 200)["items"]
    assert [(d["id"], d["is_active"]) for d in listed] == [(device, False)]

    later = push_delivery(stack.db, stack.send(user))
    assert later is not None and (later["status"], later["reason"]) == ("skipped", "no active push subscription")


def retry_at(conn: psycopg.Connection[Any], delivery_id: str) -> datetime | None:
    """When Procrastinate will run the delivery's job again, once it has been retried: its channel job's retry,
    or the channel job a dispatcher that sent it itself handed it to."""
    row = fetch(
        conn,
        "SELECT scheduled_at FROM procrastinate.procrastinate_jobs "
        "WHERE args -> 'delivery_ids' ? %s AND status = 'todo' AND scheduled_at IS NOT NULL",
        delivery_id,
    )
    return None if row is None else row["scheduled_at"]


def test_429_and_503_are_retried_no_sooner_than_retry_after(stack: Stack) -> None:
    waits = {429: 3, 503: 2}  # seconds; the backoff alone would be 0.1-0.2 s
    sent: dict[int, tuple[str, str]] = {}
    for code, wait in waits.items():
        user = uuid.uuid4()
        _, endpoint = stack.subscribe(user)
        stack.push.script(endpoint, Response(code, headers={"Retry-After": str(wait)}))
        sent[code] = (stack.send(user), endpoint)
    for code, (notification_id, endpoint) in sent.items():
        planned = push_delivery(stack.db, notification_id)
        assert planned is not None
        scheduled = wait_for(partial(retry_at, stack.db, str(planned["id"])), 10, what=f"the retry after {code}")
        first = stack.push.requests_for(endpoint)[0]
        assert scheduled.timestamp() - first.at >= waits[code] - 0.2, f"{code}: Retry-After not honoured"
    for code, (notification_id, endpoint) in sent.items():
        delivery = stack.settled(notification_id, timeout=20)
        assert delivery["status"] == "sent" and delivery["attempts"] == 2, delivery
        first, second = stack.push.requests_for(endpoint)
        assert second.at - first.at >= waits[code] - 0.2, f"{code} retried before its Retry-After"
        assert stack.message(notification_id).json["title"] == "Build finished"


def test_timeout_is_retried(stack: Stack) -> None:
    user = uuid.uuid4()
    device, endpoint = stack.subscribe(user)
    # The push service answers after 2 s, the worker waits PROVIDER_TIMEOUT=1 s.
    stack.push.script(endpoint, Response(delay=2))
    delivery = stack.settled(stack.send(user), timeout=20)
    assert delivery["status"] == "sent" and delivery["attempts"] == 2, delivery
    assert len(stack.push.requests_for(endpoint)) == 2
    assert device_row(stack.db, device)["failure_count"] == 0


def test_three_consecutive_failures_deactivate_and_a_success_resets_the_count(stack: Stack) -> None:
    user = uuid.uuid4()
    device, endpoint = stack.subscribe(user)
    outcomes = [400, 403, None, 400, 400, 400]  # None: the push service accepts it
    counts = []
    for status in outcomes:
        if status is not None:
            stack.push.script(endpoint, Response(status, body={"error": "refused"}))
        delivery = stack.settled(stack.send(user))
        assert delivery["status"] == ("sent" if status is None else "failed"), delivery
        counts.append(device_row(stack.db, device)["failure_count"])
    assert counts == [1, 2, 0, 1, 2, 3]
    row = device_row(stack.db, device)
    assert not row["is_active"] and row["deactivated_reason"].startswith("3 consecutive failures")


def test_each_subscription_is_signed_with_its_own_vapid_key_and_old_keys_retire(stack: Stack) -> None:
    first_key = stack.current_key()
    old_user, new_user = uuid.uuid4(), uuid.uuid4()
    old_device, old_endpoint = stack.subscribe(old_user)
    second_key = add_vapid_key(stack.db)
    assert stack.current_key() == second_key != first_key
    _, new_endpoint = stack.subscribe(new_user)

    to_old, to_new = stack.send(old_user), stack.send(new_user)
    assert (stack.message(to_old).endpoint, stack.message(to_old).vapid_key) == (old_endpoint, first_key)
    assert (stack.message(to_new).endpoint, stack.message(to_new).vapid_key) == (new_endpoint, second_key)
    assert stack.settled(to_old)["status"] == stack.settled(to_new)["status"] == "sent"

    def retire() -> int:
        row = fetch(stack.db, "SELECT notify.retire_vapid_keys() AS retired")
        assert row is not None
        return int(row["retired"])

    assert retire() == 0, "key 1 still signs an active subscription"
    unsubscribe = {"subscription_id": old_device}
    ok(stack.client.request("DELETE", UNSUBSCRIBE, json=unsubscribe, headers=user_headers(old_user)), 204)
    assert retire() == 1
    live = fetch(stack.db, "SELECT array_agg(public_key) AS keys FROM notify.vapid_keys WHERE retired_at IS NULL")
    assert live == {"keys": [second_key]}
    # A browser still holding the retired key cannot subscribe with it.
    late = stack.push.subscribe(first_key)
    message = refused(
        stack.client.post(
            SUBSCRIBE, json={"subscription": late, "vapid_public_key": first_key}, headers=user_headers(old_user)
        ),
        422,
    )
    assert "vapid_public_key" in message


# --- REST: subscribe, list, unsubscribe (the session's server) -------------------------------------------


@pytest.fixture(scope="module")
def session_key(server: ServerProcess, server_owner_url: str) -> str:
    """The session server's current VAPID key (made here: no worker runs on that database)."""
    with psycopg.connect(server_owner_url, autocommit=True) as conn:
        row = fetch(conn, "SELECT public_key FROM notify.current_vapid_key() WHERE id IS NOT NULL")
        return str(row["public_key"]) if row is not None else add_vapid_key(conn)


@pytest.fixture
def client(server: ServerProcess, session_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture
def owner(server_owner_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(server_owner_url, autocommit=True) as conn:
        yield conn


def new_endpoint() -> str:
    return f"http://127.0.0.1:9/push/{uuid.uuid4()}"


def rows_for(owner: psycopg.Connection[Any], endpoint: str) -> int:
    row = fetch(
        owner, "SELECT count(*) AS n FROM notify.push_subscriptions WHERE token_hash = %s", token_hash(endpoint)
    )
    assert row is not None
    return int(row["n"])


def test_subscribe_stores_keys_encrypted_with_the_current_vapid_key(
    client: httpx.Client, owner: psycopg.Connection[Any], session_key: str
) -> None:
    user, endpoint = uuid.uuid4(), new_endpoint()
    browser = browser_subscription(endpoint)
    info = {"platform": "web", "user_agent": "Mozilla/5.0", "screen_width": 1920}
    created = ok(
        client.post(SUBSCRIBE, json={"subscription": browser, "device_info": info}, headers=user_headers(user)), 201
    )
    assert set(created) == {"id", "user_id", "kind", "is_active", "created_at", "device_info", "subscription_token"}
    assert (created["user_id"], created["kind"], created["is_active"], created["device_info"]) == (
        str(user),
        "webpush",
        True,
        info,
    )

    row = device_row(owner, created["id"])
    box = SecretBox(parse_key(ENCRYPTION_KEY))
    assert row["p256dh_key"].startswith("enc1.") and box.decrypt(row["p256dh_key"]) == browser["keys"]["p256dh"]
    assert row["auth_key"].startswith("enc1.") and box.decrypt(row["auth_key"]) == browser["keys"]["auth"]
    assert bytes(row["token_hash"]) == hashlib.sha256(endpoint.encode()).digest()
    key = fetch(owner, "SELECT public_key FROM notify.vapid_keys WHERE id = %s", row["vapid_key_id"])
    assert key == {"public_key": session_key}


def test_flat_browser_form_and_fcm_tokens_are_accepted(client: httpx.Client, owner: psycopg.Connection[Any]) -> None:
    user = uuid.uuid4()
    flat = ok(client.post(SUBSCRIBE, json=browser_subscription(new_endpoint()), headers=user_headers(user)), 201)
    assert flat["kind"] == "webpush" and flat["device_info"] == {}
    token = f"fcm-{uuid.uuid4()}:APA91b"
    phone = {"fcm_token": token, "device_info": {"platform": "ios", "os_version": "17.0", "device_name": "iPhone 14"}}
    created = ok(client.post(SUBSCRIBE, json=phone, headers=user_headers(user)), 201)
    assert created["kind"] == "fcm" and created["device_info"]["platform"] == "ios"
    row = device_row(owner, created["id"])
    assert row["fcm_token"] != token and SecretBox(parse_key(ENCRYPTION_KEY)).decrypt(row["fcm_token"]) == token
    assert bytes(row["token_hash"]) == token_hash(token) and row["vapid_key_id"] is None


def test_the_same_endpoint_again_is_one_row_owned_by_the_newest_subscriber(
    client: httpx.Client, owner: psycopg.Connection[Any]
) -> None:
    first, second, endpoint = uuid.uuid4(), uuid.uuid4(), new_endpoint()
    mine = ok(client.post(SUBSCRIBE, json=browser_subscription(endpoint), headers=user_headers(first)), 201)
    again = ok(client.post(SUBSCRIBE, json=browser_subscription(endpoint), headers=user_headers(second)), 201)
    assert again["id"] == mine["id"] and again["user_id"] == str(second)
    assert rows_for(owner, endpoint) == 1
    assert ok(client.get(DEVICES, headers=user_headers(first)), 200) == {"items": []}
    assert [d["id"] for d in ok(client.get(DEVICES, headers=user_headers(second)), 200)["items"]] == [mine["id"]]


def test_the_device_list_shows_the_endpoint_origin_and_never_keys(client: httpx.Client) -> None:
    user = uuid.uuid4()
    browser = browser_subscription(new_endpoint())
    token = f"fcm-{uuid.uuid4()}"
    web = ok(client.post(SUBSCRIBE, json={"subscription": browser}, headers=user_headers(user)), 201)
    ok(
        client.post(
            SUBSCRIBE, json={"fcm_token": token, "device_info": {"platform": "android"}}, headers=user_headers(user)
        ),
        201,
    )
    response = client.get(DEVICES, headers=user_headers(user))
    items = ok(response, 200)["items"]
    assert [d["kind"] for d in items] == ["fcm", "webpush"]
    by_kind = {d["kind"]: d for d in items}
    assert by_kind["webpush"]["id"] == web["id"] and by_kind["webpush"]["endpoint_origin"] == "http://127.0.0.1:9"
    assert by_kind["fcm"]["endpoint_origin"] is None
    assert set(by_kind["webpush"]) == {
        "id", "kind", "is_active", "device_info", "created_at", "last_used_at", "failure_count",
        "deactivated_reason", "endpoint_origin",
    }  # fmt: skip
    for secret in (browser["endpoint"], browser["keys"]["p256dh"], browser["keys"]["auth"], token):
        assert secret not in response.text


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://push.evil.example/send/1",  # a host not on the list
        "http://169.254.169.254/latest/meta-data",  # the cloud metadata service
        "http://127.0.0.1.evil.example:9/push",  # the allowed host as a prefix
        "http://user:secret@127.0.0.1:9/push",  # userinfo
        "ftp://127.0.0.1:9/push",
        "file:///etc/passwd",
        "http:///push",
        "not a url",
    ],
)
def test_an_endpoint_off_the_allowlist_is_refused(
    client: httpx.Client, owner: psycopg.Connection[Any], endpoint: str
) -> None:
    message = refused(
        client.post(SUBSCRIBE, json=browser_subscription(endpoint), headers=user_headers(uuid.uuid4())), 422
    )
    assert "PUSH_ENDPOINT_ALLOWLIST" in message
    assert rows_for(owner, endpoint) == 0


def _point_off_the_curve() -> str:
    point = bytearray(base64.urlsafe_b64decode(browser_subscription("x")["keys"]["p256dh"] + "="))
    point[-1] ^= 1
    return b64url(bytes(point))


@pytest.mark.parametrize(
    ("keys", "field"),
    [
        ({"p256dh": b64url(b"\x04" + os.urandom(63))}, "p256dh"),  # 64 bytes
        ({"p256dh": _point_off_the_curve()}, "p256dh"),
        ({"p256dh": "not base64url!"}, "p256dh"),
        ({"auth": b64url(os.urandom(15))}, "auth"),
        ({"auth": b64url(os.urandom(17))}, "auth"),
        ({"auth": ""}, "auth"),
    ],
)
def test_bad_keys_are_refused(
    client: httpx.Client, owner: psycopg.Connection[Any], keys: dict[str, str], field: str
) -> None:
    endpoint = new_endpoint()
    browser = browser_subscription(endpoint)
    browser["keys"].update(keys)
    message = refused(client.post(SUBSCRIBE, json={"subscription": browser}, headers=user_headers(uuid.uuid4())), 422)
    assert f"keys.{field}" in message
    assert rows_for(owner, endpoint) == 0


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (None, "JSON"),
        ({}, "fcm_token"),
        ({"fcm_token": "a token with spaces"}, "fcm_token"),
        ({"fcm_token": "x" * 4097}, "fcm_token"),
        ({"fcm_token": "tok", "subscription": browser_subscription(new_endpoint())}, "either"),
        ({"endpoint": new_endpoint()}, "keys"),
        ({"fcm_token": "tok", "device_info": {"notes": "x" * 5000}}, "device_info"),
        ({"fcm_token": "tok", "device_info": ["web"]}, "device_info"),
        ({**browser_subscription(new_endpoint()), "vapid_public_key": "A" * 87}, "vapid_public_key"),
        ({"fcm_token": "tok", "fcmToken": "tok"}, "fcmToken"),
    ],
)
def test_bad_subscribe_bodies_are_422(client: httpx.Client, body: Any, says: str) -> None:
    content = b"" if body is None else json.dumps(body).encode()
    response = client.post(SUBSCRIBE, content=content, headers=user_headers(uuid.uuid4()))
    assert says in refused(response, 422)


def test_unsubscribe_removes_only_the_callers_own_device(
    client: httpx.Client, owner: psycopg.Connection[Any], server: ServerProcess
) -> None:
    me, other = uuid.uuid4(), uuid.uuid4()
    by_id_endpoint, by_endpoint, theirs_endpoint = new_endpoint(), new_endpoint(), new_endpoint()
    mine = ok(client.post(SUBSCRIBE, json=browser_subscription(by_id_endpoint), headers=user_headers(me)), 201)
    ok(client.post(SUBSCRIBE, json=browser_subscription(by_endpoint), headers=user_headers(me)), 201)
    theirs = ok(client.post(SUBSCRIBE, json=browser_subscription(theirs_endpoint), headers=user_headers(other)), 201)

    def delete(body: Any, user: uuid.UUID = me) -> httpx.Response:
        return client.request("DELETE", UNSUBSCRIBE, json=body, headers=user_headers(user))

    assert refused(delete({"subscription_id": theirs["id"]}), 404) == "push subscription not found"
    assert rows_for(owner, theirs_endpoint) == 1
    refused(delete({"endpoint": theirs_endpoint}), 404)
    assert rows_for(owner, theirs_endpoint) == 1
    refused(delete({"subscription_id": str(uuid.uuid4())}), 404)
    refused(delete({}), 422)
    refused(delete({"subscription_id": mine["id"], "endpoint": by_endpoint}), 422)
    refused(delete({"subscription_id": "not-a-uuid"}), 422)

    ok(delete({"subscription_id": mine["id"]}), 204)
    ok(delete({"endpoint": by_endpoint}), 204)
    assert rows_for(owner, by_id_endpoint) == rows_for(owner, by_endpoint) == 0
    assert ok(client.get(DEVICES, headers=user_headers(me)), 200) == {"items": []}
    refused(delete({"subscription_id": mine["id"]}), 404)
    logged = wait_for(lambda: f"unsubscribed push device {mine['id']} (webpush)" in server.log(), 5, what="the log")
    assert logged and by_endpoint not in server.log()


@pytest.mark.parametrize(("method", "path"), [("POST", SUBSCRIBE), ("DELETE", UNSUBSCRIBE), ("GET", DEVICES)])
def test_push_routes_are_for_end_users(client: httpx.Client, method: str, path: str) -> None:
    body = {"fcm_token": "tok"} if method == "POST" else {"subscription_id": str(uuid.uuid4())}
    refused(client.request(method, path, json=body), 401)
    refused(client.request(method, path, json=body, headers={"Authorization": "Bearer nonsense"}), 401)
    assert "end users" in refused(client.request(method, path, json=body, headers=SERVICE), 403)


def test_the_vapid_public_key_is_public(client: httpx.Client, session_key: str) -> None:
    assert ok(client.get(VAPID_KEY), 200) == {"public_key": session_key}
    assert "/api/v1/notifications/vapid-public-key" in ok(client.get("/openapi.json"), 200)["paths"]


def test_push_needs_its_settings(db: psycopg.Connection[Any], own_server: Any) -> None:
    with ThreadPoolExecutor(3) as pool:
        no_key, no_subject, no_vapid_key = pool.map(
            lambda env: own_server(**env), [{"NOTIFICATION_ENCRYPTION_KEY": ""}, {"VAPID_SUBJECT": ""}, {}]
        )
    web = {"subscription": browser_subscription(new_endpoint())}
    phone = {"fcm_token": f"fcm-{uuid.uuid4()}"}
    user = user_headers(uuid.uuid4())
    with httpx.Client(base_url=no_key.url) as c:
        assert "NOTIFICATION_ENCRYPTION_KEY" in refused(c.get(VAPID_KEY), 503)
        assert "NOTIFICATION_ENCRYPTION_KEY" in refused(c.post(SUBSCRIBE, json=web, headers=user), 503)
        assert "NOTIFICATION_ENCRYPTION_KEY" in refused(c.post(SUBSCRIBE, json=phone, headers=user), 503)
    with httpx.Client(base_url=no_subject.url) as c:
        assert "VAPID_SUBJECT" in refused(c.get(VAPID_KEY), 503)
        assert "VAPID_SUBJECT" in refused(c.post(SUBSCRIBE, json=web, headers=user), 503)
        ok(c.post(SUBSCRIBE, json=phone, headers=user), 201)  # FCM needs only the encryption key
    with httpx.Client(base_url=no_vapid_key.url) as c:
        assert "no VAPID key" in refused(c.get(VAPID_KEY), 503)
        assert "no VAPID key" in refused(c.post(SUBSCRIBE, json=web, headers=user), 503)
    row = fetch(db, "SELECT count(*) AS n FROM notify.push_subscriptions WHERE kind = 'webpush'")
    assert row == {"n": 0}


def vapid_keys(db: psycopg.Connection[Any]) -> list[str]:
    return [str(row[0]) for row in db.execute("SELECT public_key FROM notify.vapid_keys ORDER BY created_at")]


def test_serve_alone_seeds_the_vapid_key_of_its_environment(
    db: psycopg.Connection[Any], own_server: Any, own_worker: Any
) -> None:
    public, private = vapid.generate()
    env = {"VAPID_PUBLIC_KEY": public, "VAPID_PRIVATE_KEY": private}
    assert vapid_keys(db) == []
    serve = own_server(**env)  # no worker has ever run on this database
    with httpx.Client(base_url=serve.url) as c:
        assert ok(c.get(VAPID_KEY), 200) == {"public_key": public}
        web = {"subscription": browser_subscription(new_endpoint())}
        ok(c.post(SUBSCRIBE, json=web, headers=user_headers(uuid.uuid4())), 201)
        own_worker(**env, **QUICK_WORKER_ENV)  # started afterwards, it keeps the key serve stored
        assert ok(c.get(VAPID_KEY), 200) == {"public_key": public}
    assert vapid_keys(db) == [public]
    # Restarting serve stores nothing again.
    serve.restart()
    assert vapid_keys(db) == [public]


@pytest.mark.parametrize("from_environment", [True, False], ids=["VAPID_* set", "no VAPID_*: a worker makes one"])
def test_processes_starting_at_once_make_one_vapid_key(
    db: psycopg.Connection[Any], own_server: Any, own_worker: Any, from_environment: bool
) -> None:
    public, private = vapid.generate()
    env = {"VAPID_PUBLIC_KEY": public, "VAPID_PRIVATE_KEY": private} if from_environment else {}
    starts = [partial(own_server, **env), partial(own_server, **env), partial(own_worker, **env, **QUICK_WORKER_ENV),
              partial(own_worker, **env, **QUICK_WORKER_ENV)]  # fmt: skip
    with ThreadPoolExecutor(len(starts)) as pool:
        processes = list(pool.map(lambda start: start(), starts))
    keys = vapid_keys(db)
    assert len(keys) == 1 and (keys == [public] or not from_environment), keys
    for serve in processes[:2]:
        assert ok(httpx.get(f"{serve.url}{VAPID_KEY}"), 200) == {"public_key": keys[0]}


def test_vapid_generate_prints_a_matching_pair() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "notifyd", "vapid", "generate"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    lines = dict(line.split("=", 1) for line in out.strip().splitlines())
    assert set(lines) == {"VAPID_PUBLIC_KEY", "VAPID_PRIVATE_KEY"}
    assert vapid.public_key_of(lines["VAPID_PRIVATE_KEY"]) == lines["VAPID_PUBLIC_KEY"]
    assert len(base64.urlsafe_b64decode(lines["VAPID_PUBLIC_KEY"] + "=")) == 65


# --- units ---------------------------------------------------------------------------------------------

DEFAULT_LIST = ("fcm.googleapis.com", "*.push.services.mozilla.com", "*.push.apple.com", "*.notify.windows.com")


@pytest.mark.parametrize(
    ("endpoint", "patterns", "allowed"),
    [
        ("https://fcm.googleapis.com/fcm/send/abc", DEFAULT_LIST, True),
        ("https://web.push.apple.com/QGuQ", DEFAULT_LIST, True),
        ("https://updates.push.services.mozilla.com/wpush/v2/x", DEFAULT_LIST, True),
        ("https://FCM.googleapis.com:443/x", DEFAULT_LIST, True),
        ("https://push.apple.com/x", DEFAULT_LIST, False),  # * needs something before the dot
        ("http://fcm.googleapis.com/x", DEFAULT_LIST, False),  # no scheme in the entry: https only
        ("https://fcm.googleapis.com:8443/x", DEFAULT_LIST, False),  # no port in the entry: 443 only
        ("https://fcm.googleapis.com.evil.example/x", DEFAULT_LIST, False),
        ("https://evil.example/.push.apple.com", DEFAULT_LIST, False),
        ("https://evil.example?.push.apple.com", DEFAULT_LIST, False),
        ("https://web.push.apple.com@evil.example/x", DEFAULT_LIST, False),
        ("https://user@web.push.apple.com/x", DEFAULT_LIST, False),
        ("javascript://fcm.googleapis.com/x", DEFAULT_LIST, False),
        ("https:///x", DEFAULT_LIST, False),
        ("http://127.0.0.1:4000/push/x", ("http://127.0.0.1:*",), True),
        ("http://127.0.0.1/push/x", ("http://127.0.0.1:*",), True),
        ("https://127.0.0.1:4000/push/x", ("http://127.0.0.1:*",), False),
        ("http://127.0.0.10:4000/push/x", ("http://127.0.0.1:*",), False),
        ("http://127.0.0.1:99999/push/x", ("http://127.0.0.1:*",), False),
        ("http://localhost:8080/x", ("http://localhost:8080",), True),
        ("http://localhost:8081/x", ("http://localhost:8080",), False),
        ("http://[::1]:8080/x", ("http://[::1]:*",), True),
        ("https://fcm.googleapis.com/x", ("ftp://fcm.googleapis.com",), False),
        ("https://fcm.googleapis.com/x", (), False),
    ],
)
def test_endpoint_allowed(endpoint: str, patterns: tuple[str, ...], allowed: bool) -> None:
    assert endpoint_allowed(endpoint, patterns) is allowed


def notification(**fields: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "seq": 7, "type": "task", "priority": "normal", "title": "T", "body": "B",
            "data": {}, "group_key": None, "expires_at": None, **fields}  # fmt: skip


def test_payload_cuts_the_body_first_then_drops_data() -> None:
    small = json.loads(push_payload(notification(data={"url": "/a", "actions": [{"action": "x"}]})))
    assert (small["url"], small["actions"], small["body"]) == ("/a", [{"action": "x", "title": "x"}], "B")

    cut = push_payload(notification(body="é" * 3000, data={"url": "/b", "k": "v"}))
    assert len(cut) <= MAX_PLAINTEXT and len(cut) > MAX_PLAINTEXT - 8, "the body is cut no more than needed"
    parsed = json.loads(cut)
    assert parsed["body"].endswith("é…") and parsed["data"] == {"url": "/b", "k": "v"}

    both = json.loads(push_payload(notification(body="b" * 5000, data={"action_url": "/c", "blob": "x" * 5000})))
    assert both["data"] == {} and both["url"] == "/c" and both["body"].endswith("…") and len(both["body"]) > 3000

    titled = push_payload(notification(title="t" * 5000, body="b" * 5000, data={"url": "/d"}))
    assert len(titled) <= MAX_PLAINTEXT and json.loads(titled)["url"] == "/d"


def test_payload_offers_at_most_two_actions_titled_by_their_labels() -> None:
    offered = [{"action": "approve", "label": "Approve", "style": "primary"}, "junk", {"label": "no action"},
               {"action": "reject", "title": "Reject"}, {"action": "later", "label": "Later"}]  # fmt: skip
    payload = json.loads(push_payload(notification(data={"actions": offered}), receipt="r"))
    assert payload["actions"] == [{"action": "approve", "title": "Approve"}, {"action": "reject", "title": "Reject"}]
    assert (payload["receipt"], payload["data"]["actions"]) == ("r", offered)
    assert json.loads(push_payload(notification(data={"actions": "approve"})))["actions"] == []

    # Too big with them: the actions go only after the body and data could not make room.
    big = json.loads(push_payload(notification(title="t" * 5000, data={"actions": offered})))
    assert big["actions"] == [] and big["title"].endswith("…")


def test_ttl_urgency_and_topic_follow_priority_expiry_and_group() -> None:
    now = datetime.now(UTC)
    expected = {"critical": (86400, "high"), "high": (43200, "high"), "normal": (21600, "normal"), "low": (3600, "low")}
    for priority, (ttl, urgency) in expected.items():
        assert delivery_headers(notification(priority=priority), now) == (ttl, {"Urgency": urgency})
    soon = (now + timedelta(seconds=90)).isoformat()
    assert delivery_headers(notification(priority="critical", expires_at=soon), now)[0] == 90
    topic = delivery_headers(notification(group_key="build-42"), now)[1]["Topic"]
    assert len(topic) <= 32 and topic == delivery_headers(notification(group_key="build-42"), now)[1]["Topic"]
    assert topic != delivery_headers(notification(group_key="build-43"), now)[1]["Topic"]


# --- the channel on its own (no database) ----------------------------------------------------------------


def channel_delivery(push: PushService) -> tuple[Delivery, str]:
    """A delivery to a new subscription at the stand-in, as the worker hands it over, and its endpoint."""
    public, private = vapid.generate()
    browser = push.subscribe(public)
    device = Subscription(
        id=uuid.uuid4(), kind="webpush", endpoint=browser["endpoint"], p256dh=browser["keys"]["p256dh"],
        auth=browser["keys"]["auth"], fcm_token=None, device_info={},
    )  # fmt: skip
    delivery = Delivery(
        id=uuid.uuid4(), channel="push", attempts=1, notification=notification(), recipient={}, subscription=device,
        vapid_key=VapidKey(id=uuid.uuid4(), public_key=public, private_key=private), unread_count=0,
    )  # fmt: skip
    return delivery, browser["endpoint"]


def channel(allowlist: tuple[str, ...] = ("http://127.0.0.1:*",)) -> WebPushChannel:
    return WebPushChannel(
        Settings(database_url="unused", jwt_secret="unused", secrets=SecretBox(parse_key(ENCRYPTION_KEY)),
                 vapid_subject=SUBJECT, push_endpoint_allowlist=allowlist, provider_timeout=1)
    )  # fmt: skip


async def test_the_endpoint_is_checked_again_at_send_time(push_service: PushService) -> None:  # noqa: F811
    delivery, _ = channel_delivery(push_service)
    outcomes = await channel(("https://fcm.googleapis.com",)).send([delivery])
    assert outcomes == {delivery.id: Failed(NOT_ALLOWED)}
    assert push_service.requests == []


async def test_redirects_are_not_followed(push_service: PushService) -> None:  # noqa: F811
    (delivery, endpoint), (_, elsewhere) = channel_delivery(push_service), channel_delivery(push_service)
    push_service.script(endpoint, Response(307, headers={"Location": elsewhere}))
    outcome = (await channel().send([delivery]))[delivery.id]
    assert isinstance(outcome, Failed) and "redirect" in outcome.error
    assert len(push_service.requests) == 1 and push_service.messages == []


async def test_several_deliveries_go_out_at_once(push_service: PushService) -> None:  # noqa: F811
    made = [channel_delivery(push_service) for _ in range(4)]
    for _, endpoint in made:
        push_service.script(endpoint, Response(delay=0.5))
    deliveries = [d for d, _ in made]
    started = time.monotonic()
    outcomes = await channel().send(deliveries)
    assert time.monotonic() - started < 1.5, "four half-second pushes ran side by side"
    assert all(isinstance(outcomes[d.id], Sent) for d in deliveries) and len(push_service.messages) == 4


# --- encryption and VAPID signatures on their own ----------------------------------------------------------


def test_a_push_body_decrypts_with_the_browsers_keys_and_a_fresh_key_each_time() -> None:
    browser = ec.generate_private_key(ec.SECP256R1())
    point = browser.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    auth = os.urandom(16)
    plaintext = push_payload(notification(body="é" * 1300))
    first, second = (encrypt(b64url(point), b64url(auth), plaintext) for _ in range(2))
    for body in (first, second):
        assert http_ece.decrypt(body, private_key=browser, auth_secret=auth, version="aes128gcm") == plaintext
    assert len(first) <= 4096
    # Salt (16 bytes), record size, key length, then the sender's one-time public key: never reused.
    assert first[:16] != second[:16] and first[21:86] != second[21:86]


def test_the_rfc_8291_example_encrypts_to_its_published_body() -> None:
    """RFC 8291 section 5 with its salt and sender key: the same bytes as the RFC's."""
    sender = ec.derive_private_key(
        int.from_bytes(base64.urlsafe_b64decode("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw="), "big"), ec.SECP256R1()
    )
    expected = (
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6P"
        "Bru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
    )
    body = encrypt(
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
        "BTBZMqHH6r4Tts7J_aSIgg",
        b"When I grow up, I want to be a watermelon",
        salt=base64.urlsafe_b64decode("DGv6ra1nlYgDCS1FRnbzlw=="),
        ephemeral=sender,
    )
    assert b64url(body) == expected


@pytest.mark.parametrize(
    ("p256dh", "auth"),
    [
        (b64url(b"\x04" + bytes(64)), b64url(os.urandom(16))),  # not a point on the curve
        (b64url(b"\x04" + os.urandom(10)), b64url(os.urandom(16))),  # too short
        ("!!not base64!!", b64url(os.urandom(16))),
        (None, b64url(os.urandom(15))),  # an auth secret of the wrong size
    ],
)
def test_keys_that_cannot_encrypt_are_a_value_error(p256dh: str | None, auth: str) -> None:
    if p256dh is None:
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        p256dh = b64url(key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))
    with pytest.raises(ValueError):
        encrypt(p256dh, auth, b"{}")


def test_the_vapid_jwt_is_reused_within_its_lifetime_per_key_and_origin_and_renewed_before_it_ends() -> None:
    signatures = vapid.Signatures(SUBJECT)
    public, private = vapid.generate()
    key = VapidKey(id=uuid.uuid4(), public_key=public, private_key=private)
    other = VapidKey(id=uuid.uuid4(), public_key=public, private_key=private)
    now = 1_800_000_000.0
    first = signatures.authorization(key, "https://push.example", now)
    token = first.removeprefix("vapid t=").partition(",")[0]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims == {"sub": SUBJECT, "aud": "https://push.example", "exp": int(now) + vapid.JWT_LIFETIME}
    last_reuse = now + vapid.JWT_LIFETIME - vapid.RENEW_BEFORE - 1
    assert signatures.authorization(key, "https://push.example", last_reuse) == first
    assert signatures.authorization(key, "https://other.example", now) != first
    assert signatures.authorization(other, "https://push.example", now) != first
    renewed = signatures.authorization(key, "https://push.example", last_reuse + 1)
    assert renewed != first
    assert signatures.authorization(key, "https://push.example", last_reuse + 2) == renewed
