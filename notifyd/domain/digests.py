"""Daily and weekly digest e-mails: one e-mail per user and period with what is new since the last one.

A Procrastinate periodic task claims the digests that are due (notify_private.claim_due_digests:
exactly one per user and period, however many workers run it, by the unique key of
notify.email_digests) and the claiming transaction defers one `send_digest` job per digest. The
job renders the items fixed at claim time, so every retry renders the same bytes, as Resend's
idempotency key (the digest id) requires, sends it the way instant e-mail goes (EmailChannel.send_email:
Resend, or SMTP while Resend's circuit is open; an attempt that got no answer pins its provider) and
records the answer and the provider on the digest and on each held e-mail it carries; retries and backoff
are those of deliveries. Its wording comes from
CATALOGUE in the recipient's language (locale, its language, templates.default_language, en), and
its one-click unsubscribe stops the digests themselves (notify.unsubscribe_digests).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import procrastinate

from notifyd.core.config import Settings
from notifyd.db.pool import as_worker
from notifyd.db.queries import query
from notifyd.domain.deliveries import (
    OUTCOME_NAMES,
    DeliveryRetry,
    Outcome,
    Retry,
    RetryLater,
    Skipped,
    retry_delay,
)
from notifyd.domain.email import (
    EMAIL_TEMPLATES,  # one Jinja2 environment (autoescape for .html) for every e-mail of the package
    NO_ADDRESS,
    UNEXPECTED,
    EmailChannel,
    RenderedEmail,
    open_link,
    send_params,
    unsubscribe_token,
)

log = logging.getLogger("notifyd.worker")

SUPPRESSED = "the address {reason}"
# The digest-level unsubscribe token's type: "no more digest e-mails" (notify.unsubscribe_digests), not one type.
ALL_DIGESTS = "*"
# A digest lists many items: each shows the start of its body.
BODY_PREVIEW = 280
# The catalogue's language when neither the locale, its language nor templates.default_language has one.
FALLBACK_LANGUAGE = "en"


@dataclass(frozen=True)
class Words:
    """A digest's fixed wording in one language; {placeholders} are filled by render_digest."""

    # Per type: how it reads in "3 task updates, 1 mention" (one, many); another type reads `other_type`.
    types: dict[str, tuple[str, str]]
    other_type: tuple[str, str]  # {type}
    heading: dict[str, str]  # per frequency
    daily_period: str  # {weekday} {day} {month} {year}
    weekly_period: str  # {day} {month} {year}
    days: tuple[str, ...]  # Monday first; short_days the same, abbreviated
    short_days: tuple[str, ...]
    months: tuple[str, ...]
    short_months: tuple[str, ...]
    item_time: str  # {weekday} {day} {month} {hour:02d} {minute:02d}
    new_notifications: tuple[str, str]  # {count}
    untitled: str  # {type}
    all_notifications: str
    footer: str  # {sender}
    unsubscribe_digests: str
    unsubscribe_type: str  # {type}
    privacy: str


CATALOGUE: dict[str, Words] = {
    "en": Words(
        types={
            "system": ("system update", "system updates"),
            "user": ("mention", "mentions"),
            "task": ("task update", "task updates"),
            "security": ("security alert", "security alerts"),
            "billing": ("billing notice", "billing notices"),
            "workflow": ("workflow update", "workflow updates"),
            "agent": ("agent update", "agent updates"),
        },
        other_type=("{type} notification", "{type} notifications"),
        heading={"daily": "Your daily digest", "weekly": "Your weekly digest"},
        daily_period="{weekday} {day:02d} {month} {year}",
        weekly_period="the week of {day:02d} {month} {year}",
        days=("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
        short_days=("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
        months=(
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ),
        short_months=("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        item_time="{weekday} {day:02d} {month}, {hour:02d}:{minute:02d}",
        new_notifications=("{count} new notification", "{count} new notifications"),
        untitled="New {type} notification",
        all_notifications="All notifications",
        footer="You receive this digest because {sender} sends you these notifications by e-mail.",
        unsubscribe_digests="Unsubscribe from digest e-mails",
        unsubscribe_type="Unsubscribe from {type} e-mails",
        privacy="Privacy policy",
    ),
    "de": Words(
        types={
            "system": ("Systemmeldung", "Systemmeldungen"),
            "user": ("Erwähnung", "Erwähnungen"),
            "task": ("Aufgaben-Update", "Aufgaben-Updates"),
            "security": ("Sicherheitswarnung", "Sicherheitswarnungen"),
            "billing": ("Abrechnungshinweis", "Abrechnungshinweise"),
            "workflow": ("Workflow-Update", "Workflow-Updates"),
            "agent": ("Agenten-Update", "Agenten-Updates"),
        },
        other_type=("{type}-Benachrichtigung", "{type}-Benachrichtigungen"),
        heading={"daily": "Ihre tägliche Zusammenfassung", "weekly": "Ihre wöchentliche Zusammenfassung"},
        daily_period="{weekday}, {day}. {month} {year}",
        weekly_period="Woche vom {day}. {month} {year}",
        days=("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
        short_days=("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So"),
        months=(
            "Januar",
            "Februar",
            "März",
            "April",
            "Mai",
            "Juni",
            "Juli",
            "August",
            "September",
            "Oktober",
            "November",
            "Dezember",
        ),
        short_months=("Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sept.", "Okt.", "Nov.", "Dez."),
        item_time="{weekday}, {day}. {month}, {hour:02d}:{minute:02d}",
        new_notifications=("{count} neue Benachrichtigung", "{count} neue Benachrichtigungen"),
        untitled="Neue {type}-Benachrichtigung",
        all_notifications="Alle Benachrichtigungen",
        footer="Sie erhalten diese Zusammenfassung, weil {sender} Ihnen diese Benachrichtigungen per E-Mail sendet.",
        unsubscribe_digests="Zusammenfassungen per E-Mail abbestellen",
        unsubscribe_type="{type}-E-Mails abbestellen",
        privacy="Datenschutzerklärung",
    ),
}


@dataclass(frozen=True)
class Digest:
    """A digest being sent: its recipient and the notifications it carries, oldest first."""

    id: uuid.UUID
    frequency: str  # daily | weekly
    period_start: datetime
    attempts: int
    recipient: dict[str, Any]
    items: list[dict[str, Any]]
    # The provider an earlier attempt got no answer from (it may have the digest): this attempt goes there too.
    provider: str | None = None


def digest_language(locale: str | None, default_language: str | None) -> str:
    """The catalogue's language for a locale, as templates choose: pt-BR, then pt, then the default, then en."""
    tag = (locale or "").lower()
    for language in (tag, tag.split("-")[0], (default_language or "").lower()):
        if language in CATALOGUE:
            return language
    return FALLBACK_LANGUAGE


def _plural(forms: tuple[str, str], count: int) -> str:
    return forms[0] if count == 1 else forms[1]


def count_label(notification_type: str, count: int, language: str = FALLBACK_LANGUAGE) -> str:
    words = CATALOGUE[language]
    forms = words.types.get(notification_type) or words.other_type
    return f"{count} {_plural(forms, count).format(type=notification_type)}"


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _preview(body: str) -> str:
    return body if len(body) <= BODY_PREVIEW else body[: BODY_PREVIEW - 1].rstrip() + "…"


def _date(words: Words, pattern: str, at: datetime, *, short: bool = False) -> str:
    """A date in the catalogue's own names (strftime's depend on the process's C locale)."""
    return pattern.format(
        weekday=(words.short_days if short else words.days)[at.weekday()],
        day=at.day,
        month=(words.short_months if short else words.months)[at.month - 1],
        year=at.year,
        hour=at.hour,
        minute=at.minute,
    )


def render_digest(digest: Digest, settings: Settings) -> RenderedEmail:
    """The digest e-mail: a pure function of the digest (no clock), so retries send the same bytes."""
    zone = _zone(digest.recipient.get("timezone"))
    language = digest_language(digest.recipient.get("locale"), digest.recipient.get("default_language"))
    words = CATALOGUE[language]
    user_id = str(digest.recipient["user_id"])
    unsubscribe_all = f"{settings.public_base_url}/unsubscribe/{unsubscribe_token(settings, user_id, ALL_DIGESTS)}"
    by_type: dict[str, list[dict[str, Any]]] = {}
    for item in digest.items:
        created = datetime.fromisoformat(item["created_at"]).astimezone(zone)
        by_type.setdefault(item["type"], []).append(
            {
                "title": item["title"] or words.untitled.format(type=item["type"]),
                "body": _preview(item["body"] or ""),
                "url": open_link(item.get("data") or {}) or settings.notification_center_url,
                "time": _date(words, words.item_time, created, short=True),
            }
        )
    groups: list[dict[str, Any]] = [
        {
            "label": count_label(notification_type, len(items), language),
            "items": items,
            "unsubscribe": words.unsubscribe_type.format(type=notification_type),
            "unsubscribe_url": f"{settings.public_base_url}/unsubscribe/"
            f"{unsubscribe_token(settings, user_id, notification_type)}",
        }
        for notification_type, items in sorted(by_type.items(), key=lambda group: (-len(group[1]), group[0]))
    ]
    summary = ", ".join(group["label"] for group in groups)
    start = digest.period_start.astimezone(zone)
    heading = words.heading[digest.frequency]
    context = {
        "lang": language,
        "heading": heading,
        "period": _date(words, words.daily_period if digest.frequency == "daily" else words.weekly_period, start),
        "intro": _plural(words.new_notifications, len(digest.items)).format(count=len(digest.items)),
        "summary": summary,
        "groups": groups,
        "all_notifications": words.all_notifications,
        "notifications_url": settings.notification_center_url,
        "footer": words.footer.format(sender=settings.resend_from_name),
        "unsubscribe_digests": words.unsubscribe_digests,
        "unsubscribe_url": unsubscribe_all,
        "privacy": words.privacy,
        "privacy_url": settings.privacy_policy_url,
    }
    return RenderedEmail(
        subject=f"{heading}: {summary}",
        html=EMAIL_TEMPLATES.get_template("digest.html").render(context),
        text=EMAIL_TEMPLATES.get_template("digest.txt").render(context),
        # RFC 8058 one-click: a digest mixes types, so its header stops the digests themselves.
        headers={
            "List-Unsubscribe": f"<{unsubscribe_all}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


async def _deliver(digest: Digest, settings: Settings, mailer: EmailChannel) -> Outcome:
    """Sends one digest the way instant e-mail goes (Resend, or SMTP while Resend's circuit is open) and says
    what the provider answered; never raises."""
    reason = mailer.not_configured()
    if reason is not None:
        return Skipped(reason)
    if not digest.recipient.get("email"):
        return Skipped(NO_ADDRESS)
    if digest.recipient.get("suppression"):
        return Skipped(SUPPRESSED.format(reason=digest.recipient["suppression"]))
    try:
        params = send_params(settings, digest.recipient["email"], render_digest(digest, settings))
    except Exception as error:  # noqa: BLE001 - a digest always ends with an answer, whatever broke
        log.exception("digest %s", digest.id)
        return Retry(UNEXPECTED.format(error=error))
    return await mailer.send_email(digest.id, params, digest.provider)


async def send_digest(pool: asyncpg.Pool, settings: Settings, mailer: EmailChannel, digest_id: uuid.UUID) -> str:
    """Sends a pending digest once; returns its status after; raises RetryLater if it should be sent again."""
    async with as_worker(pool) as conn:
        row = await conn.fetchrow(query("start_digest"), digest_id)
    if row is None:
        return "gone"  # sent, failed or skipped meanwhile: nothing to do
    digest = Digest(
        id=row["id"],
        frequency=row["frequency"],
        period_start=row["period_start"],
        attempts=row["attempts"],
        recipient=row["recipient"],
        items=row["items"],
        provider=row["provider"],
    )
    outcome = await _deliver(digest, settings, mailer)
    async with as_worker(pool) as conn:
        result = await conn.fetchrow(
            query("finish_digest"),
            digest.id,
            OUTCOME_NAMES[type(outcome)],
            getattr(outcome, "error", None) or getattr(outcome, "reason", None),
            getattr(outcome, "provider_message_id", None),
            getattr(outcome, "provider", None),
        )
        assert result is not None
        if result["status"] != "pending":
            return str(result["status"])
        policy = await conn.fetchrow(query("retry_policy"))
    assert policy is not None and isinstance(outcome, Retry)
    raise RetryLater(retry_delay(result["attempts"], policy["base"], policy["cap"], outcome.retry_after), 1)


async def claim_due_digests(pool: asyncpg.Pool, at: datetime | None = None) -> list[asyncpg.Record]:
    """Claims every digest due at `at` (None: the database's notify.now()), a batch per transaction.

    Each claimed digest is pending with its sending job deferred, or skipped (nothing new, no address).
    """
    async with as_worker(pool) as conn:
        batch_size = await conn.fetchval(query("digest_batch_size"))
    claimed: list[asyncpg.Record] = []
    while True:
        async with as_worker(pool) as conn:
            rows = await conn.fetch(query("claim_due_digests"), at, batch_size)
        claimed.extend(rows)
        # Fewer than a batch: nothing more is due (or another worker took it).
        if len(rows) < batch_size:
            return claimed


def register(app: procrastinate.App, pool: asyncpg.Pool, settings: Settings) -> None:
    """Declares the digest tasks on the worker's app: the periodic claim and the sending job."""
    retry = DeliveryRetry()
    mailer = EmailChannel(settings, pool)  # with the pool: digests fail over to SMTP as instant e-mail does

    @app.task(name="send_digest", queue="email", retry=retry)
    async def send_digest_job(digest_id: str) -> None:
        await send_digest(pool, settings, mailer, uuid.UUID(digest_id))

    @app.periodic(cron="*/5 * * * *", periodic_id="digests")
    @app.task(name="claim_due_digests", queue="maintenance", retry=retry)
    async def claim_due_digests_job(timestamp: int) -> None:
        claimed = await claim_due_digests(pool, datetime.fromtimestamp(timestamp, UTC))
        if claimed:
            log.info("claimed %d digests", len(claimed))
