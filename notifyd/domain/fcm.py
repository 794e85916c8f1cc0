"""The FCM channel: mobile push to iOS (APNs through FCM) and Android with firebase-admin.

One firebase app per channel, made lazily so that missing or broken credentials become a sentence
from `not_configured()` (the deliveries are skipped) and never stop the worker. The SDK's blocking
`send_each` runs in a thread, at most 500 messages a call, under a deadline of our own.

Retries are the ledger's, not the SDK's: its default policy sleeps on any Retry-After (without
bound, inside the job) and retries 500/503 four times within one attempt, which hides failures from
the ledger's backoff and strike count. The channel remounts the messaging session without those.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import firebase_admin
import requests
from firebase_admin import credentials, exceptions, messaging
from urllib3.util.retry import Retry as UrllibRetry

from notifyd.core.config import Settings
from notifyd.domain.deliveries import Delivery, Failed, Gone, Outcome, Retry, Sent, Skipped
from notifyd.domain.push import delivery_headers, retry_after_seconds

DEFAULT_API_URL = "https://fcm.googleapis.com"
SEND_PATH = "/v1/projects/{project}/messages:send"
MAX_BATCH = 500  # send_each refuses more
# The SDK makes one request per message, each bounded by httpTimeout, plus perhaps an OAuth2 token
# request and a second connect: a thread that is still busy after this many timeouts is given up on.
DEADLINE_TIMEOUTS = 4

NOT_SET = "FCM is not configured: GOOGLE_APPLICATION_CREDENTIALS is not set"
UNREADABLE = "FCM is not configured: GOOGLE_APPLICATION_CREDENTIALS ({path}) cannot be read: {error}"
NO_PROJECT = "FCM is not configured: FCM_PROJECT_ID is not set and {path} names no project_id"
SDK_MOVED = (
    "FCM is not configured: firebase-admin {version} has no messaging service attribute {attribute}, "
    "which notifyd.domain.fcm sets; notifyd needs updating for this firebase-admin version"
)
NO_TOKEN = "the delivery has no FCM registration token"
NO_ANSWER = "FCM did not answer within {seconds:g} s"
UNENCODABLE = "firebase-admin refused the message: {error}"

URGENT = frozenset({"critical", "high"})
DEFAULT_CHANNEL_ID = "notifyd"
DEFAULT_SOUND = "default"
# FCM refuses these data keys ("from", "message_type", anything starting with google or gcm).
RESERVED_DATA_KEYS = frozenset({"from", "message_type"})
RESERVED_DATA_PREFIXES = ("google", "gcm")
# FCM refuses a message whose notification and data exceed 4,096 bytes (APNs: the whole payload):
# what is left is room for badge, sound, category and thread-id.
MAX_PAYLOAD_BYTES = 3800
# What survives when the notification's own data does not fit: the app can fetch the rest by id.
KEPT_DATA = frozenset({"notification_id", "type", "priority", "seq", "url", "silent"})
ELLIPSIS = "…"

# Connection failures are retried once (nothing reached FCM); everything else surfaces to the ledger.
# read=False: a read timeout re-raised as such (DeadlineExceededError) rather than a second POST.
LEDGER_RETRIES = UrllibRetry(
    connect=1, read=False, status=0, status_forcelist=(), respect_retry_after_header=False, allowed_methods=None
)
# Gone: the token will never work again. Retry: FCM's side, or the network, may recover.
GONE_ERRORS = (messaging.UnregisteredError, messaging.SenderIdMismatchError)
RETRY_ERRORS = (
    exceptions.ResourceExhaustedError,  # QUOTA_EXCEEDED and any other 429
    exceptions.UnavailableError,  # 503, and connection failures
    exceptions.InternalError,
    exceptions.DeadlineExceededError,  # timeouts
)


class FcmSetupError(Exception):
    """The channel cannot be made: the message is what `not_configured()` says."""


class FcmChannel:
    queue = "fcm"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._app: firebase_admin.App | None = None
        # Unique: the SDK keeps apps in a process-wide registry by name.
        self._name = f"notifyd-fcm-{uuid.uuid4()}"

    def not_configured(self) -> str | None:
        try:
            self._firebase_app()
        except FcmSetupError as error:
            return str(error)
        return None

    def _firebase_app(self) -> firebase_admin.App:
        if self._app is None:
            self._app = initialize(self._settings, self._name)
        return self._app

    async def send(self, deliveries: Sequence[Delivery]) -> Mapping[uuid.UUID, Outcome]:
        try:
            app = self._firebase_app()
        except FcmSetupError as error:
            return {d.id: Skipped(str(error)) for d in deliveries}
        outcomes: dict[uuid.UUID, Outcome] = {}
        ready: list[tuple[uuid.UUID, messaging.Message]] = []
        now = datetime.now(UTC)
        for delivery in deliveries:
            device = delivery.subscription
            token = device.fcm_token if device is not None else None
            if device is None or not token:
                outcomes[delivery.id] = Failed(NO_TOKEN)
            else:
                ready.append((delivery.id, build_message(delivery, token, device.device_info, now)))
        deadline = DEADLINE_TIMEOUTS * self._settings.provider_timeout
        batches = [ready[i : i + MAX_BATCH] for i in range(0, len(ready), MAX_BATCH)]
        for answered in await asyncio.gather(*(send_batch(app, batch, deadline) for batch in batches)):
            outcomes.update(answered)
        return outcomes

    async def close(self) -> None:
        """Deletes the firebase app, and with it the SDK's HTTP session."""
        if self._app is not None:
            firebase_admin.delete_app(self._app)
            self._app = None


def initialize(settings: Settings, name: str) -> firebase_admin.App:
    """A firebase app for the settings' service account, its messaging service pointed and tuned."""
    path = settings.google_application_credentials
    if path is None:
        raise FcmSetupError(NOT_SET)
    try:
        cred = credentials.Certificate(path)
    except (OSError, ValueError) as error:
        raise FcmSetupError(UNREADABLE.format(path=path, error=error)) from None
    project = settings.fcm_project_id or cred.project_id
    if not project:
        raise FcmSetupError(NO_PROJECT.format(path=path))
    app = firebase_admin.initialize_app(
        cred, {"projectId": project, "httpTimeout": settings.provider_timeout}, name=name
    )
    try:
        point_messaging(messaging._get_messaging_service(app), settings.fcm_api_url or DEFAULT_API_URL, project)
    except FcmSetupError:
        firebase_admin.delete_app(app)
        raise
    return app


def point_messaging(service: Any, base_url: str, project: str) -> None:
    """Sends through `base_url` with the ledger's retry policy.

    firebase-admin 7 has no option for either (FIELD-NOTES): its _MessagingService builds the full
    send URL once, in its constructor, into the private `_fcm_url` (the SDK's own tests set it), and
    mounts its retrying adapter on the session of the private `_client`. Both are checked, so that an
    SDK that moved them makes the channel "not configured" instead of sending to Google or retrying
    behind the ledger's back.
    """
    for attribute in ("_fcm_url", "_client"):
        if not hasattr(service, attribute):
            raise FcmSetupError(SDK_MOVED.format(version=firebase_admin.__version__, attribute=attribute))
    base = base_url.rstrip("/")
    service._fcm_url = base + SEND_PATH.format(project=project)
    # The longest mounted prefix wins over the SDK's adapters for http://, https:// and fcm.googleapis.com.
    adapter = requests.adapters.HTTPAdapter(pool_connections=10, pool_maxsize=100, max_retries=LEDGER_RETRIES)
    service._client.session.mount(base, adapter)


def build_message(delivery: Delivery, token: str, device_info: Mapping[str, Any], now: datetime) -> messaging.Message:
    """The FCM message of one delivery: notification, data, and the Android and APNs specifics."""
    n = delivery.notification
    data = n.get("data") or {}
    silent = data.get("silent") is True
    sound = _text(data.get("sound")) or DEFAULT_SOUND
    channel_id = _text(device_info.get("android_channel_id")) or _text(data.get("android_channel_id"))
    group = n.get("group_key")
    # The same wait for an offline device as a Web Push: by priority, never past expires_at.
    ttl, _ = delivery_headers(n, now)
    title = None if silent else n.get("title")
    body, data_strings = fitted(title, None if silent else n.get("body"), message_data(n))
    android = messaging.AndroidConfig(
        priority="high" if n["priority"] in URGENT and not silent else "normal",
        ttl=ttl,
        notification=None
        if silent
        else messaging.AndroidNotification(
            channel_id=channel_id or DEFAULT_CHANNEL_ID,
            sound=sound,
            notification_count=delivery.unread_count,
            tag=group,
        ),
    )
    headers = {
        "apns-priority": "5" if silent or n["priority"] == "low" else "10",
        "apns-push-type": "background" if silent else "alert",
        "apns-expiration": str(int(now.timestamp()) + ttl),
    }
    aps = (
        messaging.Aps(content_available=True)
        if silent
        else messaging.Aps(
            badge=delivery.unread_count, sound=sound, thread_id=group, category=_text(data.get("category"))
        )
    )
    # Message(token=) warns that `fid` is preferred since firebase-admin 7.5, but a Firebase
    # installation id is another identifier: apps send registration tokens. The SDK silences the
    # same warning the same way in its own multicast code.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return messaging.Message(
            token=token,
            notification=None if silent else messaging.Notification(title=title, body=body),
            data=data_strings,
            android=android,
            apns=messaging.APNSConfig(headers=headers, payload=messaging.APNSPayload(aps=aps)),
        )


def message_data(n: Mapping[str, Any]) -> dict[str, str]:
    """FCM data values are strings: the notification's data flattened (non-strings as JSON), then ours.

    `url` is the page to open, from data.url or data.action_url as for Web Push.
    """
    data: Mapping[str, Any] = n.get("data") or {}
    flat = {
        key: value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        for key, value in data.items()
        if key not in RESERVED_DATA_KEYS and not key.lower().startswith(RESERVED_DATA_PREFIXES)
    }
    flat.update(notification_id=str(n["id"]), type=str(n["type"]), priority=str(n["priority"]), seq=str(n["seq"]))
    url = _text(data.get("url")) or _text(data.get("action_url"))
    if url:
        flat["url"] = url
    return flat


def fitted(title: str | None, body: str | None, data: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """Body and data within MAX_PAYLOAD_BYTES: the body is cut first, then the notification's own data dropped.

    Too big a message is refused by FCM as INVALID_ARGUMENT: a failure that would count against the device.
    """
    kept = {k: v for k, v in data.items() if k in KEPT_DATA}
    for candidate in (data, kept):

        def fits(text: str | None, candidate: dict[str, str] = candidate) -> bool:
            payload = {"title": title, "body": text, "data": candidate}
            return len(json.dumps(payload, ensure_ascii=False).encode("utf-8")) <= MAX_PAYLOAD_BYTES

        if fits(body):
            return body, candidate
        shortened = _longest_prefix(body, fits) if body else None
        if shortened is not None:
            return shortened, candidate
    return body, kept  # not even without a body: FCM will say so


def _longest_prefix(text: str, fits: Callable[[str], bool]) -> str | None:
    """The longest start of `text`, ending in an ellipsis, that fits; None if not even the ellipsis does."""
    if not fits(ELLIPSIS):
        return None
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(text[:middle] + ELLIPSIS):
            low = middle
        else:
            high = middle - 1
    return text[:low] + ELLIPSIS


async def send_batch(
    app: firebase_admin.App, batch: Sequence[tuple[uuid.UUID, messaging.Message]], deadline: float
) -> dict[uuid.UUID, Outcome]:
    ids = [delivery_id for delivery_id, _ in batch]
    try:
        async with asyncio.timeout(deadline):
            answer = await asyncio.to_thread(messaging.send_each, [m for _, m in batch], app=app)
    except TimeoutError:
        # The thread may still send: then the next attempt repeats it, which the ledger counts.
        return {i: Retry(NO_ANSWER.format(seconds=deadline)) for i in ids}
    except ValueError as error:
        return {i: Failed(UNENCODABLE.format(error=error)) for i in ids}
    except exceptions.FirebaseError as error:
        # Raised for the whole call: the OAuth2 token could not be had, or the SDK's threads failed.
        return {i: Retry(_describe(error)) for i in ids}
    return {i: outcome(response) for i, response in zip(ids, answer.responses, strict=True)}


def outcome(response: messaging.SendResponse) -> Outcome:
    """What one FCM answer means for the delivery and its device."""
    if response.success:
        return Sent(response.message_id)
    error = response.exception
    text = _describe(error)
    if isinstance(error, GONE_ERRORS) or (isinstance(error, exceptions.InvalidArgumentError) and _bad_token(error)):
        return Gone(text)
    # An UnknownError without a response is a transport failure the SDK could not classify.
    if isinstance(error, RETRY_ERRORS) or (isinstance(error, exceptions.UnknownError) and error.http_response is None):
        # `is not None`: a requests.Response is falsy when its status is an error.
        header = error.http_response.headers.get("Retry-After") if error.http_response is not None else None
        return Retry(text, retry_after_seconds(header, datetime.now(UTC)))
    return Failed(text)


def _bad_token(error: exceptions.FirebaseError) -> bool:
    """Whether an INVALID_ARGUMENT is about the registration token, not about the message (too big, bad field)."""
    if "registration token" in str(error).lower():
        return True
    try:
        details = error.http_response.json()["error"]["details"]
        return any(v.get("field") == "message.token" for d in details for v in d.get("fieldViolations", []))
    except (AttributeError, KeyError, TypeError, ValueError):
        return False


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
