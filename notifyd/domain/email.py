"""The e-mail channel: instant e-mail through Resend, rendered from the package's Jinja2 templates, failing over
to SMTP (notifyd.domain.smtp) while Resend's circuit is open.

Every delivery is one `resend.Emails.send` with the delivery id as its idempotency key, so Resend
sends it once however often the worker retries. Resend answers 409 when the same key comes back
with another body: the rendering must therefore be a pure function of the delivery (no clock, no
random), and the unsubscribe token is deterministic for the same reason.

Failover: each batch asks the database where new e-mail goes (notify_private.circuit_route: Resend while
its circuit is closed, SMTP while it is open, Resend again for a half-open probe) and records what each
provider answered (circuit_record): timeouts and 5xx open the circuit. A delivery whose earlier attempt got
no answer (a timeout) carries that provider (Delivery.provider) and goes there again whatever the circuit
says: Resend may have taken it, and only the same idempotency key keeps it from being sent twice.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import formataddr
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import jinja2
import markupsafe
import resend
from resend.exceptions import ResendError
from resend.http_client_async import AsyncHTTPClient

from notifyd.core.config import Settings
from notifyd.core.crypto import open_token, seal_token
from notifyd.db.pool import as_worker
from notifyd.db.queries import query
from notifyd.domain import smtp
from notifyd.domain.deliveries import Delivery, Failed, Outcome, ProviderSession, Retry, Sent, Skipped
from notifyd.domain.tracking import click_url, open_pixel_url

log = logging.getLogger("notifyd.worker")

RESEND_API_URL = "https://api.resend.com"
PROVIDER = "resend"
UNSUBSCRIBE_PURPOSE = "unsubscribe"
NOT_CONFIGURED = "e-mail is not configured: set {missing}"
NO_ADDRESS = "no e-mail address"
TIMED_OUT = "Resend did not answer within {seconds:g} s"
UNEXPECTED = "unexpected error while sending: {error!r}"
# requests' timeout bounds the connection and each read, not a whole slow-dripping answer: this does.
DEADLINE_FACTOR = 2
OPEN_LINK_FIELDS = ("url", "action_url")
# The open pixel goes last in the body: a client that stops loading images early still shows the text.
PIXEL_TAG = '<img src="{url}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px;">'

EMAIL_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("notifyd", "templates/email"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
    undefined=jinja2.StrictUndefined,
    # The package's files do not change while it runs: no stat() of three templates per e-mail (~40 µs of ~140).
    auto_reload=False,
)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    headers: dict[str, str]


# Characters that end or break a header line: C0 and C1 controls (CR, LF, TAB, NUL, NEL...) and the
# Unicode line and paragraph separators. Each run becomes one space, so no field can add a header.
_HEADER_BREAKERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def header_text(value: str) -> str:
    """A value that stays on its one header line: every run of control characters folded to a space."""
    return _HEADER_BREAKERS.sub(" ", value)


def send_params(settings: Settings, to: str, email: RenderedEmail) -> resend.Emails.SendParams:
    """Resend's parameters for one e-mail: the one place its headers are built, for instant e-mails and digests.

    The subject (a title, or a template's subject fed by template_vars), the sender's name and the
    header values all pass through header_text: a CR/LF in any of them cannot add a header.
    """
    assert settings.resend_from_email is not None  # the sender checked not_configured()
    return {
        "from": formataddr((header_text(settings.resend_from_name), settings.resend_from_email)),
        "to": [to],
        "subject": header_text(email.subject),
        "html": email.html,
        "text": email.text,
        "headers": {name: header_text(value) for name, value in email.headers.items()},
    }


def unsubscribe_token(settings: Settings, user_id: str, notification_type: str) -> str:
    return seal_token(settings.jwt_secret, UNSUBSCRIBE_PURPOSE, {"u": user_id, "t": notification_type})


def read_unsubscribe_token(settings: Settings, token: str) -> tuple[uuid.UUID, str] | None:
    """(user id, notification type) of a token this server sealed, or None."""
    if not token.isascii():
        return None  # ours are base64url; and open_token's hmac.compare_digest raises on non-ASCII text
    payload = open_token(settings.jwt_secret, UNSUBSCRIBE_PURPOSE, token)
    if payload is None or not isinstance(payload.get("t"), str):
        return None
    try:
        return uuid.UUID(payload["u"]), payload["t"]
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def open_link(data: Mapping[str, Any]) -> str | None:
    """The notification's own link, if it is an absolute http(s) URL: no javascript: or data: in an e-mail."""
    for name in OPEN_LINK_FIELDS:
        value = data.get(name)
        if isinstance(value, str):
            parts = urlsplit(value)
            if parts.scheme in ("http", "https") and parts.netloc:
                return value
    return None


# Stand-ins for the two links that differ per recipient (unsubscribe, and the click redirect of the action): a bulk
# send's e-mail is rendered once with them and each delivery's links are put in. Random per process, so no title or
# body can contain them; made of characters that HTML escaping leaves alone.
_MARK = secrets.token_hex(16)
UNSUBSCRIBE_MARK = f"unsubscribe-{_MARK}"
OPEN_MARK = f"open-{_MARK}"
# Distinct e-mails (notification text × language) kept rendered: a bulk send is one, a few MB at most.
RENDERED_KEPT = 256


@functools.lru_cache(maxsize=RENDERED_KEPT)
def _rendered(
    lang: str,
    title: str | None,
    body: str | None,
    notification_type: str,
    own: tuple[str, str, str] | None,
    has_link: bool,
    sender: str,
    privacy_url: str | None,
) -> tuple[str, str]:
    """(HTML, text) of an e-mail with UNSUBSCRIBE_MARK and OPEN_MARK where its links go; `own` is a template's
    (subject, HTML, text)."""
    context: dict[str, Any] = {
        "lang": lang,
        "title": title if own is None else own[0],
        "body": body,
        "type": notification_type,
        "open_url": OPEN_MARK if has_link else None,
        "unsubscribe_url": UNSUBSCRIBE_MARK,
        "privacy_url": privacy_url,
        "sender": sender,
    }
    html_context = context if own is None else {**context, "body": markupsafe.Markup(own[1])}
    text_context = context if own is None else {**context, "body": own[2]}
    return (
        EMAIL_TEMPLATES.get_template("notification.html").render(html_context),
        EMAIL_TEMPLATES.get_template("notification.txt").render(text_context),
    )


def render(delivery: Delivery, settings: Settings) -> RenderedEmail:
    """The e-mail of one delivery; the same delivery always renders to the same bytes.

    The one place that turns a notification into an e-mail. A template notification brings its own
    rendered subject, HTML (escaped by its sandbox) and text; the footer and headers are added here.
    The action link goes through the click redirect and the HTML carries the open pixel: both tokens
    are deterministic, so a retry still renders the same bytes. The templates run once per distinct
    e-mail (_rendered); each delivery's links are then put in their places.
    """
    notification = delivery.notification
    email = notification.get("email")  # {"subject", "html", "text"} of a template, or None
    own = (email["subject"], email["html"], email["text"]) if email is not None else None
    unsubscribe_url = (
        f"{settings.public_base_url}/unsubscribe/"
        f"{unsubscribe_token(settings, str(delivery.recipient['user_id']), notification['type'])}"
    )
    link = open_link(notification.get("data") or {})
    lang = delivery.recipient.get("locale") or "en"
    html, text = _rendered(lang, notification["title"], notification["body"], notification["type"], own,
                           link is not None, settings.resend_from_name, settings.privacy_policy_url)  # fmt: skip
    links = {UNSUBSCRIBE_MARK: unsubscribe_url}
    if link is not None:
        links[OPEN_MARK] = click_url(settings, delivery, link)
    for mark, url in links.items():
        html = html.replace(mark, markupsafe.escape(url))
        text = text.replace(mark, url)
    pixel = PIXEL_TAG.format(url=markupsafe.escape(open_pixel_url(settings, delivery)))
    title = notification["title"] if own is None else own[0]
    return RenderedEmail(
        subject=title or f"New {notification['type']} notification",
        html=html.replace("</body>", f"{pixel}\n</body>", 1),
        text=text,
        # RFC 8058 one-click: mail clients POST "List-Unsubscribe=One-Click" to the link, no cookies.
        headers={"List-Unsubscribe": f"<{unsubscribe_url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )


def _status(error: ResendError) -> int:
    try:
        return int(error.code)
    except (TypeError, ValueError):
        return 500  # not an HTTP status: treat it as the provider's trouble, worth a retry


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP-date: the backoff decides


def outcome_of(error: ResendError) -> Outcome:
    """429 and 5xx (connection errors come as 500) are worth retrying; other refusals are final."""
    status = _status(error)
    message = f"Resend {status} {error.error_type}: {error.message}"
    if status == 429:
        return Retry(message, _retry_after(error.headers))
    # The first request with this key is still being answered: the next try gets its answer.
    if status >= 500 or (status == 409 and error.error_type == "concurrent_idempotent_requests"):
        return Retry(message)
    return Failed(message)


class NoAnswer(ResendError):
    """Resend's answer did not come in time: the request may have reached it. The SDK wraps every other exception
    of its HTTP client as a 500, which is an answer; this one is passed through as it is."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(0, "no_answer", f"no answer: {error!r}", "retry with the same idempotency key")


class PooledClient(AsyncHTTPClient):
    """The SDK's async HTTP client on keep-alive connections (its default, httpx, opens a client per e-mail)."""

    def __init__(self, http: ProviderSession) -> None:
        self.http = http

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        json: dict[str, object] | list[object] | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        if files is not None:
            raise ValueError("notifyd sends no multipart requests to Resend")
        try:
            async with self.http.get().request(
                method, url, headers=headers, json=json, data=data, allow_redirects=False
            ) as response:
                return await response.read(), response.status, response.headers
        except aiohttp.SocketTimeoutError as error:
            # A read timed out after the request went out (a connect timeout sent nothing: an answer of sorts).
            raise NoAnswer(error) from error


class Answer(enum.Enum):
    """What a provider's answer says of its health (its circuit): only timeouts and 5xx count against it."""

    OK = "ok"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    OTHER = "other"  # a refusal of this e-mail (4xx), a rate limit, a skip: the provider is well


def answer_of(outcome: Outcome, status: int | None = None) -> Answer:
    if isinstance(outcome, Sent):
        return Answer.OK
    if isinstance(outcome, Retry) and outcome.provider is not None:
        return Answer.TIMEOUT
    if isinstance(outcome, Retry) and (status is None or status >= 500):
        return Answer.SERVER_ERROR
    return Answer.OTHER


class EmailChannel:
    """The `email` queue: one Resend request per delivery, RESEND_MAX_CONCURRENCY at once over keep-alive connections.

    Resend limits a team to a few requests per second (5 by default, more on request): past what the
    account allows, more parallel sends only collect 429s, which are retried after Retry-After.
    With SMTP_HOST set and a database pool, Resend's circuit sends new e-mail to SMTP while Resend fails.
    """

    queue = "email"

    def __init__(self, settings: Settings, pool: asyncpg.Pool | None = None) -> None:
        self._settings = settings
        self._pool = pool if settings.smtp_host else None
        self._slots = asyncio.Semaphore(settings.resend_max_concurrency)
        self._deadline = settings.provider_timeout * DEADLINE_FACTOR
        # The SDK reads these module globals on every request; its own RESEND_* environment reading
        # happened at import, so Settings is made the one source here.
        resend.api_key = settings.resend_api_key
        resend.api_url = (settings.resend_api_url or RESEND_API_URL).rstrip("/")
        resend.default_async_http_client = PooledClient(
            ProviderSession(settings.resend_max_concurrency, settings.provider_timeout)
        )

    def not_configured(self) -> str | None:
        missing = [
            name
            for name, value in (
                ("RESEND_API_KEY", self._settings.resend_api_key),
                ("RESEND_FROM_EMAIL", self._settings.resend_from_email),
            )
            if not value
        ]
        return NOT_CONFIGURED.format(missing=" and ".join(missing)) if missing else None

    async def send(self, deliveries: Sequence[Delivery]) -> Mapping[uuid.UUID, Outcome]:
        route = await self._route()
        answers = await asyncio.gather(*(self._send_one(d, d.provider or route) for d in deliveries))
        await self._record(answers)
        return {d.id: o for d, (_, _, o) in zip(deliveries, answers, strict=True)}

    async def send_email(self, key: uuid.UUID, params: resend.Emails.SendParams, pinned: str | None) -> Outcome:
        """One e-mail outside the delivery queue (a digest; `key` its idempotency key and Message-ID): to the
        provider a batch would use now, or to `pinned`, where an earlier attempt got no answer. Its answer moves
        the circuits as a batch's does."""
        answer = await self._hand_over(params, key, pinned or await self._route())
        await self._record([answer])
        return answer[2]

    async def _route(self) -> str:
        """Where this batch's new e-mail goes: Resend, unless SMTP is configured and Resend's circuit is open."""
        if self._pool is None:
            return PROVIDER
        async with as_worker(self._pool) as conn:
            route: str = await conn.fetchval(query("circuit_route"), PROVIDER, smtp.PROVIDER)
        return route

    async def _record(self, answers: Sequence[tuple[str, Answer, Outcome]]) -> None:
        if self._pool is None:
            return
        try:
            for provider in sorted({p for p, a, _ in answers if a is not Answer.OTHER}):
                counts = {a: sum(1 for p, b, _ in answers if p == provider and b is a) for a in Answer}
                async with as_worker(self._pool) as conn:
                    state = await conn.fetchval(query("circuit_record"), provider, counts[Answer.OK],
                                                counts[Answer.TIMEOUT], counts[Answer.SERVER_ERROR])  # fmt: skip
                if counts[Answer.TIMEOUT] or counts[Answer.SERVER_ERROR]:
                    log.warning("e-mail: %s: %d timeouts, %d 5xx; its circuit is %s", provider,
                                counts[Answer.TIMEOUT], counts[Answer.SERVER_ERROR], state)  # fmt: skip
        except (OSError, asyncpg.PostgresError):
            # The outcomes still go to the ledger: a circuit that missed one batch only moves a batch later.
            log.exception("e-mail: recording the providers' answers in their circuits")

    async def _send_one(self, delivery: Delivery, provider: str) -> tuple[str, Answer, Outcome]:
        if not delivery.recipient.get("email"):
            return provider, Answer.OTHER, Skipped(NO_ADDRESS)
        try:
            params = send_params(self._settings, delivery.recipient["email"], render(delivery, self._settings))
        except Exception as error:  # noqa: BLE001 - send() answers for every delivery, whatever broke
            log.exception("e-mail delivery %s", delivery.id)
            return provider, Answer.OTHER, Retry(UNEXPECTED.format(error=error))
        return await self._hand_over(params, delivery.id, provider)

    async def _hand_over(self, params: resend.Emails.SendParams, key: uuid.UUID,
                         provider: str) -> tuple[str, Answer, Outcome]:  # fmt: skip
        """Sends one e-mail through `provider` (SMTP only when it is configured); the provider that answered, what
        its answer says of its health, and the outcome. Never raises."""
        try:
            if provider == smtp.PROVIDER and self._settings.smtp_host:
                async with self._slots:
                    outcome = await smtp.send(self._settings, smtp.message(params, key), self._deadline)
                return provider, answer_of(outcome), outcome
            async with self._slots, asyncio.timeout(self._deadline):
                # A request cut by the deadline may still have reached Resend: the retry goes there with the key.
                sent = await resend.Emails.send_async(params, {"idempotency_key": str(key)})
        except (TimeoutError, NoAnswer):
            timed_out = Retry(TIMED_OUT.format(seconds=self._deadline), provider=PROVIDER)
            return PROVIDER, Answer.TIMEOUT, timed_out
        except ResendError as error:
            refused = outcome_of(error)
            return PROVIDER, answer_of(refused, _status(error)), refused
        except Exception as error:  # noqa: BLE001 - one e-mail's answer, whatever broke
            log.exception("e-mail %s", key)
            return provider, Answer.OTHER, Retry(UNEXPECTED.format(error=error))
        return PROVIDER, Answer.OK, Sent(provider_message_id=sent["id"], provider=PROVIDER)

    async def close(self) -> None:
        """Closes the SDK's connections (one client for the process: the SDK's configuration is global)."""
        if isinstance(resend.default_async_http_client, PooledClient):
            await resend.default_async_http_client.http.close()
