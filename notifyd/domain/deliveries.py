"""One delivery job: claim its deliveries in the ledger, hand them to a channel, record the answers.

The ledger makes retries safe: an attempt starts by committing `sending_since`, and only
deliveries still `pending` are sent. A provider that answered but whose answer was never
recorded (the worker died in between) is the one case that may send twice; the next attempt
counts it in `repeats`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver
from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from notifyd.core.crypto import SecretBox, SecretsError
from notifyd.db.pool import as_worker
from notifyd.db.queries import query

log = logging.getLogger("notifyd.worker")


@dataclass(frozen=True)
class Subscription:
    id: uuid.UUID
    kind: str  # webpush | fcm
    endpoint: str | None
    p256dh: str | None
    auth: str | None
    fcm_token: str | None
    device_info: dict[str, Any]


@dataclass(frozen=True)
class VapidKey:
    id: uuid.UUID
    public_key: str
    private_key: str  # base64url of the 32 raw bytes


@dataclass(frozen=True)
class Target:
    """A webhook endpoint or chat connection, its credentials decrypted."""

    id: uuid.UUID
    url: str
    platform: str | None  # slack | teams | discord for a chat connection; None for a webhook endpoint
    secrets: tuple[str, ...]  # a webhook's signing secrets: the current one, and the one before a rotation


@dataclass(frozen=True)
class Delivery:
    """A claimed delivery, secrets decrypted: everything a channel needs to send it."""

    id: uuid.UUID
    channel: str  # push | email | webhook | chat | sms
    attempts: int
    notification: dict[str, Any]
    recipient: dict[str, Any]
    subscription: Subscription | None
    vapid_key: VapidKey | None
    unread_count: int  # the user's unread notifications, for a push's badge (0 for e-mail: not counted)
    provider: str | None = None  # an earlier attempt's provider, if its answer never came: this one goes there too
    target: Target | None = None  # the webhook endpoint or chat connection of a webhook or chat delivery


@dataclass(frozen=True)
class Sent:
    provider_message_id: str | None = None
    provider: str | None = None  # which provider took it (the ledger's provider column): resend, twilio...


@dataclass(frozen=True)
class Gone:
    """The provider says the device no longer exists: deactivate it."""

    error: str


@dataclass(frozen=True)
class Retry:
    error: str
    retry_after: float | None = None
    # Set when no answer came (a timeout): the provider may have taken it, and the next attempt goes there again.
    provider: str | None = None


@dataclass(frozen=True)
class Failed:
    """Refused for good (a bad request, a key the provider rejects): no retry."""

    error: str


@dataclass(frozen=True)
class Skipped:
    reason: str


Outcome = Sent | Gone | Retry | Failed | Skipped
OUTCOME_NAMES: dict[type, str] = {Sent: "sent", Gone: "gone", Retry: "retry", Failed: "failed", Skipped: "skipped"}


class Channel(Protocol):
    queue: str  # the Procrastinate queue its jobs are on: push, fcm, email, webhook, chat or sms

    def not_configured(self) -> str | None:
        """Why this channel cannot send (a clear sentence naming the missing setting), or None."""

    async def send(self, deliveries: Sequence[Delivery]) -> Mapping[uuid.UUID, Outcome]:
        """Sends each delivery once and says what the provider answered; never raises for one delivery."""

    async def close(self) -> None:
        """Closes the channel's connections (the worker stops)."""


class ProviderSession:
    """A channel's keep-alive connections to its providers: one aiohttp session, at most `limit` connections.

    A new connection per request (requests without a Session) cost more CPU than the rest of a delivery
    together. The session is made on first use in the running event loop, and made again in another
    loop (tests run each in a loop of its own); aiohttp bounds each read and connect by `timeout`.
    """

    def __init__(self, limit: int, timeout: float, resolver: Callable[[], AbstractResolver] | None = None) -> None:
        self._limit = limit
        self._resolver = resolver  # made in the session's loop, as the session is
        self._timeout = aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._limit, limit_per_host=self._limit, resolver=self._resolver() if self._resolver else None
            )
            # Cookies would carry one provider answer into the next request: providers set none that matter.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar()
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = self._loop = None


async def send_each(
    deliveries: Sequence[Delivery], send_one: Callable[[Delivery], Awaitable[Outcome]]
) -> Mapping[uuid.UUID, Outcome]:
    """Every delivery at once (the channel bounds how many are in flight): each one's outcome by its id."""
    outcomes = await asyncio.gather(*(send_one(d) for d in deliveries))
    return {d.id: o for d, o in zip(deliveries, outcomes, strict=True)}


class RetryLater(Exception):
    """Some deliveries of the job are to be tried again after `delay` seconds."""

    def __init__(self, delay: float, pending: int) -> None:
        super().__init__(f"{pending} deliveries to retry in {delay:.1f} s")
        self.delay = delay


def retry_delay(attempts: int, base: float, cap: float, retry_after: float | None) -> float:
    """Exponential backoff with jitter (half to all of the step), capped; never sooner than Retry-After."""
    step = min(cap, base * 2 ** max(attempts - 1, 0))
    delay = random.uniform(step / 2, step)  # noqa: S311 - jitter, not a secret
    return min(cap, max(delay, retry_after or 0.0))


# A job that raised something else than RetryLater (a bug, a lost connection) is retried this often.
UNEXPECTED_ERROR_ATTEMPTS = 10


class DeliveryRetry(BaseRetryStrategy):
    """RetryLater carries its own delay (backoff, jitter, cap, Retry-After); anything else backs off too."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, RetryLater):
            return RetryDecision(retry_in={"milliseconds": round(exception.delay * 1000)})
        if job.attempts >= UNEXPECTED_ERROR_ATTEMPTS:
            return None
        return RetryDecision(retry_in={"seconds": min(3600, 2 ** (job.attempts + 1))})


def _decrypt(box: SecretBox | None, value: str | None) -> str | None:
    if value is None:
        return None
    if box is None:
        raise SecretsError("NOTIFICATION_ENCRYPTION_KEY is not set")
    return box.decrypt(value)


def _target(target: Mapping[str, Any] | None, box: SecretBox | None) -> Target | None:
    if target is None:
        return None
    platform = target.get("platform")
    secrets = (target.get("secret"), target.get("previous_secret"))
    return Target(
        id=uuid.UUID(target["id"]),
        # A chat URL is its credential: stored encrypted. A webhook URL is not secret; its signing secrets are.
        url=(_decrypt(box, target["url"]) or "") if platform is not None else target["url"],
        platform=platform,
        secrets=tuple(_decrypt(box, s) or "" for s in secrets if s is not None),
    )


def _delivery(row: asyncpg.Record, box: SecretBox | None) -> Delivery:
    sub = row["subscription"]
    key = row["vapid_key"]
    return Delivery(
        id=row["id"],
        channel=row["channel"],
        attempts=row["attempts"],
        notification=row["notification"],
        recipient=row["recipient"],
        subscription=Subscription(
            id=uuid.UUID(sub["id"]),
            kind=sub["kind"],
            endpoint=sub["endpoint"],
            p256dh=_decrypt(box, sub["p256dh_key"]),
            auth=_decrypt(box, sub["auth_key"]),
            fcm_token=_decrypt(box, sub["fcm_token"]),
            device_info=sub["device_info"],
        )
        if sub is not None
        else None,
        vapid_key=VapidKey(
            id=uuid.UUID(key["id"]),
            public_key=key["public_key"],
            private_key=_decrypt(box, key["private_key_encrypted"]) or "",
        )
        if key is not None
        else None,
        unread_count=row["unread_count"],
        provider=row["provider"],
        target=_target(row["target"], box),
    )


def _outcome_json(delivery_id: uuid.UUID, outcome: Outcome) -> dict[str, Any]:
    fields = asdict(outcome)
    return {
        "id": str(delivery_id),
        "outcome": OUTCOME_NAMES[type(outcome)],
        "error": fields.get("error") or fields.get("reason"),
        "provider_message_id": fields.get("provider_message_id"),
        "provider": fields.get("provider"),
    }


async def run_job(pool: asyncpg.Pool, box: SecretBox | None, channel: Channel, delivery_ids: list[str]) -> None:
    """Delivers what is still pending of one job; raises RetryLater if some deliveries should be tried again."""
    async with as_worker(pool) as conn:
        rows = await conn.fetch(query("claim_deliveries"), delivery_ids)
    if not rows:
        return
    outcomes: dict[uuid.UUID, Outcome] = {}
    sendable: list[Delivery] = []
    reason = channel.not_configured()
    for row in rows:
        if reason is not None:
            outcomes[row["id"]] = Skipped(reason)
            continue
        try:
            sendable.append(_delivery(row, box))
        except SecretsError as error:
            outcomes[row["id"]] = Failed(f"cannot decrypt the device's or target's keys: {error}")
    if reason is not None:
        log.warning("%s: %d deliveries skipped: %s", channel.queue, len(rows), reason)
    if sendable:
        answered = await channel.send(sendable)
        for delivery in sendable:
            outcomes[delivery.id] = answered.get(delivery.id, Retry("the channel gave no answer"))
    async with as_worker(pool) as conn:
        # The pool's jsonb codec encodes the list.
        results = await conn.fetch(query("record_outcomes"), [_outcome_json(i, o) for i, o in outcomes.items()])
        statuses: dict[str, int] = {}
        for result in results:
            statuses[result["status"]] = statuses.get(result["status"], 0) + 1
        # One line per job, with the request id of the send that made it (the log formatter adds it).
        log.info("%s: notification(s) %s: %s", channel.queue,
                 ", ".join(sorted({str(row["notification"]["id"]) for row in rows})),
                 ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())))  # fmt: skip
        pending = [r for r in results if r["status"] == "pending"]
        if not pending:
            return
        policy = await conn.fetchrow(query("retry_policy"))
    assert policy is not None
    retry_after = max(
        (o.retry_after for o in outcomes.values() if isinstance(o, Retry) and o.retry_after is not None), default=None
    )
    attempts = max(r["attempts"] for r in pending)
    raise RetryLater(retry_delay(attempts, policy["base"], policy["cap"], retry_after), len(pending))
