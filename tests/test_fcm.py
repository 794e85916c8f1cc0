"""The FCM channel: firebase-admin against the FCM stand-in, in-process and through a real worker."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import firebase_admin
import httpx
import psycopg
import pytest
from firebase_admin import messaging
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from notifyd.core.config import Settings
from notifyd.domain import fcm
from notifyd.domain.deliveries import Delivery, Failed, Gone, Outcome, Retry, Sent, Skipped, Subscription
from tests.server import QUICK_WORKER_ENV, ServerProcess, WorkerProcess, make_token, wait_for
from tests.standins.fcm import (
    FcmMessage,
    FcmService,
    fcm_error,
    google_error,
    internal_error,
    invalid_argument,
    quota_exceeded,
    sender_id_mismatch,
    unavailable,
    unregistered,
)
from tests.standins.http import Response

PROJECT = "notifyd-fcm-test"


# --- the channel in-process ------------------------------------------------------------------------------


@pytest.fixture
def credentials_file(fcm_service: FcmService, tmp_path: Path) -> Path:
    return fcm_service.service_account_file(tmp_path / "service-account.json", PROJECT)


@pytest.fixture
def make_channel(fcm_service: FcmService, credentials_file: Path) -> Iterator[Any]:
    """make_channel(**settings) -> an FcmChannel on the stand-in; its firebase app is deleted afterwards."""

    def make(**overrides: Any) -> fcm.FcmChannel:
        settings: dict[str, Any] = {
            "google_application_credentials": str(credentials_file),
            "fcm_api_url": fcm_service.url,
            "provider_timeout": 1.0,
            **overrides,
        }
        return fcm.FcmChannel(Settings(database_url="postgresql://unused", jwt_secret="unused", **settings))

    yield make
    for app in list(firebase_admin._apps.values()):
        if app.name.startswith("notifyd-fcm-"):
            firebase_admin.delete_app(app)


def delivery(token: str, **notification: Any) -> Delivery:
    """A claimed delivery to FCM device `token`, as the ledger hands it to the channel."""
    n = {
        "id": str(uuid.uuid4()),
        "type": "task",
        "priority": "normal",
        "title": "Title",
        "body": "Body",
        "data": {},
        "group_key": None,
        "seq": 1,
        "created_at": datetime.now(UTC).isoformat(),
        "expires_at": None,
        **notification,
    }
    device = Subscription(uuid.uuid4(), "fcm", None, None, None, token, {})
    return Delivery(uuid.uuid4(), "push", 1, n, {"user_id": str(uuid.uuid4())}, device, None, unread_count=1)


async def send_one(channel: fcm.FcmChannel, token: str, **notification: Any) -> Outcome:
    one = delivery(token, **notification)
    return (await channel.send([one]))[one.id]


def test_not_configured_names_the_setting(make_channel: Any, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")

    assert make_channel(google_application_credentials=None).not_configured() == fcm.NOT_SET
    missing = make_channel(google_application_credentials=str(tmp_path / "missing.json")).not_configured()
    assert missing is not None and missing.startswith(
        f"FCM is not configured: GOOGLE_APPLICATION_CREDENTIALS ({tmp_path / 'missing.json'}) cannot be read: "
    )
    unreadable = make_channel(google_application_credentials=str(garbage)).not_configured()
    assert unreadable is not None and "cannot be read" in unreadable
    assert make_channel().not_configured() is None


async def test_a_channel_that_is_not_configured_skips(make_channel: Any) -> None:
    assert await send_one(make_channel(google_application_credentials=None), "device-1") == Skipped(fcm.NOT_SET)


def test_the_sdk_still_keeps_its_send_url_where_the_channel_sets_it(
    make_channel: Any, fcm_service: FcmService, credentials_file: Path
) -> None:
    # firebase-admin has no option for the endpoint; if this fails, the SDK moved the private attribute
    # notifyd.domain.fcm.point_messaging sets, and FCM_API_URL (every stand-in test) no longer works.
    plain = firebase_admin.initialize_app(
        firebase_admin.credentials.Certificate(str(credentials_file)), name=f"plain-{uuid.uuid4()}"
    )
    try:
        default = messaging._get_messaging_service(plain)
        assert default._fcm_url == fcm.DEFAULT_API_URL + fcm.SEND_PATH.format(project=PROJECT)
        assert default._client.session.get_adapter(fcm.DEFAULT_API_URL) is not None
    finally:
        firebase_admin.delete_app(plain)

    channel = make_channel()
    assert channel.not_configured() is None
    service = messaging._get_messaging_service(channel._firebase_app())
    assert service._fcm_url == f"{fcm_service.url}/v1/projects/{PROJECT}/messages:send"
    assert service._client.session.get_adapter(service._fcm_url).max_retries is fcm.LEDGER_RETRIES


def test_an_sdk_without_those_attributes_is_not_configured_rather_than_sending_to_google() -> None:
    with pytest.raises(fcm.FcmSetupError, match=r"firebase-admin \S+ has no messaging service attribute _fcm_url"):
        fcm.point_messaging(object(), "http://127.0.0.1:1", PROJECT)


def test_project_id_defaults_to_the_service_accounts(make_channel: Any) -> None:
    app = make_channel()._firebase_app()
    assert app.project_id == PROJECT
    assert make_channel(fcm_project_id="other-project")._firebase_app().project_id == "other-project"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (unregistered(), Gone("UnregisteredError: Requested entity was not found.")),
        (sender_id_mismatch(), Gone("SenderIdMismatchError: SenderId mismatch")),
        (
            invalid_argument(),
            Gone("InvalidArgumentError: The registration token is not a valid FCM registration token"),
        ),
        # INVALID_ARGUMENT about the message, not the token: the device is fine.
        (
            google_error(400, "INVALID_ARGUMENT", "Message is too big"),
            Failed("InvalidArgumentError: Message is too big"),
        ),
        (
            quota_exceeded(),
            Retry(
                "QuotaExceededError: Quota exceeded for quota metric 'Send messages' of service 'fcm.googleapis.com'."
            ),
        ),
        (unavailable(), Retry("UnavailableError: The service is currently unavailable.")),
        (internal_error(), Retry("InternalError: Internal error encountered.")),
        (google_error(403, "PERMISSION_DENIED", "nope"), Failed("PermissionDeniedError: nope")),
    ],
    ids=["unregistered", "sender-mismatch", "bad-token", "bad-message", "quota", "unavailable", "internal", "denied"],
)
async def test_fcm_answers_map_to_outcomes_in_one_request(
    make_channel: Any,
    fcm_service: FcmService,
    answer: Response,
    expected: Outcome,
) -> None:
    fcm_service.script("device-1", answer)

    assert await send_one(make_channel(), "device-1") == expected
    # The SDK's own retries (5 requests for a 5xx) are off: the ledger retries, with backoff and strikes.
    assert len(fcm_service.requests_for("device-1")) == 1


@pytest.mark.parametrize("retry_after", ["7", "http-date"])
async def test_retry_after_is_passed_to_the_ledger(
    make_channel: Any,
    fcm_service: FcmService,
    retry_after: str,
) -> None:
    if retry_after == "http-date":
        retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fcm_service.script(
        "device-1", fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "slow down", **{"Retry-After": retry_after})
    )

    started = time.monotonic()
    answer = await send_one(make_channel(), "device-1")

    assert time.monotonic() - started < 1  # not slept by the SDK
    assert isinstance(answer, Retry) and answer.retry_after is not None
    assert 25 <= answer.retry_after <= 30 if retry_after != "7" else answer.retry_after == 7


async def test_a_timeout_is_retried_by_the_ledger_not_resent_by_the_sdk(
    make_channel: Any,
    fcm_service: FcmService,
) -> None:
    fcm_service.script("device-1", Response(delay=2))

    answer = await send_one(make_channel(provider_timeout=0.3), "device-1")

    assert isinstance(answer, Retry) and answer.error.startswith("DeadlineExceededError: ")
    assert len(fcm_service.requests_for("device-1")) == 1


async def test_a_send_that_never_returns_is_given_up_on(make_channel: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    channel = make_channel(provider_timeout=0.02)
    # Far longer than the deadline (0.08 s), so that waiting for it cannot pass for giving up on a loaded machine.
    monkeypatch.setattr(messaging, "send_each", lambda messages, app: time.sleep(2.0))

    started = time.monotonic()
    answer = await send_one(channel, "device-1")

    assert time.monotonic() - started < 1.0
    assert answer == Retry(fcm.NO_ANSWER.format(seconds=fcm.DEADLINE_TIMEOUTS * 0.02))


async def test_batches_hold_at_most_500_messages(make_channel: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []

    def send_each(messages: list[messaging.Message], app: firebase_admin.App) -> messaging.BatchResponse:
        sizes.append(len(messages))
        return messaging.BatchResponse([messaging.SendResponse({"name": m.token}, None) for m in messages])

    monkeypatch.setattr(messaging, "send_each", send_each)
    many = [delivery(f"device-{i}") for i in range(501)]

    answers = await make_channel().send(many)

    assert sorted(sizes) == [1, 500]
    assert all(answers[d.id] == Sent(f"device-{i}") for i, d in enumerate(many))


async def test_a_delivery_without_a_token_fails_alone(make_channel: Any, fcm_service: FcmService) -> None:
    broken = delivery("")
    fine = delivery("device-1")

    answers = await make_channel().send([broken, fine])

    assert answers[broken.id] == Failed(fcm.NO_TOKEN)
    assert isinstance(answers[fine.id], Sent)


def test_data_is_strings_without_the_keys_fcm_refuses() -> None:
    one = delivery(
        "device-1",
        seq=12,
        data={"from": "x", "google.sent": 1, "gcm_id": 2, "message_type": "y", "n": 3, "ok": True, "url": "/a"},
    )
    data = fcm.message_data(one.notification)

    assert data == {
        "n": "3",
        "ok": "true",
        "url": "/a",
        "notification_id": one.notification["id"],
        "type": "task",
        "priority": "normal",
        "seq": "12",
    }


def test_a_message_too_big_for_fcm_is_cut_body_first_then_data() -> None:
    now = datetime.now(UTC)
    long_body = delivery("t", body="word " * 2000, data={"ref": "x" * 1000, "action_url": "/o/1"})
    big_data = delivery("t", body="short", data={"blob": "x" * 5000, "url": "/o/2"})
    silent = delivery("t", data={"silent": True, "blob": "x" * 5000})

    def payload(one: Delivery) -> tuple[messaging.Notification | None, dict[str, str], int]:
        message = fcm.build_message(one, "t", {}, now)
        shown = message.notification
        sent = {"title": shown and shown.title, "body": shown and shown.body, "data": message.data}
        size = len(json.dumps(sent, ensure_ascii=False).encode())
        assert size <= fcm.MAX_PAYLOAD_BYTES
        return shown, message.data, size

    notification, data, size = payload(long_body)
    assert notification is not None and notification.body.endswith("…") and len(notification.body) > 2000
    assert size > fcm.MAX_PAYLOAD_BYTES - 10  # cut no more than needed
    assert (data["ref"], data["url"]) == ("x" * 1000, "/o/1")
    notification, data, _ = payload(big_data)
    assert notification is not None and notification.body == "short"
    assert data.keys() == {"notification_id", "type", "priority", "seq", "url"} and data["url"] == "/o/2"
    notification, data, _ = payload(silent)
    assert notification is None and data.keys() == {"notification_id", "type", "priority", "seq", "silent"}


def test_ttl_is_web_pushs_and_never_outlives_the_notification() -> None:
    now = datetime.now(UTC)
    expiring = delivery("t", priority="critical", expires_at=(now + timedelta(minutes=10)).isoformat())
    expired = delivery("t", expires_at=(now - timedelta(minutes=1)).isoformat())

    def ttl(one: Delivery) -> int:
        message = fcm.build_message(one, "t", {}, now)
        assert message.apns.headers["apns-expiration"] == str(int(now.timestamp()) + message.android.ttl)
        return int(message.android.ttl)

    assert ttl(delivery("t", priority="critical")) == 24 * 3600
    assert ttl(delivery("t", priority="low")) == 3600
    assert 599 <= ttl(expiring) <= 600
    assert ttl(expired) == 0


# --- through a real worker ---------------------------------------------------------------------------------

LEDGER = """
SELECT d.subscription_id, d.status, d.reason, d.error_message, d.provider_message_id, d.attempts,
       s.is_active, s.deactivated_reason, s.failure_count, s.last_used_at
FROM notify.notification_deliveries AS d JOIN notify.push_subscriptions AS s ON s.id = d.subscription_id
WHERE d.notification_id = %s
"""


@pytest.fixture
def server(own_server: Any) -> ServerProcess:
    return own_server()  # type: ignore[no-any-return]


@pytest.fixture
def worker_env(fcm_service: FcmService, credentials_file: Path, quick_retries: None) -> dict[str, str]:
    return {
        **QUICK_WORKER_ENV,
        "GOOGLE_APPLICATION_CREDENTIALS": str(credentials_file),
        "FCM_PROJECT_ID": PROJECT,
        "FCM_API_URL": fcm_service.url,
    }


@pytest.fixture
def worker(own_worker: Any, worker_env: dict[str, str]) -> WorkerProcess:
    return own_worker(**worker_env)  # type: ignore[no-any-return]


def register(server: ServerProcess, user: uuid.UUID, token: str, platform: str = "ios", **device_info: Any) -> str:
    """The phone app registering its FCM token through REST; returns the device's id."""
    answer = httpx.post(
        f"{server.url}/api/v1/notifications/push/subscribe",
        json={"fcm_token": token, "device_info": {"platform": platform, **device_info}},
        headers={"Authorization": f"Bearer {make_token(user)}"},
        timeout=5,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def send(service: psycopg.Connection[Any], user: uuid.UUID, **fields: Any) -> str:
    """notify.send as a service; returns the notification id."""
    fields = {"type": "task", "title": "Order shipped", "body": "It is on its way", **fields}
    if "data" in fields:
        fields["data"] = Jsonb(fields["data"])
    args = ", ".join(f"{k} => %({k})s" for k in fields)
    row = service.execute(f"SELECT notify.send(user_id => %(user)s, {args})", {"user": user, **fields}).fetchone()
    assert row is not None
    return str(row[0])


def settled(db: psycopg.Connection[Any], notification_id: str, timeout: float = 15) -> dict[str, dict[str, Any]]:
    """The push deliveries of a notification by device id, once none is pending any more."""

    def done() -> dict[str, dict[str, Any]] | None:
        rows = db.cursor(row_factory=dict_row).execute(LEDGER, (notification_id,)).fetchall()
        if rows and all(r["status"] != "pending" for r in rows):
            return {str(r["subscription_id"]): r for r in rows}
        return None

    return wait_for(done, timeout, what=f"the FCM deliveries of {notification_id} to settle")  # type: ignore[no-any-return]


def to(fcm_service: FcmService, token: str) -> list[FcmMessage]:
    return [m for m in fcm_service.messages if m.token == token]


def test_ios_and_android_devices_get_badge_sound_channel_and_data(
    db: psycopg.Connection[Any], service: Any, server: ServerProcess, worker: WorkerProcess, fcm_service: FcmService
) -> None:
    user = uuid.uuid4()
    iphone = register(server, user, "iphone-token", os_version="17.0")
    pixel = register(server, user, "pixel-token", "android", android_channel_id="orders")
    for _ in range(2):  # unread, in the app only: the badge counts them too
        send(service, user, channels=["in_app"])
    data = {"url": "/orders/7", "sound": "chime.caf", "category": "ORDER", "items": 2, "tags": ["a"]}

    sent = send(service, user, priority="high", data=data, group_key="order-7")

    ledger = settled(db, sent)
    ios, android = to(fcm_service, "iphone-token"), to(fcm_service, "pixel-token")
    assert len(ios) == len(android) == 1
    for device, [message] in ((iphone, ios), (pixel, android)):
        row = ledger[device]
        assert (row["status"], row["provider_message_id"], row["attempts"]) == ("sent", message.name, 1)
        assert row["last_used_at"] is not None and row["is_active"]
        assert message.notification == {"title": "Order shipped", "body": "It is on its way"}
        assert message.data is not None
        assert message.data == {
            "url": "/orders/7", "sound": "chime.caf", "category": "ORDER", "items": "2", "tags": '["a"]',
            "notification_id": sent, "type": "task", "priority": "high", "seq": message.data["seq"],
        }  # fmt: skip
        assert int(message.data["seq"]) > 0
        assert message.apns is not None
        expiration = int(message.apns["headers"].pop("apns-expiration"))
        assert abs(expiration - (time.time() + 12 * 3600)) < 60
        assert message.apns == {
            "headers": {"apns-priority": "10", "apns-push-type": "alert"},
            "payload": {"aps": {"badge": 3, "sound": "chime.caf", "thread-id": "order-7", "category": "ORDER"}},
        }
    assert ios[0].android == {
        "priority": "high",
        "ttl": "43200s",
        "notification": {"channel_id": "notifyd", "sound": "chime.caf", "tag": "order-7", "notification_count": 3},
    }
    assert android[0].android is not None and android[0].android["notification"]["channel_id"] == "orders"


def test_a_silent_message_is_data_only(
    db: psycopg.Connection[Any], service: Any, server: ServerProcess, worker: WorkerProcess, fcm_service: FcmService
) -> None:
    user = uuid.uuid4()
    device = register(server, user, "sync-token")

    sent = send(service, user, priority="critical", data={"silent": True, "sync": "inbox"})

    assert settled(db, sent)[device]["status"] == "sent"
    [message] = to(fcm_service, "sync-token")
    assert message.notification is None
    assert message.data is not None and (message.data["silent"], message.data["sync"]) == ("true", "inbox")
    assert message.android is not None and "notification" not in message.android
    assert message.android["priority"] == "normal"
    assert message.apns is not None
    assert message.apns["payload"] == {"aps": {"content-available": 1}}
    assert (message.apns["headers"]["apns-push-type"], message.apns["headers"]["apns-priority"]) == ("background", "5")


def test_dead_tokens_deactivate_their_device_at_once(
    db: psycopg.Connection[Any], service: Any, server: ServerProcess, worker: WorkerProcess, fcm_service: FcmService
) -> None:
    user = uuid.uuid4()
    fcm_service.unregister("uninstalled")
    fcm_service.script("other-project", sender_id_mismatch())
    fcm_service.script("garbled", invalid_argument())
    devices = {token: register(server, user, token) for token in ("uninstalled", "other-project", "garbled", "fine")}

    ledger = settled(db, send(service, user))

    for token, error in [
        ("uninstalled", "UnregisteredError"),
        ("other-project", "SenderIdMismatchError"),
        ("garbled", "InvalidArgumentError"),
    ]:
        row = ledger[devices[token]]
        assert (row["status"], row["reason"], row["attempts"]) == ("failed", "the device is gone", 1), token
        assert not row["is_active"] and error in row["deactivated_reason"], token
        assert row["error_message"].startswith(error), token
        assert len(fcm_service.requests_for(token)) == 1
    assert ledger[devices["fine"]]["status"] == "sent" and ledger[devices["fine"]]["is_active"]


def test_quota_unavailable_and_timeouts_are_retried_then_sent(
    db: psycopg.Connection[Any], service: Any, server: ServerProcess, worker: WorkerProcess, fcm_service: FcmService
) -> None:
    user = uuid.uuid4()
    fcm_service.script("quota", quota_exceeded())
    fcm_service.script("unavailable", unavailable())
    fcm_service.script("slow", Response(delay=2))  # PROVIDER_TIMEOUT=1
    devices = {token: register(server, user, token) for token in ("quota", "unavailable", "slow")}

    ledger = settled(db, send(service, user))

    for token, device in devices.items():
        row = ledger[device]
        assert (row["status"], row["attempts"], row["failure_count"], row["is_active"]) == ("sent", 2, 0, True), token
        assert row["provider_message_id"] == to(fcm_service, token)[-1].name
        assert len(fcm_service.requests_for(token)) == 2, token
    # The slow one reached FCM the first time too: the one repeat a timeout can cause, and why it is retried.
    assert len(to(fcm_service, "slow")) == 2


def test_three_consecutive_failures_deactivate_the_device(
    db: psycopg.Connection[Any], service: Any, server: ServerProcess, worker: WorkerProcess, fcm_service: FcmService
) -> None:
    user = uuid.uuid4()
    fcm_service.script("flaky", *[internal_error()] * 3)
    device = register(server, user, "flaky")

    row = settled(db, send(service, user))[device]

    assert (row["status"], row["attempts"], row["is_active"]) == ("failed", 3, False)
    assert row["reason"] == "the device was deactivated"
    assert row["deactivated_reason"].startswith("3 consecutive failures, the last: InternalError")
    assert len(fcm_service.requests_for("flaky")) == 3 and to(fcm_service, "flaky") == []


@pytest.mark.parametrize("credentials", ["", "/nonexistent/service-account.json"], ids=["unset", "missing-file"])
def test_without_credentials_fcm_is_skipped_and_the_worker_keeps_running(
    db: psycopg.Connection[Any],
    service: Any,
    server: ServerProcess,
    own_worker: Any,
    worker_env: dict[str, str],
    fcm_service: FcmService,
    credentials: str,
) -> None:
    worker = own_worker(**{**worker_env, "GOOGLE_APPLICATION_CREDENTIALS": credentials})
    user = uuid.uuid4()
    device = register(server, user, "device-1")
    expected = (
        fcm.NOT_SET
        if not credentials
        else f"FCM is not configured: GOOGLE_APPLICATION_CREDENTIALS ({credentials}) cannot be read: "
    )

    for _ in range(2):
        row = settled(db, send(service, user))[device]
        assert row["status"] == "skipped" and row["reason"].startswith(expected)
        assert row["is_active"] and row["failure_count"] == 0

    assert worker.proc is not None and worker.proc.poll() is None
    assert f"fcm: {expected}" in worker.log()
    assert fcm_service.requests == []
