"""Daily and weekly digest e-mails on real PostgreSQL with a pinned clock.

The periodic task's function (notifyd.domain.digests.claim_due_digests) is called directly with the pinned
time, as a worker's tick would; the sending job's function (send_digest) runs in-process against the
Resend stand-in. No test waits for real hours.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import asyncpg
import markupsafe
import procrastinate
import psycopg
import pytest
from psycopg import sql

from notifyd.core.config import Settings
from notifyd.db.pool import create_pool
from notifyd.domain.deliveries import RetryLater
from notifyd.domain.digests import (
    ALL_DIGESTS,
    Digest,
    claim_due_digests,
    count_label,
    digest_language,
    register,
    render_digest,
    send_digest,
)
from notifyd.domain.email import EmailChannel, unsubscribe_token
from notifyd.worker.tasks import connector
from tests.conftest import database_url, returned_id
from tests.server import JWT_SECRET
from tests.standins.resend import ResendService, application_error, rate_limited

T = TypeVar("T")
FROM_EMAIL = "digests@example.com"
PUBLIC_BASE_URL = "https://notify.example.com"


# --- set-up -----------------------------------------------------------------------------------------


@pytest.fixture
def clock(db: psycopg.Connection[Any]) -> Callable[[datetime], None]:
    """move(at): pins notify.now() to `at` for this session and for every new connection of the database."""
    db.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")

    def move(at: datetime) -> None:
        db.execute(
            sql.SQL("ALTER DATABASE {} SET notify.clock = {}").format(
                sql.Identifier(db.info.dbname), sql.Literal(at.isoformat())
            )
        )
        db.execute("SELECT set_config('notify.clock', %s, false)", (at.isoformat(),))

    return move


def in_worker(db: psycopg.Connection[Any], work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Runs `work` on a fresh pool as notifyd's login role (new connections see the pinned clock)."""

    async def run() -> T:
        pool = await create_pool(database_url(db, login=True), min_size=1, max_size=2)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(run())


def tick(db: psycopg.Connection[Any], clock: Callable[[datetime], None], at: datetime) -> list[asyncpg.Record]:
    """The periodic task at `at`: the digests it claimed."""
    clock(at)
    return in_worker(db, lambda pool: claim_due_digests(pool, at))


def mail_settings(
    db: psycopg.Connection[Any],
    resend: ResendService,
    *,
    privacy_policy_url: str | None = None,
    notification_center_url: str | None = None,
) -> Settings:
    """Sends through the stand-in, with the product's pages digests may link (unset: none)."""
    return Settings(
        privacy_policy_url=privacy_policy_url,
        notification_center_url=notification_center_url,
        database_url=database_url(db, login=True),
        jwt_secret=JWT_SECRET,
        public_base_url=PUBLIC_BASE_URL,
        resend_api_key=resend.api_key,
        resend_api_url=resend.url,
        resend_from_email=FROM_EMAIL,
        provider_timeout=1.0,
    )


def send(db: psycopg.Connection[Any], settings: Settings, digest_id: uuid.UUID) -> str:
    """One attempt of the sending job, through a mailer as the worker's (which fails over with SMTP_HOST set)."""

    async def attempt(pool: asyncpg.Pool) -> str:
        mailer = EmailChannel(settings, pool)
        try:
            return await send_digest(pool, settings, mailer, digest_id)
        finally:
            await mailer.close()

    return in_worker(db, attempt)


def recipient(
    db: psycopg.Connection[Any], zone: str = "UTC", email: str | None = "ada@example.com", frequency: str | None = None
) -> uuid.UUID:
    user_id = uuid.uuid4()
    db.execute("INSERT INTO notify.recipients (user_id, email, timezone) VALUES (%s, %s, %s)", (user_id, email, zone))
    if frequency is not None:
        db.execute(
            "INSERT INTO notify.notification_preferences (user_id, digest_frequency) VALUES (%s, %s)",
            (user_id, frequency),
        )
    return user_id


def notify(
    db: psycopg.Connection[Any], user_id: uuid.UUID, title: str, notification_type: str = "task", **data: str
) -> uuid.UUID:
    return returned_id(
        db,
        "INSERT INTO notify.notifications (user_id, type, title, body, data) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (user_id, notification_type, title, f"About {title}", psycopg.types.json.Jsonb(data)),
    )


def email_delivery(db: psycopg.Connection[Any], notification_id: uuid.UUID) -> tuple[str, str]:
    row = db.execute(
        "SELECT status, reason FROM notify.notification_deliveries WHERE notification_id = %s AND channel = 'email'",
        (notification_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def digests(db: psycopg.Connection[Any], user_id: uuid.UUID) -> list[dict[str, Any]]:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT * FROM notify.email_digests WHERE user_id = %s ORDER BY period_start", (user_id,)
        ).fetchall()


def send_jobs(db: psycopg.Connection[Any]) -> list[str]:
    rows = db.execute(
        "SELECT args ->> 'digest_id' FROM procrastinate.procrastinate_jobs WHERE task_name = 'send_digest'"
    ).fetchall()
    return sorted(r[0] for r in rows)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


MONDAY_NINE = datetime(2026, 11, 23, 9, tzinfo=UTC)


def one_held_item(
    db: psycopg.Connection[Any], clock: Callable[[datetime], None], address: str, title: str
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A UTC user with one e-mail held since an hour before Monday 09:00: (user, notification, digest claimed then)."""
    clock(MONDAY_NINE - timedelta(hours=1))
    user = recipient(db, email=address)
    item = notify(db, user, title)
    [claimed] = tick(db, clock, MONDAY_NINE)
    return user, item, claimed["id"]


# --- when: the user's local hour, once per period -----------------------------------------------------

# (zone, frequency, the due instants of two consecutive periods in UTC): 09:00 local, Monday for weekly.
SCHEDULES = [
    ("Pacific/Kiritimati", "daily", "2026-11-22 19:00", "2026-11-23 19:00"),  # UTC+14: 09:00 is the UTC day before
    ("Etc/GMT+12", "daily", "2026-11-22 21:00", "2026-11-23 21:00"),  # UTC-12
    ("Europe/Berlin", "daily", "2026-10-24 07:00", "2026-10-25 08:00"),  # CEST, then CET: clocks went back
    ("Europe/Berlin", "daily", "2027-03-27 08:00", "2027-03-28 07:00"),  # CET, then CEST: clocks went forward
    ("Europe/Berlin", "weekly", "2026-10-19 07:00", "2026-10-26 08:00"),  # Mondays either side of 25 October
    ("Pacific/Kiritimati", "weekly", "2026-11-15 19:00", "2026-11-22 19:00"),  # Monday 09:00 is Sunday in UTC
]


@pytest.mark.parametrize(("zone", "frequency", "first", "second"), SCHEDULES)
def test_each_digest_goes_at_nine_local_time_once_per_period(
    db: psycopg.Connection[Any], clock: Callable[[datetime], None], zone: str, frequency: str, first: str, second: str
) -> None:
    user = recipient(db, zone, frequency=frequency)
    for due in (utc(first), utc(second)):
        clock(due - timedelta(hours=2))
        notify(db, user, f"Before {due:%d %b}")
        assert tick(db, clock, due - timedelta(minutes=1)) == [], "a minute early is too early"
        [claimed] = tick(db, clock, due)
        assert claimed["status"] == "pending" and claimed["frequency"] == frequency
        local_start = claimed["period_start"].astimezone(ZoneInfo(zone))
        assert (local_start.hour, local_start.minute) == (0, 0), "a period starts at local midnight"
        assert frequency == "daily" or local_start.isoweekday() == 1, "a week starts on Monday"
        assert tick(db, clock, due + timedelta(hours=3)) == [], "one digest per period"
    rows = digests(db, user)
    assert [r["scheduled_for"] for r in rows] == [utc(first), utc(second)]
    assert [r["scheduled_for"].astimezone(ZoneInfo(zone)).hour for r in rows] == [9, 9]
    assert send_jobs(db) == sorted(str(r["id"]) for r in rows), "each claimed digest has one sending job"


def test_a_chosen_time_and_weekday_are_honoured(db: psycopg.Connection[Any], clock: Callable[[datetime], None]) -> None:
    user = recipient(db, "America/New_York", frequency="weekly")
    db.execute(
        "UPDATE notify.notification_preferences SET digest_time = '17:30', digest_day = 5 WHERE user_id = %s", (user,)
    )
    clock(utc("2026-11-16 12:00"))
    notify(db, user, "Weekly item")
    friday_half_five = utc("2026-11-20 22:30")  # EST = UTC-5
    assert tick(db, clock, friday_half_five - timedelta(seconds=1)) == []
    [claimed] = tick(db, clock, friday_half_five)
    assert claimed["frequency"] == "weekly"


def test_two_workers_at_once_claim_each_digest_once(
    db: psycopg.Connection[Any], clock: Callable[[datetime], None]
) -> None:
    at = utc("2026-11-23 09:00")
    clock(at - timedelta(hours=1))
    users = [recipient(db, email=f"u{i}@example.com") for i in range(30)]
    for user in users:
        notify(db, user, "Shared tick")
    clock(at)
    start = threading.Barrier(2)
    results: list[list[asyncpg.Record]] = []

    def worker() -> None:
        async def work(pool: asyncpg.Pool) -> list[asyncpg.Record]:
            await pool.fetchval("SELECT 1")  # connected before the race starts
            start.wait()
            return await claim_due_digests(pool, at)

        results.append(in_worker(db, work))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [r["id"] for batch in results for r in batch]
    assert len(claimed) == len(set(claimed)) == len(users)
    count = db.execute("SELECT count(*) FROM notify.email_digests").fetchone()
    assert count is not None and count[0] == len(users)
    assert len(send_jobs(db)) == len(users)


# --- what goes in ---------------------------------------------------------------------------------------


def test_read_before_the_digest_is_left_out_and_an_empty_period_sends_nothing(
    db: psycopg.Connection[Any], clock: Callable[[datetime], None], resend_service: ResendService
) -> None:
    at = utc("2026-11-23 09:00")
    clock(at - timedelta(hours=3))
    busy, idle = recipient(db, email="busy@example.com"), recipient(db, email="idle@example.com")
    kept, read = notify(db, busy, "Still unread"), notify(db, busy, "Read in the app")
    idle_read = notify(db, idle, "Also read")
    db.execute("UPDATE notify.notifications SET read_at = notify.now() WHERE id IN (%s, %s)", (read, idle_read))
    claimed = {r["user_id"]: r for r in tick(db, clock, at)}
    assert claimed[busy]["status"] == "pending"
    assert claimed[idle]["status"] == "skipped" and claimed[idle]["reason"] == "nothing new since the last digest"
    [busy_digest] = digests(db, busy)
    assert busy_digest["notification_ids"] == [kept]
    assert email_delivery(db, read) == ("skipped", "read before the daily digest")
    assert email_delivery(db, idle_read) == ("skipped", "read before the daily digest")
    assert send_jobs(db) == [str(busy_digest["id"])], "a skipped digest has no job"
    settings = mail_settings(db, resend_service)
    assert send(db, settings, claimed[idle]["id"]) == "gone"
    assert send(db, settings, busy_digest["id"]) == "sent"
    assert [e.to for e in resend_service.emails] == [["busy@example.com"]]
    assert tick(db, clock, at + timedelta(days=1)) == [], "nothing held: no digest row the next day"


def test_no_address_or_a_suppressed_address_skips_the_digest(
    db: psycopg.Connection[Any], clock: Callable[[datetime], None]
) -> None:
    at = utc("2026-11-23 09:00")
    clock(at - timedelta(hours=1))
    bounced = recipient(db, email="gone@example.com")
    item = notify(db, bounced, "Bounces")
    # No address: the planner already skips its e-mail, so only a suppression arriving later reaches a digest.
    db.execute("INSERT INTO notify.email_suppressions (email, reason) VALUES ('gone@example.com', 'bounced')")
    [claimed] = tick(db, clock, at)
    assert (claimed["status"], claimed["reason"]) == ("skipped", "the address bounced")
    status, reason = email_delivery(db, item)
    assert status == "suppressed" and reason.endswith("was skipped: the address bounced")


# --- the e-mail -----------------------------------------------------------------------------------------


def test_the_digest_email_groups_counts_links_and_unsubscribes(
    db: psycopg.Connection[Any], clock: Callable[[datetime], None], resend_service: ResendService
) -> None:
    at = utc("2026-11-23 08:00")  # 09:00 in Berlin
    clock(at - timedelta(hours=5))
    user = recipient(db, "Europe/Berlin", email="ada@example.com")
    tasks = [notify(db, user, f"Task {i}") for i in range(2)]
    tasks.append(notify(db, user, "Fix <script>alert(1)</script>"))
    mention = notify(db, user, "Grace mentioned you", "user", url="https://app.example.com/threads/7")
    [claimed] = tick(db, clock, at)
    settings = mail_settings(db, resend_service)
    assert send(db, settings, claimed["id"]) == "sent"

    [email] = resend_service.emails
    assert email.subject == "Your daily digest: 3 task updates, 1 mention"
    assert email.idempotency_key == str(claimed["id"])
    assert email.to == ["ada@example.com"] and FROM_EMAIL in email.from_
    html, text = email.html or "", email.text or ""
    assert "<script>" not in html and "Fix &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Fix <script>alert(1)</script>" in text, "the text part is not HTML-escaped"
    for part in (html, text):
        assert "4 new notifications" in part and "3 task updates, 1 mention" in part
        assert "Task 0" in part and "Task 1" in part
        # Only what the notifications link: no NOTIFICATION_CENTER_URL or PRIVACY_POLICY_URL, no page nobody serves.
        assert "https://app.example.com/threads/7" in part and "/notifications" not in part
        assert "privacy" not in part.lower() and "All notifications" not in part
        assert "Monday 23 November 2026" in part
    assert html.index("Task 0") < html.index("Grace mentioned you"), "the largest group comes first"
    # One-click stops the digests (one token for them all); the footer also names each type's own link.
    digest_link = email.headers["List-Unsubscribe"].removeprefix("<").removesuffix(">")
    assert digest_link == f"{PUBLIC_BASE_URL}/unsubscribe/{unsubscribe_token(settings, str(user), ALL_DIGESTS)}"
    assert email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    type_links = [
        f"{PUBLIC_BASE_URL}/unsubscribe/{unsubscribe_token(settings, str(user), t)}" for t in ("task", "user")
    ]
    for link in (digest_link, *type_links):
        assert link in html and link in text
    assert "Unsubscribe from digest e-mails" in text and "Unsubscribe from task e-mails" in text

    [digest] = digests(db, user)
    assert digest["status"] == "sent" and digest["sent_at"] == at and digest["provider_message_id"] == email.id
    for item in [*tasks, mention]:
        assert email_delivery(db, item) == ("sent", f"in the daily digest {digest['id']}")
    explained = db.execute("SELECT notify.explain(%s)::text", (mention,)).fetchone()
    assert explained is not None and f"in the daily digest {digest['id']}" in explained[0]
    last = db.execute("SELECT last_sent_at FROM notify.last_digests WHERE user_id = %s", (user,)).fetchone()
    assert last is not None and last[0] == at
    assert send(db, settings, claimed["id"]) == "gone", "a sent digest is not sent again"
    assert len(resend_service.emails) == 1


@pytest.mark.parametrize(
    ("privacy", "center"),
    [(None, None), ("https://acme.example/privacy?a=1&b=2", None), (None, "https://acme.example/inbox?tab=all&x=1"),
     ("https://acme.example/privacy", "https://acme.example/inbox")],
)  # fmt: skip
def test_the_digest_links_only_the_pages_that_are_set(privacy: str | None, center: str | None) -> None:
    settings = Settings(database_url="postgresql://unused", jwt_secret=JWT_SECRET, public_base_url=PUBLIC_BASE_URL,
                        resend_from_name="Acme Tasks", privacy_policy_url=privacy,
                        notification_center_url=center)  # fmt: skip
    thread = "https://acme.example/threads/7"
    items = [{"id": str(uuid.uuid4()), "type": t, "title": f"Held {t}", "body": "", "data": data,
              "created_at": "2026-11-23T08:00:00+00:00"}
             for t, data in (("task", {}), ("user", {"url": thread}))]  # fmt: skip
    digest = Digest(uuid.uuid4(), "daily", datetime(2026, 11, 23, tzinfo=UTC), 1,
                    {"user_id": str(uuid.uuid4()), "locale": "en", "timezone": "UTC"}, items)  # fmt: skip
    email = render_digest(digest, settings)
    for part in (email.html, email.text):
        assert "Acme Tasks" in part and "Held task" in part and thread in part
        assert ("Privacy policy" in part) is (privacy is not None)
        assert ("All notifications" in part) is (center is not None)
        assert "/notifications" not in part, "notifyd serves no notification center"
    links = set(re.findall(r'href="([^"]*)"', email.html))
    unsubscribe = {link for link in links if link.startswith(f"{PUBLIC_BASE_URL}/unsubscribe/")}
    wanted = {thread, *(str(markupsafe.escape(page)) for page in (privacy, center) if page is not None)}
    assert links - unsubscribe == wanted, "every link goes to a page that is set"
    if center is not None:
        assert f"  {center}\n" in email.text and f"All notifications: {center}" in email.text
    # The separators stay between links: none dangling at the end of the footer.
    footer = email.html.rsplit("border-top", 1)[1]
    assert footer.count("&middot;") == footer.count("</a>") - 1


def test_rate_limits_and_server_errors_are_retried_and_the_digest_arrives_once(
    db: psycopg.Connection[Any], clock: Callable[[datetime], None], resend_service: ResendService
) -> None:
    user, item, digest_id = one_held_item(db, clock, "flaky@example.com", "Eventually")
    resend_service.script(rate_limited(retry_after=1), application_error(), to="flaky@example.com")
    settings = mail_settings(db, resend_service)
    for _ in range(2):
        with pytest.raises(RetryLater) as retry:
            send(db, settings, digest_id)
        assert "1 deliveries to retry" in str(retry.value)
        [digest] = digests(db, user)
        assert digest["status"] == "pending" and digest["error_message"].startswith("Resend ")
    assert send(db, settings, digest_id) == "sent"
    assert [e.to for e in resend_service.emails] == [["flaky@example.com"]]
    [digest] = digests(db, user)
    assert digest["attempts"] == 3 and digest["error_message"] is None
    assert email_delivery(db, item)[0] == "sent"


def test_after_max_attempts_the_digest_fails_with_the_error(
    db: psycopg.Connection[Any], clock: Callable[[datetime], None], resend_service: ResendService
) -> None:
    db.execute("UPDATE notify.settings SET value = '2' WHERE key = 'delivery.max_attempts'")
    user, item, digest_id = one_held_item(db, clock, "down@example.com", "Never arrives")
    resend_service.script(application_error(), application_error(), to="down@example.com")
    settings = mail_settings(db, resend_service)
    with pytest.raises(RetryLater):
        send(db, settings, digest_id)
    assert send(db, settings, digest_id) == "failed"
    [digest] = digests(db, user)
    assert digest["reason"] == "gave up after 2 attempts" and "500" in digest["error_message"]
    status, reason = email_delivery(db, item)
    assert status == "failed" and reason.startswith(f"the daily digest {digest['id']} failed")
    assert resend_service.emails == []


def test_count_labels_read_naturally() -> None:
    assert [count_label("task", 1), count_label("task", 3), count_label("user", 2)] == [
        "1 task update",
        "3 task updates",
        "2 mentions",
    ]
    assert count_label("parcel", 2) == "2 parcel notifications"
    assert [count_label("task", 1, "de"), count_label("user", 2, "de"), count_label("parcel", 1, "de")] == [
        "1 Aufgaben-Update",
        "2 Erwähnungen",
        "1 parcel-Benachrichtigung",
    ]


# (recipient's locale, templates.default_language, the digest's language): locale, its language, default, en.
LANGUAGES = [("de", "en", "de"), ("de-AT", "en", "de"), ("fr", "en", "en"), ("fr-CA", "de", "de"), ("EN", "xx", "en")]


@pytest.mark.parametrize(("locale", "default", "language"), LANGUAGES)
def test_the_digest_language_falls_back_as_templates_do(locale: str, default: str, language: str) -> None:
    assert digest_language(locale, default) == language


@pytest.mark.parametrize(
    ("locale", "subject", "words"),
    [
        (
            "de-AT",
            "Ihre tägliche Zusammenfassung: 2 Aufgaben-Updates, 1 Erwähnung",
            [
                "3 neue Benachrichtigungen",
                "Montag, 23. November 2026",
                "Alle Benachrichtigungen",
                "Zusammenfassungen per E-Mail abbestellen",
                "task-E-Mails abbestellen",
                "Datenschutzerklärung",
                "Mo, 23. Nov., 08:30",
            ],
        ),
        (
            "fr",
            "Your daily digest: 2 task updates, 1 mention",
            [
                "3 new notifications",
                "Monday 23 November 2026",
                "All notifications",
                "Unsubscribe from digest e-mails",
                "Privacy policy",
                "Mon 23 Nov, 08:30",
            ],
        ),
    ],
)
def test_the_digest_speaks_the_recipients_language(
    db: psycopg.Connection[Any],
    clock: Callable[[datetime], None],
    resend_service: ResendService,
    locale: str,
    subject: str,
    words: list[str],
) -> None:
    clock(MONDAY_NINE - timedelta(minutes=30))
    user = recipient(db, email=f"{locale}@example.com")
    db.execute("UPDATE notify.recipients SET locale = %s WHERE user_id = %s", (locale, user))
    notify(db, user, "Erste Aufgabe")
    notify(db, user, "Zweite Aufgabe")
    notify(db, user, "Grace", "user")
    [claimed] = tick(db, clock, MONDAY_NINE)
    settings = mail_settings(db, resend_service, privacy_policy_url="https://example.com/privacy",
                             notification_center_url="https://example.com/notifications")  # fmt: skip
    assert send(db, settings, claimed["id"]) == "sent"
    [email] = resend_service.emails
    assert email.subject == subject
    html, text = email.html or "", email.text or ""
    language = {"de-AT": "de", "fr": "en"}[locale]
    assert f'<html lang="{language}">' in html, "the language written, not the locale"
    for word in words:
        assert word in html and word in text, word
    other = {"de-AT": "Your daily digest", "fr": "Zusammenfassung"}[locale]
    assert other not in html and other not in text, "one language per e-mail"


def test_a_retry_renders_the_same_bytes(
    db: psycopg.Connection[Any], clock: Callable[[datetime], None], resend_service: ResendService
) -> None:
    user, _, digest_id = one_held_item(db, clock, "again@example.com", "Zweimal")
    db.execute("UPDATE notify.recipients SET locale = 'de' WHERE user_id = %s", (user,))
    resend_service.script(application_error(), to="again@example.com")
    settings = mail_settings(db, resend_service)
    clock(MONDAY_NINE + timedelta(hours=5))  # the clock moves between attempts; the e-mail does not
    with pytest.raises(RetryLater):
        send(db, settings, digest_id)
    assert send(db, settings, digest_id) == "sent"
    bodies = [r.json() for r in resend_service.requests if r.path == "/emails"]
    assert len(bodies) == 2 and bodies[0] == bodies[1] and "Zusammenfassung" in bodies[0]["subject"]


def test_the_registered_tasks_claim_on_the_tick_and_send_through_procrastinate(
    db: psycopg.Connection[Any], clock: Callable[[datetime], None], resend_service: ResendService
) -> None:
    at = MONDAY_NINE
    clock(at - timedelta(hours=1))
    user = recipient(db, email="queued@example.com")
    item = notify(db, user, "Through the queue")
    clock(at)
    settings = mail_settings(db, resend_service)

    async def work(pool: asyncpg.Pool) -> dict[str, Any]:
        app = procrastinate.App(connector=connector(settings))
        register(app, pool, settings)
        async with app.open_async():
            await app.tasks["claim_due_digests"].defer_async(timestamp=int(at.timestamp()))
            # wait=False: run what is queued (the tick, then the job it deferred), then return.
            await app.run_worker_async(queues=["maintenance", "email"], wait=False, install_signal_handlers=False)
        return app.tasks

    tasks = in_worker(db, work)
    assert {"claim_due_digests", "send_digest"} <= set(tasks)
    assert [e.to for e in resend_service.emails] == [["queued@example.com"]]
    [digest] = digests(db, user)
    assert digest["status"] == "sent" and email_delivery(db, item)[0] == "sent"


def test_control_characters_in_the_sender_and_the_unsubscribe_url_never_reach_a_digest_header(
    db: psycopg.Connection[Any], clock: Callable[[datetime], None], resend_service: ResendService
) -> None:
    _, _, digest_id = one_held_item(db, clock, "ada@example.com", "Hello\r\nBcc: x@evil.test")
    settings = dataclasses.replace(
        mail_settings(db, resend_service),
        resend_from_name="Acme\r\nBcc: sender@evil.test\x00",
        public_base_url="https://notify.example.com/\r\nX-Evil:\u2028",
    )
    assert send(db, settings, digest_id) == "sent"

    [email] = resend_service.emails
    for value in (email.subject, email.from_, *email.headers.values()):
        assert not any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in value), repr(value)
    assert email.from_ == f'"Acme Bcc: sender@evil.test " <{FROM_EMAIL}>'
    assert email.headers["List-Unsubscribe"].startswith("<https://notify.example.com/ X-Evil: /unsubscribe/")
    assert set(email.headers) == {"List-Unsubscribe", "List-Unsubscribe-Post"} and "bcc" not in email.raw
