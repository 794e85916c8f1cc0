"""E-mail through Resend: a real worker and server, the Resend stand-in, real PostgreSQL.

What arrived at the stand-in is what Resend would send; the ledger, analytics, preferences and
suppressions are read back from the database.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import markupsafe
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resend.exceptions import ResendError, raise_for_code_and_type

from notifyd.core.config import Settings
from notifyd.core.crypto import open_token, seal_token
from notifyd.domain.deliveries import Failed, Retry
from notifyd.domain.digests import ALL_DIGESTS, Digest, render_digest
from notifyd.domain.email import RenderedEmail, header_text, outcome_of, send_params
from tests.conftest import returned_id
from tests.decisions import channel_decision, channel_settled
from tests.server import JWT_SECRET, QUICK_WORKER_ENV, ServerProcess, WorkerProcess, make_token, wait_for
from tests.standins.http import Response
from tests.standins.resend import (
    ResendService,
    SentEmail,
    application_error,
    new_webhook_secret,
    rate_limited,
    resend_error,
    sign_webhook,
)

FROM_EMAIL = "notifications@example.com"
PUBLIC_BASE_URL = "https://notify.example.com"
WEBHOOK = "/api/v1/webhooks/resend"
ONE_CLICK = "List-Unsubscribe=One-Click"


# --- set-up -----------------------------------------------------------------------------------------


def mail_env(resend: ResendService, **overrides: str) -> dict[str, str]:
    return {
        **QUICK_WORKER_ENV,
        "RESEND_API_KEY": resend.api_key,
        "RESEND_API_URL": resend.url,
        "RESEND_FROM_EMAIL": FROM_EMAIL,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        **overrides,
    }


@pytest.fixture
def worker(quick_retries: None, own_worker: Any, resend_service: ResendService) -> WorkerProcess:
    """A worker sending through the stand-in, retrying after a fifth of a second rather than 10."""
    proc: WorkerProcess = own_worker(**mail_env(resend_service))
    return proc


def recipient(service: psycopg.Connection[Any], email: str | None = None) -> uuid.UUID:
    user = uuid.uuid4()
    service.execute("SELECT notify.upsert_recipient_v2(%s, %s, NULL, NULL, NULL)", (user, email))
    return user


def instant_email(db: psycopg.Connection[Any], user: uuid.UUID, notification_type: str) -> None:
    """The user's own choice: e-mail of this type at once, not in the daily digest."""
    db.execute(
        "INSERT INTO notify.notification_preferences (user_id, notification_type, digest_frequency) "
        "VALUES (%s, %s, 'instant')",
        (user, notification_type),
    )


def send(
    service: psycopg.Connection[Any],
    user: uuid.UUID,
    *,
    title: str = "Review PR #123",
    body: str = "Alice asked you to review it.",
    priority: str = "critical",
    notification_type: str = "task",
    data: dict[str, Any] | None = None,
) -> uuid.UUID:
    return returned_id(
        service,
        "SELECT notify.send(%s, %s, %s, %s, %s, %s::jsonb)",
        (user, notification_type, title, body, priority, json.dumps(data or {})),
    )


def email_delivery(db: psycopg.Connection[Any], notification_id: uuid.UUID) -> dict[str, Any]:
    return channel_decision(db, notification_id, "email")


def settled(db: psycopg.Connection[Any], notification_id: uuid.UUID, status: str) -> dict[str, Any]:
    return channel_settled(db, notification_id, "email", status)


def emails_to(resend: ResendService, address: str) -> list[SentEmail]:
    return [e for e in resend.emails if e.to == [address]]


def posts_to(resend: ResendService, address: str) -> int:
    return sum(1 for r in resend.requests if r.path == "/emails" and r.json().get("to") == [address])


def token_of(email: SentEmail) -> str:
    link = email.headers["List-Unsubscribe"].removeprefix("<").removesuffix(">")
    return urlsplit(link).path.removeprefix("/unsubscribe/")


def click_target(link: str) -> str:
    """Where a click-redirect link leads: the URL in its signed token."""
    payload = open_token(JWT_SECRET, "click", link.rsplit("/", 1)[1])
    assert payload is not None, f"{link} carries no click token"
    return payload["url"]


# --- sending ------------------------------------------------------------------------------------------


def test_an_email_arrives_escaped_with_a_button_and_an_unsubscribe_link(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], worker: WorkerProcess, resend_service: ResendService
) -> None:
    user = recipient(service, "ada@example.com")
    notification = send(
        service,
        user,
        title="<script>alert(1)</script> & more",
        body="Line one\nLine <b>two</b>",
        data={"url": "javascript:alert(2)", "action_url": "https://app.example.com/tasks/7"},
    )
    delivery = settled(db, notification, "sent")

    [email] = emails_to(resend_service, "ada@example.com")
    assert email.from_ == f"notifyd <{FROM_EMAIL}>"
    assert email.subject == "<script>alert(1)</script> & more"
    assert email.idempotency_key == str(delivery["id"])
    assert delivery["provider_message_id"] == email.id
    assert email.html is not None and email.text is not None
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in email.html and "<script>" not in email.html
    assert "Line &lt;b&gt;two&lt;/b&gt;" in email.html
    # The action link goes through the click redirect, which signs the link (tests/test_tracking.py).
    [click] = re.findall(r'href="([^"]*/t/click/[^"]*)"', email.html)
    assert click_target(click) == "https://app.example.com/tasks/7"
    assert "javascript:" not in email.html
    assert "<script>alert(1)</script> & more" in email.text and "Line <b>two</b>" in email.text
    assert f"Open in notifyd: {click}" in email.text

    link = email.headers["List-Unsubscribe"].removeprefix("<").removesuffix(">")
    assert email.headers["List-Unsubscribe"] == f"<{link}>"
    assert email.headers["List-Unsubscribe-Post"] == ONE_CLICK
    assert link.startswith(f"{PUBLIC_BASE_URL}/unsubscribe/") and len(token_of(email)) > 40
    for part in (email.html, email.text):
        assert link in part
        assert "task notifications" in part
        # No PRIVACY_POLICY_URL: no privacy link at all, rather than one to a page nobody serves.
        assert "privacy" not in part.lower()
    analytics = db.execute(
        "SELECT event FROM notify.delivery_events WHERE notification_id = %s AND channel = 'email'",
        (notification,),
    ).fetchall()
    assert analytics == [("sent",)]


@pytest.mark.parametrize("product", ["Acme Tasks", "Ben & Jerry's"])
def test_the_footer_names_the_product_and_links_its_privacy_policy(
    product: str, db: psycopg.Connection[Any], service: psycopg.Connection[Any],
    own_worker: Any, resend_service: ResendService,
) -> None:  # fmt: skip
    privacy = "https://acme.example/legal/privacy?lang=en&v=2"
    own_worker(**mail_env(resend_service, RESEND_FROM_NAME=product, PRIVACY_POLICY_URL=privacy))
    user = recipient(service, "max@example.com")
    action = "https://app.example.com/tasks/9"
    settled(db, send(service, user, data={"action_url": action}), "sent")

    [email] = emails_to(resend_service, "max@example.com")
    assert email.html is not None and email.text is not None
    escaped = str(markupsafe.escape(product))  # as Jinja2 escapes it
    assert f"because {product} sends you task notifications" in email.text
    assert f"because {escaped} sends" in email.html
    # The call to action: one button to the notification's action URL (through the click redirect), in
    # both parts.
    [(click, label)] = re.findall(r'<a href="([^"]*/t/click/[^"]*)"[^>]*>([^<]*)</a>', email.html)
    assert label == f"Open in {escaped}"
    assert click_target(click) == action
    assert f"Open in {product}: {click}" in email.text
    assert f'href="{markupsafe.escape(privacy)}"' in email.html and ">Privacy policy</a>" in email.html
    assert f"Privacy policy: {privacy}" in email.text


def test_rate_limits_and_server_errors_are_retried_and_each_email_arrives_once(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], worker: WorkerProcess, resend_service: ResendService
) -> None:
    limited, broken = "limited@example.com", "broken@example.com"
    resend_service.script(rate_limited(retry_after=1), to=limited)
    resend_service.script(application_error(), to=broken)
    first = send(service, recipient(service, limited))
    second = send(service, recipient(service, broken))

    for notification, address in ((first, limited), (second, broken)):
        delivery = settled(db, notification, "sent")
        assert delivery["attempts"] == 2
        [email] = emails_to(resend_service, address)
        assert delivery["provider_message_id"] == email.id
        assert posts_to(resend_service, address) == 2
    limited_at = [r.at for r in resend_service.requests if r.json().get("to") == [limited]]
    assert limited_at[1] - limited_at[0] >= 1.0, "Retry-After: 1 was not honoured"


def test_a_timeout_is_retried_and_the_idempotency_key_makes_resend_send_once(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], worker: WorkerProcess, resend_service: ResendService
) -> None:
    slow = "slow@example.com"
    # Resend takes the e-mail but answers after 2 s; the worker gives up after PROVIDER_TIMEOUT=1.
    resend_service.script(Response(delay=2), to=slow)
    notification = send(service, recipient(service, slow))

    delivery = settled(db, notification, "sent")
    assert delivery["attempts"] >= 2
    assert posts_to(resend_service, slow) >= 2
    keys = {r.headers["Idempotency-Key"] for r in resend_service.requests if r.json().get("to") == [slow]}
    assert keys == {str(delivery["id"])}
    bodies = {r.body for r in resend_service.requests if r.json().get("to") == [slow]}
    assert len(bodies) == 1, "a retry rendered a different e-mail"
    [email] = emails_to(resend_service, slow)
    assert delivery["provider_message_id"] == email.id


def test_a_refused_email_is_a_dead_letter_that_a_dba_sends_again(
    db: psycopg.Connection[Any],
    service: psycopg.Connection[Any],
    worker: WorkerProcess,
    resend_service: ResendService,
    as_role: Any,
) -> None:
    address = "refused@example.com"
    resend_service.script(resend_error(422, "validation_error", "Invalid `to` field."), to=address)
    notification = send(service, recipient(service, address))

    failed = settled(db, notification, "failed")
    assert failed["attempts"] == 1 and "422 validation_error" in failed["error_message"]
    assert emails_to(resend_service, address) == []
    with as_role("notify_admin", {}) as dba:
        dba.execute("SELECT delivery_id, error_message FROM notify.dead_letters")
        assert dba.fetchall() == [(failed["id"], failed["error_message"])]
        dba.execute("SELECT notify.retry_delivery(%s)", (failed["id"],))
        dba.execute("COMMIT")

    sent = settled(db, notification, "sent")
    [email] = emails_to(resend_service, address)
    assert sent["provider_message_id"] == email.id and email.idempotency_key == str(failed["id"])


def test_without_resend_settings_email_is_skipped_and_the_worker_keeps_running(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], own_worker: Any, resend_service: ResendService
) -> None:
    proc: WorkerProcess = own_worker(**mail_env(resend_service, RESEND_API_KEY="", RESEND_FROM_EMAIL=""))
    notifications = [send(service, recipient(service, f"u{i}@example.com")) for i in range(2)]

    for notification in notifications:
        skipped = settled(db, notification, "skipped")
        assert skipped["reason"] == "e-mail is not configured: set RESEND_API_KEY and RESEND_FROM_EMAIL"
    assert resend_service.requests == []
    assert proc.proc is not None and proc.proc.poll() is None, "the worker stopped"
    assert "RESEND_API_KEY" in proc.log()


def test_no_address_or_a_suppressed_address_gets_no_email(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], worker: WorkerProcess, resend_service: ResendService
) -> None:
    db.execute("INSERT INTO notify.email_suppressions (email, reason) VALUES ('gone@example.com', 'bounced')")
    nowhere = send(service, recipient(service))
    suppressed = send(service, recipient(service, "Gone@Example.com"))
    control = send(service, recipient(service, "here@example.com"))

    settled(db, control, "sent")
    assert email_delivery(db, nowhere)["status"] == "skipped"
    assert email_delivery(db, nowhere)["reason"] == "no e-mail address"
    assert email_delivery(db, suppressed)["status"] == "suppressed"
    assert [e.to for e in resend_service.emails] == [["here@example.com"]]


@pytest.mark.parametrize(
    ("status", "name", "headers", "expected"),
    [
        (429, "rate_limit_exceeded", {"Retry-After": "7"}, Retry("", 7.0)),
        (429, "daily_quota_exceeded", {}, Retry("", None)),
        (500, "application_error", {}, Retry("", None)),
        (503, "service_unavailable", {}, Retry("", None)),
        (500, "HttpClientError", {}, Retry("", None)),  # how the SDK reports a refused connection or a timeout
        (409, "concurrent_idempotent_requests", {}, Retry("", None)),  # the first try is still being answered
        (409, "invalid_idempotent_request", {}, Failed("")),  # the same key with another body: never send it
        (422, "validation_error", {}, Failed("")),
        (422, "missing_required_field", {}, Failed("")),
        (401, "missing_api_key", {}, Failed("")),
        (403, "invalid_api_key", {}, Failed("")),
        (400, "invalid_idempotency_key", {}, Failed("")),
    ],
)
def test_resend_errors_are_retried_only_when_trying_again_can_help(
    status: int, name: str, headers: dict[str, str], expected: Retry | Failed
) -> None:
    with pytest.raises(ResendError) as raised:
        if name == "HttpClientError":
            raise ResendError(code=status, error_type=name, message="Request failed", suggested_action="")
        raise_for_code_and_type(code=status, error_type=name, message="refused", headers=headers)
    outcome = outcome_of(raised.value)
    assert type(outcome) is type(expected)
    assert f"{status} {name}" in outcome.error
    if isinstance(expected, Retry):
        assert isinstance(outcome, Retry) and outcome.retry_after == expected.retry_after


# --- unsubscribe --------------------------------------------------------------------------------------


def email_enabled(db: psycopg.Connection[Any], user: uuid.UUID, notification_type: str) -> bool:
    """Whether e-mail of that type is on for the user, as the planner decides it."""
    row = db.execute(
        "SELECT email_enabled FROM notify_private.effective_preferences(%s, %s)", (user, notification_type)
    ).fetchone()
    assert row is not None
    return bool(row[0])


def preferences(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute("SELECT * FROM notify.notification_preferences ORDER BY id").fetchall()


def test_one_click_unsubscribe_turns_that_types_email_off(
    db: psycopg.Connection[Any],
    service: psycopg.Connection[Any],
    worker: WorkerProcess,
    own_server: Any,
    resend_service: ResendService,
) -> None:
    server: ServerProcess = own_server()
    user = recipient(service, "bob@example.com")
    instant_email(db, user, "task")
    instant_email(db, user, "billing")
    first = send(service, user, priority="high")
    settled(db, first, "sent")
    [email] = resend_service.emails
    url = f"{server.url}/unsubscribe/{token_of(email)}"

    # A mail scanner or a person opening the link: a page with a button, and nothing changes.
    before = preferences(db)
    page = httpx.get(url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "task" in page.text and '<form method="post">' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert preferences(db) == before

    # The mail client's RFC 8058 POST: no cookie, no credential, the token alone.
    answer = httpx.post(url, content=ONE_CLICK, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200, answer.text
    assert "no longer receive e-mails about task notifications" in answer.text
    assert email_enabled(db, user, "task") is False
    assert email_enabled(db, user, "billing") is True
    # Again, from the page's button (empty body this time): still 200, still off.
    assert httpx.post(url).status_code == 200
    assert "already turned off" in httpx.get(url).text

    second = send(service, user, priority="high")
    other_type = send(service, user, priority="high", notification_type="billing")
    settled(db, other_type, "sent")
    skipped = email_delivery(db, second)
    assert (skipped["status"], skipped["reason"]) == ("skipped", "e-mail is turned off for task notifications")
    assert [e.subject for e in resend_service.emails] == ["Review PR #123", "Review PR #123"]
    assert [e.id for e in resend_service.emails][1] == email_delivery(db, other_type)["provider_message_id"]


def digest_unsubscribe_url(server: ServerProcess, user: uuid.UUID) -> str:
    """The List-Unsubscribe URL of a daily digest to `user`, as the worker renders it for this server."""
    settings = Settings(database_url="postgresql://unused", jwt_secret=JWT_SECRET, public_base_url=server.url)
    item = {"id": str(uuid.uuid4()), "type": "task", "title": "Held", "body": "", "data": {},
            "created_at": "2026-11-23T08:00:00+00:00"}  # fmt: skip
    digest = Digest(uuid.uuid4(), "daily", datetime(2026, 11, 23, tzinfo=UTC), 1,
                    {"user_id": str(user), "locale": "en", "timezone": "UTC"}, [item])  # fmt: skip
    header = render_digest(digest, settings).headers["List-Unsubscribe"]
    return header.removeprefix("<").removesuffix(">")


def digest_frequencies(db: psycopg.Connection[Any], user: uuid.UUID) -> set[str]:
    """The digest frequency in force for the user, over every notification type."""
    rows = db.execute(
        "SELECT p.digest_frequency FROM notify.notification_types AS t "
        "CROSS JOIN LATERAL notify_private.effective_preferences(%s, t.name) AS p",
        (user,),
    ).fetchall()
    return {r[0] for r in rows}


def test_one_click_from_a_digest_stops_every_digest(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], own_server: Any
) -> None:
    server: ServerProcess = own_server()
    user = recipient(service, "dora@example.com")
    # A type row asking for its own weekly digest would outrank the global row: it must stop too.
    db.execute(
        "INSERT INTO notify.notification_preferences (user_id, notification_type, digest_frequency, push_enabled) "
        "VALUES (%s, 'billing', 'weekly', false)",
        (user,),
    )
    held = send(service, user, priority="normal")
    assert (email_delivery(db, held)["status"], email_delivery(db, held)["reason"]) == ("held", "for the daily digest")
    assert digest_frequencies(db, user) == {"daily", "weekly"}
    url = digest_unsubscribe_url(server, user)

    before = preferences(db)
    page = httpx.get(url)
    assert page.status_code == 200 and "digest e-mails" in page.text and '<form method="post">' in page.text
    assert preferences(db) == before, "opening the link changes nothing"

    answer = httpx.post(url, content=ONE_CLICK, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200, answer.text
    assert "You will no longer receive digest e-mails or other non-urgent e-mails" in answer.text
    assert digest_frequencies(db, user) == {"never"}
    row = db.execute(
        "SELECT push_enabled, email_enabled, digest_frequency FROM notify.notification_preferences "
        "WHERE user_id = %s AND notification_type IS NULL",
        (user,),
    ).fetchone()
    assert row == (None, None, "never"), "only the digest frequency is set; the rest stays inherited"
    billing = db.execute(
        "SELECT push_enabled, digest_frequency FROM notify.notification_preferences "
        "WHERE user_id = %s AND notification_type = 'billing'",
        (user,),
    ).fetchone()
    assert billing == (False, None), "the type row keeps its other choices"
    skipped = email_delivery(db, held)
    assert (skipped["status"], skipped["reason"]) == ("skipped", "digest e-mails were unsubscribed")

    following = email_delivery(db, send(service, user, priority="normal"))
    assert (following["status"], following["reason"]) == ("skipped", "e-mail is turned off for task notifications")
    assert httpx.post(url).status_code == 200, "a second click is still fine"
    assert "already turned off" in httpx.get(url).text


def test_a_forged_or_mangled_unsubscribe_token_is_404_and_changes_nothing(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], own_server: Any
) -> None:
    server: ServerProcess = own_server()
    user = recipient(service, "carol@example.com")
    instant_email(db, user, "task")
    before = preferences(db)
    forged = seal_token("not-the-servers-secret", "unsubscribe", {"u": str(user), "t": "task"})
    other_purpose = seal_token(JWT_SECRET, "receipt", {"u": str(user), "t": "task"})
    # Signed by the server, but for a user or a type that does not exist.
    nobody = seal_token(JWT_SECRET, "unsubscribe", {"u": str(uuid.uuid4()), "t": "task"})
    no_type = seal_token(JWT_SECRET, "unsubscribe", {"u": str(user), "t": "no_such_type"})
    not_a_user = seal_token(JWT_SECRET, "unsubscribe", {"u": "admin", "t": "task"})
    # The digest-level token ("*": every digest), forged or for nobody.
    forged_digests = seal_token("not-the-servers-secret", "unsubscribe", {"u": str(user), "t": ALL_DIGESTS})
    nobodys_digests = seal_token(JWT_SECRET, "unsubscribe", {"u": str(uuid.uuid4()), "t": ALL_DIGESTS})
    mangled = ("nonsense", forged.split(".")[0] + ".", "a" * 300, "abc.%C3%A9", "%00")
    tokens = (forged, other_purpose, nobody, no_type, not_a_user, forged_digests, nobodys_digests, *mangled)
    for token in tokens:
        for method in ("GET", "POST"):
            answer = httpx.request(method, f"{server.url}/unsubscribe/{token}", content=ONE_CLICK)
            assert answer.status_code == 404, (method, token, answer.text)
            assert "not valid" in answer.text and answer.headers["content-type"].startswith("text/html")
    assert preferences(db) == before


# --- the Resend webhook -------------------------------------------------------------------------------


class Webhooks:
    """A notifyd that takes Resend's webhook, and Resend's side of it: events signed with the shared secret."""

    def __init__(self, server: ServerProcess, resend: ResendService, secret: str) -> None:
        self.server = server
        self.resend = resend
        self.secret = secret

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(
            f"{self.server.url}{WEBHOOK}", content=body, headers={"Content-Type": "application/json", **headers}
        )

    def event(self, kind: str, email_id: str, msg_id: str | None = None, **data: Any) -> httpx.Response:
        body = self.resend.webhook_event(kind, email_id, **data)
        return self.post(body, sign_webhook(self.secret, body, msg_id=msg_id))

    def applied(self, kind: str, email_id: str, msg_id: str | None = None, **data: Any) -> bool:
        answer = self.event(kind, email_id, msg_id, **data)
        assert answer.status_code == 200, answer.text
        return bool(answer.json()["applied"])


@pytest.fixture
def webhooks(own_server: Any, resend_service: ResendService) -> Webhooks:
    secret = new_webhook_secret()
    return Webhooks(own_server(RESEND_WEBHOOK_SECRET=secret), resend_service, secret)


def sent_email(db: psycopg.Connection[Any], service: psycopg.Connection[Any], address: str) -> tuple[uuid.UUID, str]:
    """A notification whose e-mail Resend accepted (as the worker records it): its id and Resend's e-mail id."""
    notification = send(service, recipient(service, address))
    email_id = str(uuid.uuid4())
    db.execute(
        "UPDATE notify.notification_deliveries SET status = 'sent', sent_at = now(), provider_message_id = %s "
        "WHERE notification_id = %s AND channel = 'email'",
        (email_id, notification),
    )
    return notification, email_id


def events(db: psycopg.Connection[Any], notification: uuid.UUID) -> list[tuple[str, Any]]:
    return [
        (r[0], r[1])
        for r in db.execute(
            "SELECT event, metadata FROM notify.delivery_events WHERE notification_id = %s ORDER BY created_at",
            (notification,),
        )
    ]


def suppressed(db: psycopg.Connection[Any], address: str) -> str | None:
    row = db.execute("SELECT reason FROM notify.email_suppressions WHERE email = %s", (address,)).fetchone()
    return None if row is None else str(row[0])


def test_delivered_opened_and_clicked_are_recorded_on_the_delivery_and_in_analytics(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], webhooks: Webhooks
) -> None:
    notification, email_id = sent_email(db, service, "dan@example.com")

    assert webhooks.applied("email.delivered", email_id)
    assert email_delivery(db, notification)["status"] == "delivered"
    assert webhooks.applied("email.opened", email_id)
    link = {"link": "https://app.example.com/tasks/7", "timestamp": "2026-01-01T00:00:00Z"}
    assert webhooks.applied("email.clicked", email_id, click=link)

    delivery = email_delivery(db, notification)
    assert delivery["status"] == "delivered"
    assert delivery["opened_at"] is not None and delivery["clicked_at"] is not None
    recorded = events(db, notification)
    assert [e for e, _ in recorded] == ["delivered", "opened", "clicked"]
    assert recorded[2][1]["click"] == link
    assert all("to" not in metadata and "subject" not in metadata for _, metadata in recorded)


def test_a_hard_bounce_or_a_complaint_suppresses_the_address_and_a_soft_bounce_does_not(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], webhooks: Webhooks
) -> None:
    hard, hard_id = sent_email(db, service, "hard@example.com")
    soft, soft_id = sent_email(db, service, "soft@example.com")
    complained, complained_id = sent_email(db, service, "angry@example.com")

    assert webhooks.applied("email.bounced", hard_id)
    assert webhooks.applied("email.bounced", soft_id, bounce={"type": "Transient", "subType": "MailboxFull"})
    assert webhooks.applied("email.complained", complained_id)

    assert email_delivery(db, hard)["status"] == "bounced"
    assert suppressed(db, "hard@example.com") == "bounced"
    assert suppressed(db, "soft@example.com") is None
    assert suppressed(db, "angry@example.com") == "complained"
    assert [e for e, _ in events(db, complained)] == ["complained"]
    # The next e-mail to a suppressed address is not sent; to the soft-bounced one it is.
    assert email_delivery(db, send(service, recipient(service, "hard@example.com")))["status"] == "suppressed"
    assert email_delivery(db, send(service, recipient(service, "soft@example.com")))["status"] == "pending"


def webhook_state(db: psycopg.Connection[Any]) -> tuple[Any, ...]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM notify.notification_analytics), (SELECT count(*) FROM notify.webhook_events), "
        "(SELECT count(*) FROM notify.email_suppressions), "
        "(SELECT array_agg(status ORDER BY id) FROM notify.notification_deliveries)"
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_forged_replayed_or_unsigned_webhooks_are_rejected_and_record_nothing(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], webhooks: Webhooks
) -> None:
    _, email_id = sent_email(db, service, "eve@example.com")
    body = webhooks.resend.webhook_event("email.bounced", email_id)
    signed = sign_webhook(webhooks.secret, body)
    before = webhook_state(db)

    attempts = {
        "another secret": (body, sign_webhook(new_webhook_secret(), body)),
        "a changed body": (body.replace(b"Permanent", b"Transient"), signed),
        "re-serialized JSON": (json.dumps(json.loads(body), indent=1).encode(), signed),
        "an old timestamp": (body, sign_webhook(webhooks.secret, body, timestamp=int(time.time()) - 600)),
        "a future timestamp": (body, sign_webhook(webhooks.secret, body, timestamp=int(time.time()) + 600)),
        "another message id": (body, {**signed, "svix-id": "msg_other"}),
        "no signature": (body, {k: v for k, v in signed.items() if k != "svix-signature"}),
        "no headers": (body, {}),
        "a malformed signature": (body, {**signed, "svix-signature": "v1"}),
    }
    for what, (payload, headers) in attempts.items():
        answer = webhooks.post(payload, headers)
        assert answer.status_code == 401, (what, answer.text)
        assert answer.json()["error"]["code"] == "UNAUTHORIZED"
    not_utf8 = b'{"type": "email.bounced", "data": {"email_id": "\xff"}}'
    assert webhooks.post(not_utf8, sign_webhook(webhooks.secret, not_utf8)).status_code == 400
    too_big = b" " * (256 * 1024 + 1)
    assert webhooks.post(too_big, sign_webhook(webhooks.secret, too_big)).status_code == 413
    assert webhook_state(db) == before
    # The genuine one still works.
    assert webhooks.post(body, signed).json() == {"applied": True}
    assert suppressed(db, "eve@example.com") == "bounced"


def test_a_redelivered_event_is_applied_once_and_others_are_acknowledged(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], webhooks: Webhooks
) -> None:
    notification, email_id = sent_email(db, service, "fay@example.com")

    assert webhooks.applied("email.opened", email_id, msg_id="msg_once")
    assert not webhooks.applied("email.opened", email_id, msg_id="msg_once")
    assert [e for e, _ in events(db, notification)] == ["opened"]

    before = webhook_state(db)
    assert not webhooks.applied("email.delivered", str(uuid.uuid4()))  # not an e-mail of ours
    assert not webhooks.applied("email.sent", email_id)
    assert not webhooks.applied("email.delivery_delayed", email_id)
    assert webhook_state(db)[0] == before[0], "an analytics row was recorded"
    assert email_delivery(db, notification)["status"] == "sent"
    signed_but_odd = json.dumps({"type": "email.delivered", "data": {}}).encode()
    answer = webhooks.post(signed_but_odd, sign_webhook(webhooks.secret, signed_but_odd))
    assert answer.status_code == 422 and "email_id" in answer.json()["error"]["message"]


def test_without_a_webhook_secret_the_webhook_is_unavailable(own_server: Any, resend_service: ResendService) -> None:
    server: ServerProcess = own_server()
    body = resend_service.webhook_event("email.delivered", str(uuid.uuid4()))
    answer = httpx.post(f"{server.url}{WEBHOOK}", content=body, headers=sign_webhook(new_webhook_secret(), body))
    assert answer.status_code == 503
    assert "RESEND_WEBHOOK_SECRET" in answer.json()["error"]["message"]


# --- header-bound fields ------------------------------------------------------------------------------

# Line breaks and other control characters a title or template variable might carry into a header.
HEADER_BREAKERS = ["\r\n", "\n", "\r", "\x0b", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\t"]
INJECTION = "Hello" + "Bcc: x@evil.test".join(HEADER_BREAKERS) + "end"


def assert_one_line_headers(email: SentEmail) -> None:
    """Subject, sender and every header value stay on their one line: no control character at all."""
    for value in (email.subject, email.from_, *email.headers.values()):
        assert not any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in value), repr(value)


def test_control_characters_in_titles_template_vars_and_the_sender_never_reach_a_header(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], own_server: Any, own_worker: Any,
    resend_service: ResendService,
) -> None:  # fmt: skip
    env = mail_env(resend_service, RESEND_FROM_NAME="Acme\r\nBcc: sender@evil.test")
    server: ServerProcess = own_server(**env)
    own_worker(**env)
    by_rest, by_template, by_sql = "rest@example.com", "template@example.com", "sql@example.com"
    users = {address: recipient(service, address) for address in (by_rest, by_template, by_sql)}
    headers = {"Authorization": f"Bearer {make_token('billing', role='service')}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        sent = client.post("/api/v1/notifications", headers=headers, json={
            "user_id": str(users[by_rest]), "type": "task", "title": INJECTION, "priority": "critical",
            "channels": ["email"]})  # fmt: skip
        assert sent.status_code == 202, sent.text
        sent = client.post("/api/v1/notifications", headers=headers, json={
            "user_id": str(users[by_template]), "type": "task", "template_id": "task_assigned", "priority": "critical",
            "channels": ["email"],
            "template_vars": {"task_title": INJECTION, "assigned_by": "Grace\r\nX-Evil: 1"}})  # fmt: skip
        assert sent.status_code == 202, sent.text
    service.execute(
        "SELECT notify.send(%s, 'task', template => 'task_assigned', priority => 'critical', channels => '{email}',"
        " template_vars => %s)",
        (users[by_sql], json.dumps({"task_title": INJECTION, "assigned_by": "Grace"})),
    )
    wait_for(lambda: len(resend_service.emails) == 3, what="three e-mails")
    for address in (by_rest, by_template, by_sql):
        [email] = emails_to(resend_service, address)
        assert_one_line_headers(email)
        assert email.from_ == f'"Acme Bcc: sender@evil.test" <{FROM_EMAIL}>'
        assert "Bcc" not in email.headers and "X-Evil" not in email.headers and "bcc" not in email.raw
        # Each run of control characters is one space; the visible text is all there, in order.
        assert "Hello Bcc: x@evil.test Bcc: x@evil.test" in email.subject and email.subject.endswith("end")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("\r\n\t\x00\x0b\x1b\x7f\x85\x9f\u2028\u2029")))
def test_header_text_keeps_any_text_on_one_line_and_changes_nothing_else(text: str) -> None:
    folded = header_text(text)
    assert not any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in folded)
    assert header_text(folded) == folded
    # Only runs of control characters change, each into one space: the rest is kept, in order.
    kept = [c for c in text if not (unicodedata.category(c) == "Cc" or c in "\u2028\u2029")]
    assert [c for c in folded if c != " "] == [c for c in kept if c != " "]
    assert len(folded) <= len(text)
    if len(kept) == len(text):
        assert folded == text


def test_send_params_fold_every_header_bound_field() -> None:
    mail = Settings(database_url="", jwt_secret=JWT_SECRET, resend_from_email=FROM_EMAIL, resend_from_name="A\r\nB")
    email = RenderedEmail(subject="S\r\nBcc: x", html="<p>\r\n</p>", text="a\r\nb",
                          headers={"List-Unsubscribe": "<https://x/\r\ny>"})  # fmt: skip
    params = send_params(mail, "ada@example.com", email)
    assert params["subject"] == "S Bcc: x" and params["from"] == f"A B <{FROM_EMAIL}>"
    assert params["headers"] == {"List-Unsubscribe": "<https://x/ y>"}
    # Bodies are not headers: their line breaks stay.
    assert params["html"] == "<p>\r\n</p>" and params["text"] == "a\r\nb"
