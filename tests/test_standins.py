"""The provider stand-ins against the real client libraries: what passes here, a delivery worker can rely on."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import firebase_admin
import pytest
import requests
import resend
from cryptography.hazmat.primitives import serialization
from firebase_admin import _http_client, credentials, exceptions, messaging
from py_vapid import Vapid
from py_vapid import jwt as vapid_jwt
from pywebpush import WebPusher, WebPushException, webpush
from requests.adapters import HTTPAdapter
from resend.http_client_requests import RequestsClient

from tests.standins.fcm import (
    FcmService,
    internal_error,
    invalid_argument,
    quota_exceeded,
    sender_id_mismatch,
    unavailable,
    unregistered,
)
from tests.standins.http import Response
from tests.standins.push_service import PushService, b64url
from tests.standins.resend import ResendService, application_error, new_webhook_secret, rate_limited, sign_webhook

# notifyd stores registration tokens; firebase_admin 7.5+ warns that Message(token=) is deprecated for fid=.
pytestmark = pytest.mark.filterwarnings("ignore:Message.token is deprecated")

SUB = "mailto:ops@example.com"

# --- Web Push ------------------------------------------------------------------------------------------


def new_vapid() -> Vapid:
    vapid = Vapid()
    vapid.generate_keys()
    return vapid


def application_server_key(vapid: Vapid) -> str:
    return b64url(
        vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


def raw_private_key(vapid: Vapid) -> str:
    """The env-var form of a VAPID private key: base64url of its 32 raw bytes."""
    return b64url(vapid.private_key.private_numbers().private_value.to_bytes(32, "big"))


def push(subscription: dict[str, Any], vapid: Vapid, data: str = '{"title": "hi"}', timeout: float = 1) -> Any:
    return webpush(subscription, data, vapid_private_key=vapid, vapid_claims={"sub": SUB}, timeout=timeout)


def test_push_round_trip(push_service: PushService) -> None:
    vapid = new_vapid()
    subscription = push_service.subscribe(application_server_key(vapid))
    payload = json.dumps({"title": "Nouveau message", "body": "é ✓", "url": "/n/1"})

    response = webpush(
        subscription,
        payload,
        vapid_private_key=raw_private_key(vapid),
        vapid_claims={"sub": SUB},
        ttl=3600,
        headers={"Urgency": "high", "Topic": "inbox-1"},
        timeout=1,
    )

    assert response.status_code == 201
    assert response.headers["Location"].startswith(push_service.url)
    [message] = push_service.messages
    assert message.endpoint == subscription["endpoint"]
    assert message.plaintext == payload.encode()
    assert message.json == {"title": "Nouveau message", "body": "é ✓", "url": "/n/1"}
    assert (message.ttl, message.urgency, message.topic) == (3600, "high", "inbox-1")
    assert message.vapid_key == application_server_key(vapid)
    assert message.claims["aud"] == push_service.url and message.claims["sub"] == SUB
    [request] = push_service.requests_for(subscription["endpoint"])
    assert request.headers["authorization"].startswith("vapid t=")  # pywebpush 2.5: "vapid t=<jwt>,k=<key>"
    assert request.headers["Content-Encoding"] == "aes128gcm"


def test_push_refuses_a_key_other_than_the_subscriptions(push_service: PushService) -> None:
    subscription = push_service.subscribe(application_server_key(new_vapid()))

    with pytest.raises(WebPushException) as raised:
        push(subscription, new_vapid())

    assert raised.value.response.status_code == 403
    assert push_service.messages == []


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"exp": -60}, 403),  # expired (pywebpush would refresh it, so it is signed by hand)
        ({"exp": 2 * 86400}, 403),  # more than 24 h ahead
        ({"aud": "https://push.example.com"}, 403),
        ({"sub": "ops@example.com"}, 403),  # neither mailto: nor https:
        (None, 401),  # no Authorization at all
    ],
)
def test_push_refuses_bad_vapid(push_service: PushService, claims: dict[str, Any] | None, status: int) -> None:
    vapid = new_vapid()
    subscription = push_service.subscribe(application_server_key(vapid))
    headers = {}
    if claims is not None:
        signed = {"aud": push_service.url, "sub": SUB, **claims, "exp": int(time.time()) + claims.get("exp", 3600)}
        token = vapid_jwt.sign(signed, vapid.private_key)
        headers["Authorization"] = f"vapid t={token}, k={application_server_key(vapid)}"  # RFC 8292 spelling

    response = WebPusher(subscription).send(b"hello", headers, ttl=60, timeout=1)

    assert response.status_code == status
    assert push_service.messages == []


def test_push_payload_limit_is_4096_bytes_of_ciphertext(push_service: PushService) -> None:
    vapid = new_vapid()
    subscription = push_service.subscribe(application_server_key(vapid))

    assert push(subscription, vapid, "x" * 3993).status_code == 201
    with pytest.raises(WebPushException) as raised:
        push(subscription, vapid, "x" * 3994)

    assert raised.value.response.status_code == 413
    assert [len(m.plaintext) for m in push_service.messages] == [3993]


def test_push_scripted_answers_then_normal(push_service: PushService) -> None:
    vapid = new_vapid()
    subscription = push_service.subscribe(application_server_key(vapid))
    endpoint = subscription["endpoint"]
    push_service.script(endpoint, Response(410), Response(429, headers={"Retry-After": "2"}))

    with pytest.raises(WebPushException) as gone:
        push(subscription, vapid)
    with pytest.raises(WebPushException) as throttled:
        push(subscription, vapid)
    push(subscription, vapid)

    assert gone.value.response.status_code == 410
    assert (throttled.value.status_code, throttled.value.retry_after) == (429, "2")
    assert len(push_service.requests_for(endpoint)) == 3
    assert len(push_service.messages) == 1


def test_push_unsubscribed_is_gone_and_unknown_is_not_found(push_service: PushService) -> None:
    vapid = new_vapid()
    subscription = push_service.subscribe(application_server_key(vapid))
    push_service.unsubscribe(subscription["endpoint"])
    unknown = {**subscription, "endpoint": f"{push_service.url}/push/never-issued"}

    for target, status in ((subscription, 410), (unknown, 404)):
        with pytest.raises(WebPushException) as raised:
            push(target, vapid)
        assert raised.value.response.status_code == status


def test_push_service_outage_and_recovery(push_service: PushService) -> None:
    vapid = new_vapid()
    subscription = push_service.subscribe(application_server_key(vapid))

    push_service.stop()
    with pytest.raises(requests.ConnectionError):
        push(subscription, vapid)
    push_service.start()  # same port: the subscription's endpoint is valid again
    push(subscription, vapid)

    assert len(push_service.messages) == 1


def test_push_delays_make_the_client_time_out(push_service: PushService) -> None:
    vapid = new_vapid()
    subscription = push_service.subscribe(application_server_key(vapid))
    # First a push that never completes, then one that is delivered but answered too late.
    push_service.script(subscription["endpoint"], Response(201, delay=3), Response(delay=1))

    with pytest.raises(requests.Timeout):
        push(subscription, vapid, timeout=0.3)
    with pytest.raises(requests.Timeout):
        push(subscription, vapid, timeout=0.3)

    push_service.wait_until(lambda: len(push_service.messages) == 1, timeout=2)


# --- FCM -----------------------------------------------------------------------------------------------

PROJECT = "notifyd-standin"


def point_messaging_at(app: firebase_admin.App, base_url: str) -> None:
    """What a worker does with FCM_API_URL, plus the SDK's own retry policy without its backoff sleeps."""
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{base_url}/v1/projects/{app.project_id}/messages:send"
    fast = _http_client.DEFAULT_RETRY_CONFIG.new(backoff_factor=0)
    service._client.session.mount("http://", HTTPAdapter(max_retries=fast))


@contextmanager
def firebase_app(fcm: FcmService, tmp_path: Path, http_timeout: float = 1) -> Iterator[firebase_admin.App]:
    cert = credentials.Certificate(fcm.service_account_file(tmp_path / "service-account.json", PROJECT))
    app = firebase_admin.initialize_app(cert, {"httpTimeout": http_timeout}, name=f"standin-{uuid.uuid4()}")
    try:
        point_messaging_at(app, fcm.url)
        yield app
    finally:
        firebase_admin.delete_app(app)


def test_fcm_message_arrives(fcm_service: FcmService, tmp_path: Path) -> None:
    message = messaging.Message(
        token="device-1",
        notification=messaging.Notification(title="Nouveau", body="Vous avez un message"),
        data={"notification_id": "42"},
        android=messaging.AndroidConfig(priority="high"),
        apns=messaging.APNSConfig(
            headers={"apns-priority": "10"}, payload=messaging.APNSPayload(aps=messaging.Aps(badge=3, sound="default"))
        ),
    )
    with firebase_app(fcm_service, tmp_path) as app:
        name = messaging.send(message, app=app)
        messaging.send(message, app=app)

    [first, _] = fcm_service.messages
    assert name == first.name and name.startswith(f"projects/{PROJECT}/messages/")
    assert first.token == "device-1"
    assert first.notification == {"title": "Nouveau", "body": "Vous avez un message"}
    assert first.data == {"notification_id": "42"}
    assert first.android == {"priority": "high"}
    assert first.apns == {"headers": {"apns-priority": "10"}, "payload": {"aps": {"badge": 3, "sound": "default"}}}
    token_requests = [r for r in fcm_service.requests if r.path == "/token"]
    assert len(token_requests) == 1  # the access token is cached across sends
    assert all(r.headers["Authorization"].startswith("Bearer ya29.") for r in fcm_service.requests_for("device-1"))


def test_fcm_dry_run_is_validated_not_delivered(fcm_service: FcmService, tmp_path: Path) -> None:
    with firebase_app(fcm_service, tmp_path) as app:
        name = messaging.send(messaging.Message(token="device-1", data={"a": "b"}), dry_run=True, app=app)

    assert name == f"projects/{PROJECT}/messages/fake_message_id"
    assert fcm_service.messages == []


def test_fcm_accepts_installation_ids(fcm_service: FcmService, tmp_path: Path) -> None:
    fcm_service.script("fid-1", unregistered())

    with firebase_app(fcm_service, tmp_path) as app:
        with pytest.raises(messaging.UnregisteredError):
            messaging.send(messaging.Message(fid="fid-1"), app=app)
        messaging.send(messaging.Message(fid="fid-1"), app=app)

    [message] = fcm_service.messages
    assert (message.fid, message.token) == ("fid-1", None)


@pytest.mark.parametrize(
    ("answer", "error", "requests_made"),
    [
        (unregistered(), messaging.UnregisteredError, 1),
        (sender_id_mismatch(), messaging.SenderIdMismatchError, 1),
        (invalid_argument(), exceptions.InvalidArgumentError, 1),
        (quota_exceeded(), messaging.QuotaExceededError, 1),  # without Retry-After: not retried
        (unavailable(), exceptions.UnavailableError, 5),  # the SDK itself tries 5 times
        (internal_error(), exceptions.InternalError, 5),
    ],
)
def test_fcm_errors_map_to_sdk_exceptions(
    fcm_service: FcmService, tmp_path: Path, answer: Response, error: type[Exception], requests_made: int
) -> None:
    fcm_service.script("device-1", *[answer] * 5)

    with firebase_app(fcm_service, tmp_path) as app, pytest.raises(error):
        messaging.send(messaging.Message(token="device-1"), app=app)

    assert len(fcm_service.requests_for("device-1")) == requests_made
    assert fcm_service.messages == []


def test_fcm_sdk_retries_transient_errors_itself(fcm_service: FcmService, tmp_path: Path) -> None:
    fcm_service.script("device-1", unavailable(), quota_exceeded(retry_after=1))

    started = time.monotonic()
    with firebase_app(fcm_service, tmp_path) as app:
        messaging.send(messaging.Message(token="device-1"), app=app)

    assert time.monotonic() - started >= 1  # it slept the 429's Retry-After before trying again
    assert len(fcm_service.requests_for("device-1")) == 3
    assert len(fcm_service.messages) == 1


def test_fcm_unregistered_token_stays_unregistered(fcm_service: FcmService, tmp_path: Path) -> None:
    fcm_service.unregister("device-1")

    with firebase_app(fcm_service, tmp_path) as app:
        for _ in range(2):
            with pytest.raises(messaging.UnregisteredError):
                messaging.send(messaging.Message(token="device-1"), app=app)
        messaging.send(messaging.Message(token="device-2"), app=app)

    assert [m.token for m in fcm_service.messages] == ["device-2"]


def test_fcm_timeout_is_retried_once_then_unavailable(fcm_service: FcmService, tmp_path: Path) -> None:
    # Both attempts reach FCM and are delivered; the sender only sees timeouts: a duplicate in the making.
    fcm_service.script("device-1", Response(delay=1), Response(delay=1))

    with firebase_app(fcm_service, tmp_path, http_timeout=0.3) as app, pytest.raises(exceptions.UnavailableError):
        messaging.send(messaging.Message(token="device-1"), app=app)

    fcm_service.wait_until(lambda: len(fcm_service.messages) == 2, timeout=3)


def test_fcm_refuses_foreign_tokens_and_assertions(fcm_service: FcmService) -> None:
    send_url = f"{fcm_service.url}/v1/projects/{PROJECT}/messages:send"
    unauthenticated = requests.post(send_url, json={"message": {"token": "t"}}, headers={"Authorization": "Bearer x"})
    forged = requests.post(
        f"{fcm_service.url}/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "a.b.c"},
    )

    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["status"] == "UNAUTHENTICATED"
    assert (forged.status_code, forged.json()["error"]) == (400, "invalid_grant")


# --- Resend --------------------------------------------------------------------------------------------


@pytest.fixture
def resend_client(resend_service: ResendService, monkeypatch: pytest.MonkeyPatch) -> ResendService:
    """The resend SDK's module globals pointed at the stand-in, restored after the test."""
    monkeypatch.setattr(resend, "api_url", resend_service.url)
    monkeypatch.setattr(resend, "api_key", resend_service.api_key)
    monkeypatch.setattr(resend, "default_http_client", RequestsClient(timeout=1))
    return resend_service


def email(**overrides: Any) -> Any:
    params = {
        "from": "notifyd <notifications@example.com>",
        "to": ["ada@example.com"],
        "subject": "Nouveau message",
        "html": "<p>Bonjour</p>",
        "text": "Bonjour",
        "headers": {
            "List-Unsubscribe": "<https://notifyd.example.com/u/TOKEN>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
    return {**params, **overrides}


def test_resend_email_is_recorded(resend_client: ResendService) -> None:
    sent = resend.Emails.send(email(), {"idempotency_key": "delivery/1"})

    [recorded] = resend_client.emails
    assert sent["id"] == recorded.id
    assert recorded.idempotency_key == "delivery/1"
    assert (recorded.from_, recorded.to, recorded.subject) == (
        "notifyd <notifications@example.com>",
        ["ada@example.com"],
        "Nouveau message",
    )
    assert (recorded.html, recorded.text) == ("<p>Bonjour</p>", "Bonjour")
    assert recorded.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [request] = resend_client.requests
    assert request.headers["Idempotency-Key"] == "delivery/1"
    assert request.headers["Authorization"] == f"Bearer {resend_client.api_key}"


def test_resend_idempotency_key_replays_or_conflicts(resend_client: ResendService) -> None:
    first = resend.Emails.send(email(), {"idempotency_key": "delivery/1"})
    replay = resend.Emails.send(email(), {"idempotency_key": "delivery/1"})
    with pytest.raises(resend.exceptions.ResendError) as raised:
        resend.Emails.send(email(subject="Autre"), {"idempotency_key": "delivery/1"})

    assert replay["id"] == first["id"]
    assert (raised.value.code, raised.value.error_type) == (409, "invalid_idempotent_request")
    assert len(resend_client.emails) == 1
    assert len(resend_client.requests) == 3


def test_resend_retry_during_a_slow_first_request(resend_client: ResendService) -> None:
    resend_client.script(Response(delay=1.5))  # accepted, but answered after the client's 1 s timeout

    with pytest.raises(resend.exceptions.ResendError) as timed_out:
        resend.Emails.send(email(), {"idempotency_key": "delivery/1"})
    with pytest.raises(resend.exceptions.ResendError) as concurrent:
        resend.Emails.send(email(), {"idempotency_key": "delivery/1"})
    time.sleep(1)  # past the first request's answer
    replay = resend.Emails.send(email(), {"idempotency_key": "delivery/1"})

    assert (timed_out.value.code, timed_out.value.error_type) == (500, "HttpClientError")
    assert (concurrent.value.code, concurrent.value.error_type) == (409, "concurrent_idempotent_requests")
    [recorded] = resend_client.emails
    assert replay["id"] == recorded.id


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"subject": None}, resend.exceptions.MissingRequiredFieldsError),
        ({"html": None, "text": None}, resend.exceptions.MissingRequiredFieldsError),
        ({"to": ["not an address"]}, resend.exceptions.ValidationError),
    ],
)
def test_resend_validation(resend_client: ResendService, overrides: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        resend.Emails.send(email(**overrides))

    assert resend_client.emails == []


def test_resend_api_key(resend_client: ResendService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resend, "api_key", "re_wrong")
    with pytest.raises(resend.exceptions.InvalidApiKeyError):
        resend.Emails.send(email())
    missing = requests.post(f"{resend_client.url}/emails", json=email())

    assert missing.status_code == 401
    assert missing.json() == {
        "statusCode": 401,
        "name": "missing_api_key",
        "message": "Missing API key in the authorization header.",
    }
    assert resend_client.emails == []


def test_resend_scripted_errors(resend_client: ResendService) -> None:
    resend_client.script(rate_limited(retry_after=2), application_error())
    resend_client.script(application_error(), to="bob@example.com")

    with pytest.raises(resend.exceptions.RateLimitError) as limited:
        resend.Emails.send(email())
    with pytest.raises(resend.exceptions.ApplicationError):
        resend.Emails.send(email(to="bob@example.com"))  # the recipient's own script goes first
    with pytest.raises(resend.exceptions.ApplicationError):
        resend.Emails.send(email())
    resend.Emails.send(email())

    assert limited.value.headers["retry-after"] == "2"
    assert [e.to for e in resend_client.emails] == [["ada@example.com"]]


def test_resend_webhook_is_svix_signed(resend_client: ResendService) -> None:
    sent = resend.Emails.send(email())
    secret = new_webhook_secret()
    body = resend_client.webhook_event("email.bounced", sent["id"], bounce={"type": "Transient"})
    headers = sign_webhook(secret, body)

    event = resend.Webhooks.verify(
        {
            "payload": body.decode(),
            "headers": {
                "id": headers["svix-id"],
                "timestamp": headers["svix-timestamp"],
                "signature": headers["svix-signature"],
            },
            "webhook_secret": secret,
        }
    )

    assert event["type"] == "email.bounced"
    assert event["data"]["email_id"] == sent["id"]
    assert event["data"]["to"] == ["ada@example.com"]
    assert event["data"]["bounce"]["type"] == "Transient" and event["data"]["bounce"]["subType"] == "General"
    assert headers["svix-signature"].startswith("v1,")
