"""The operator console in Chromium against a real notifyd, worker and Resend stand-in: each view as a DBA, as an
org admin (their org only) and as a user (refused), and a dead letter retried from the console that ends in an
e-mail at the stand-in.

The DBA's pass also makes the screenshots of docs/console.md (docs/img/console/), so they follow the console.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import expect

from tests.server import ServerProcess, make_token
from tests.standins.resend import ResendService, resend_error
from tests.test_console_api import dead_letter, member
from tests.test_email import emails_to, instant_email, mail_env, send, settled
from tests.test_escalation import dba_conn, set_chain

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "img" / "console"


def sign_in(context: Any, url: str, token: str, view: str = "activity", listed: list[str] | None = None) -> Any:
    """A page signed in with `token` at `view`; `listed` gets the URL of each read of the activity list."""
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    if listed is not None:
        page.on("request", lambda r: listed.append(r.url) if "/api/v1/admin/notifications" in r.url else None)
    page.goto(f"{url}/console#{view}")
    page.get_by_label("admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    return page


@pytest.fixture
def mailing_server(own_server: Any, own_worker: Any, resend_service: ResendService) -> ServerProcess:
    """The console's server, and a worker that e-mails through the Resend stand-in."""
    server: ServerProcess = own_server()
    own_worker(**mail_env(resend_service))
    return server


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_console_as_a_dba_an_org_admin_and_a_user(
    context: Any,
    browser: Any,
    db: psycopg.Connection[Any],
    service: psycopg.Connection[Any],
    mailing_server: ServerProcess,
    resend_service: ResendService,
) -> None:
    server = mailing_server
    orgs = {"a": uuid.uuid4(), "b": uuid.uuid4()}
    refused_at = {"a": "refused-a@example.com", "b": "refused-b@example.com"}
    users = {name: member(service, org, refused_at[name]) for name, org in orgs.items()}
    for address in refused_at.values():
        resend_service.script(resend_error(422, "validation_error", "Invalid `to` field."), to=address)
    failing = {name: send(service, user, title=f"Invoice for org {name}") for name, user in users.items()}
    happy_user = member(service, orgs["a"], "fine@example.com")
    happy = send(service, happy_user, title="Welcome aboard", notification_type="task")
    settled(db, happy, "sent")
    dead = {name: settled(db, notification, "failed") for name, notification in failing.items()}

    # --- a DBA sees every org --------------------------------------------------------------------------
    page = sign_in(context, server.url, make_token("ops", role="admin"))
    expect(page.locator("[data-who]")).to_have_text("DBA (every org)")
    rows = page.locator("[data-view=activity] tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator(f"tr[data-id='{failing['a']}'] [data-channel=email]")).to_have_text("email: failed")
    expect(page.locator(f"tr[data-id='{happy}'] [data-channel=email]")).to_have_text("email: sent")
    shot(page, "activity")
    page.locator("input[name=user_id]").fill(str(users["b"]))
    page.locator("input[name=user_id]").dispatch_event("change")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", str(failing["b"]))

    rows.first.click()
    timeline = page.locator("[data-view=timeline] li")
    expect(timeline.first).to_contain_text("created (task, critical)")
    expect(page.locator("[data-view=timeline] li[data-kind=failed]")).to_contain_text("422 validation_error")
    shot(page, "notification")
    page.goto(f"{server.url}/console#notification/{happy}")
    sent_email = page.locator("[data-view=timeline] li[data-kind=sent]").filter(has_text="email sent")
    expect(sent_email).to_contain_text("email sent by resend (attempt 1)")

    page.goto(f"{server.url}/console#dead-letters")
    letters = page.locator("[data-view=dead-letters] tbody tr")
    expect(letters).to_have_count(2)
    chosen = page.locator(f"tr[data-id='{dead['a']['id']}']")
    chosen.locator("summary").click()
    expect(chosen.locator(".answer")).to_contain_text("Invalid `to` field.")
    chosen.locator("input[type=checkbox]").check()
    page.locator("[data-action=retry]").click()
    expect(page.locator("#confirm-text")).to_have_text("Retry 1 dead letter?")
    shot(page, "dead-letters")
    page.locator("#confirm-ok").click()
    expect(page.locator("[data-outcome]")).to_have_text("Retried 1.")
    expect(letters).to_have_count(1)
    sent = settled(db, failing["a"], "sent")
    [email] = emails_to(resend_service, refused_at["a"])
    assert sent["provider_message_id"] == email.id and email.subject
    audit = db.execute("SELECT detail FROM notify.audit_log WHERE action = 'dead_letters.retried'").fetchall()
    # The audit log keeps every uuid as its keyed hash (a user id may hide among them).
    hashed = db.execute("SELECT notify_private.audit_hash(%s)", (str(dead["a"]["id"]),)).fetchone()
    assert hashed is not None
    assert [(row[0]["count"], row[0]["delivery_ids"]) for row in audit] == [(1, [hashed[0]])]

    page.goto(f"{server.url}/console#health")
    expect(page.locator("[data-figure=dead-letters] b")).to_have_text("1")
    expect(page.locator("[data-figure=pending] b")).to_have_text("0")
    expect(page.locator("[data-figure=processes] b")).to_have_text("1 serve, 1 worker", timeout=15_000)
    expect(page.locator("[data-figure=sockets] b")).to_have_text("0")
    expect(page.locator("path[data-series='sends/s']")).to_have_count(1)
    expect(page.locator("path[data-series=email]")).to_have_count(1)
    expect(page.locator("figcaption")).to_contain_text(["Sends/s", "Deliveries/s", "Commit → WebSocket latency"])
    expect(page.locator("[data-analytics] tbody tr").first).to_contain_text("task")
    shot(page, "health")
    assert page.errors == []
    page.close()

    # --- an org admin sees their org only ----------------------------------------------------------------
    admin_b = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        page = sign_in(admin_b, server.url, make_token("ops-b", role="admin", org_id=str(orgs["b"])))
        expect(page.locator("[data-who]")).to_have_text(f"org admin of {orgs['b']}")
        expect(page.locator("[data-view=activity] tbody tr")).to_have_count(1)
        expect(page.locator("[data-view=activity] tbody tr").first).to_have_attribute("data-id", str(failing["b"]))
        page.goto(f"{server.url}/console#dead-letters")
        expect(page.locator("[data-view=dead-letters] tbody tr")).to_have_count(1)
        expect(page.locator(f"tr[data-id='{dead['b']['id']}']")).to_have_count(1)
        page.goto(f"{server.url}/console#notification/{happy}")
        expect(page.get_by_role("alert")).to_contain_text("notification not found")
        page.goto(f"{server.url}/console#health")
        expect(page.locator("[data-figure=dead-letters] b")).to_have_text("1")
        expect(page.locator("[data-figure=processes] b")).to_have_text("none (DBAs see them)")
        assert page.errors == []
    finally:
        admin_b.close()

    # --- anyone else is refused --------------------------------------------------------------------------
    user = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        page = sign_in(user, server.url, make_token(users["a"]))
        expect(page.locator("[data-refused]")).to_contain_text("This console is for admins")
        expect(page.locator("[data-refused]")).to_contain_text("a token with role admin")
        expect(page.locator("[data-who]")).to_have_text("not an admin (authenticated)")
        shot(page, "refused")
        page.goto(f"{server.url}/console#dead-letters")
        expect(page.locator("[data-refused]")).to_be_visible()
        expect(page.locator("[data-view=dead-letters] tbody tr")).to_have_count(0)
    finally:
        user.close()


def test_a_dba_edits_a_template_with_a_live_preview_and_sends_a_test(
    context: Any,
    browser: Any,
    db: psycopg.Connection[Any],
    service: psycopg.Connection[Any],
    mailing_server: ServerProcess,
    resend_service: ResendService,
) -> None:
    server = mailing_server
    me = member(service, uuid.uuid4(), "dba@example.com")
    instant_email(db, me, "task")  # the test send goes as a real one would: by the recipient's preferences
    page = sign_in(context, server.url, make_token(me, role="admin"), view="templates")
    expect(page.locator("[data-template='task_assigned/de']")).to_have_count(1)
    page.locator("[data-template='task_assigned/en']").click()

    preview = page.locator("[data-preview]")
    expect(preview.locator("[data-part=title]")).to_have_text('‹assigned_by› assigned you "‹task_title›"')
    title = page.get_by_label("In-app title")
    title.fill("{{ assigned_by }} needs you: {{ task_title }}")
    expect(preview.locator("[data-part=title]")).to_have_text("‹assigned_by› needs you: ‹task_title›")
    subject = page.get_by_label("E-mail subject")
    subject.fill("Now: {{ task_title }} {{ deadline }}")
    expect(page.locator("[data-check]")).to_have_text(re.compile("uses undeclared variables: deadline"))
    expect(page.locator("[data-check]")).to_have_attribute("data-check", "error")
    subject.fill("Now: {{ task_title }}")
    expect(page.locator("[data-check]")).to_have_attribute("data-check", "ok")
    expect(preview.locator("[data-part=subject]")).to_have_text("Now: ‹task_title›")
    frame = preview.locator("iframe")
    expect(frame).to_have_attribute("sandbox", "")
    expect(page.frame_locator("[data-preview] iframe").locator("strong")).to_have_text("‹assigned_by›")
    page.get_by_label("Sample values (JSON)").fill('{"task_title": "Ship it", "assigned_by": "Ada"}')
    expect(preview.locator("[data-part=title]")).to_have_text("Ada needs you: Ship it")
    shot(page, "template-editor")

    page.get_by_role("button", name="Save as a new version").click()
    expect(page.locator("[data-saved]")).to_have_text("Saved version 2.")
    expect(page.locator("[data-history] li")).to_have_count(2)
    diff = page.locator("[data-diff='2']")
    added = ["+ {{ assigned_by }} needs you: {{ task_title }}", "+ Now: {{ task_title }}"]
    expect(diff.locator("ins")).to_contain_text(added)
    expect(diff.locator("del").first).to_have_text('- {{ assigned_by }} assigned you "{{ task_title }}"\n')
    shot(page, "template-history")

    expect(page.get_by_label("test recipient")).to_have_value(str(me))
    page.get_by_role("button", name="Send a test").click()
    expect(page.locator("[data-test-sent] a")).to_have_count(1)
    sent = uuid.UUID(page.locator("[data-test-sent] a").inner_text())
    settled(db, sent, "sent")
    [email] = emails_to(resend_service, "dba@example.com")
    assert email.subject == "Now: Ship it"
    assert page.errors == []

    # Under the console's own Content-Security-Policy (the shared context bypasses it): the module runs, the
    # API answers, and the sandboxed preview of the e-mail shows, with nothing refused.
    strict = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        refusals: list[str] = []
        strict.on("console", lambda m: refusals.append(m.text) if "Content Security Policy" in m.text else None)
        page = sign_in(strict, server.url, make_token(me, role="admin"), view="templates/task_assigned/de")
        expect(page.frame_locator("[data-preview] iframe").locator("strong")).to_have_text("‹assigned_by›")
        assert refusals == [] and page.errors == []
    finally:
        strict.close()


def test_policies_a_dba_changes_limits_and_retention_an_org_admin_their_defaults_a_user_nothing(
    context: Any, browser: Any, db: psycopg.Connection[Any], own_server: Any
) -> None:
    server: ServerProcess = own_server()
    org = uuid.uuid4()
    page = sign_in(context, server.url, make_token("ops", role="admin"), view="policies")
    setting = page.locator("[data-setting='rate_limit.push_per_hour']")
    setting.locator("input").fill("25")
    setting.get_by_role("button", name="Save").click()
    expect(page.locator("[data-policy-saved]")).to_have_text("Saved rate_limit.push_per_hour.")
    setting.locator("input").fill("lots")
    setting.get_by_role("button", name="Save").click()
    expect(page.locator("[data-policy-saved]")).to_contain_text("rate_limit.push_per_hour")
    page.locator("input[name=notification_type]").fill("task")
    page.locator("input[name=max_age]").fill("30 days")
    page.get_by_role("button", name="Set retention").click()
    expect(page.locator("[data-retention=task]")).to_contain_text("30 days")
    page.get_by_label("org id").fill(str(org))
    page.get_by_role("button", name="Load").click()
    page.get_by_label("push_enabled").select_option("false")
    page.locator("input[name=push_locked]").check()
    page.get_by_label("chat_enabled").select_option("false")
    page.get_by_label("user_webhook_endpoints").select_option("false")
    page.get_by_role("button", name="Save the org's defaults").click()
    expect(page.locator("[data-org-saved]")).to_have_text("Saved the org's defaults.")
    shot(page, "policies")
    saved = db.execute(
        "SELECT push_enabled, push_locked, chat_enabled, chat_locked, sms_enabled, user_webhook_endpoints "
        "FROM notify.org_notification_preferences WHERE org_id = %s AND notification_type IS NULL",
        (org,),
    )
    assert saved.fetchone() == (False, True, False, False, None, False)
    assert db.execute("SELECT value FROM notify.settings WHERE key = 'rate_limit.push_per_hour'").fetchone() == (25,)
    kept = db.execute("SELECT max_age::text FROM notify.retention_policies WHERE notification_type = 'task'")
    assert kept.fetchone() == ("30 days",)
    assert page.errors == []

    admin = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        page = sign_in(admin, server.url, make_token("ops-a", role="admin", org_id=str(org)), view="policies")
        expect(page.get_by_label("org id")).to_have_value(str(org))
        expect(page.get_by_label("push_enabled")).to_have_value("false")
        expect(page.locator("input[name=push_locked]")).to_be_checked()
        expect(page.get_by_label("chat_enabled")).to_have_value("false")
        expect(page.get_by_label("user_webhook_endpoints")).to_have_value("false")
        expect(page.locator("[data-dba-only]")).to_be_visible()
        expect(page.locator("[data-setting='rate_limit.push_per_hour'] input")).to_be_disabled()
        expect(page.locator("[data-setting='rate_limit.push_per_hour'] input")).to_have_value("25")
        expect(page.get_by_role("button", name="Set retention")).to_have_count(0)
        page.get_by_label("org id").fill(str(uuid.uuid4()))
        page.get_by_role("button", name="Load").click()
        expect(page.locator("[data-org-policy] .error")).to_be_visible()
        assert page.errors == []
    finally:
        admin.close()

    user = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        page = sign_in(user, server.url, make_token(uuid.uuid4()), view="policies")
        expect(page.locator("[data-refused]")).to_be_visible()
    finally:
        user.close()


def test_the_timeline_draws_the_escalation_steps_planned_run_and_cancelled_because_seen(
    context: Any, db: psycopg.Connection[Any], service: psycopg.Connection[Any], own_server: Any
) -> None:
    server: ServerProcess = own_server()
    user = member(service, uuid.uuid4())
    set_chain(db, "task", [{"channel": "in_app"}, {"channel": "email", "after": "15 minutes", "unless": "seen"}])
    seen = send(service, user, title="Seen in time", priority="normal")
    waiting = send(service, user, title="Not seen yet", priority="normal")
    db.execute("UPDATE notify.notifications SET seen_at = now() WHERE id = %s", (seen,))

    page = sign_in(context, server.url, make_token("ops", role="admin"), view=f"notification/{seen}")
    steps = page.locator("[data-view=timeline] li")
    expect(steps.filter(has_text="escalation step 1: in_app after 00:00:00")).to_have_count(2)  # planned, run
    expect(page.locator("li[data-kind=escalation-run]")).to_contain_text("escalation step 1: in_app after 00:00:00 run")
    cancelled = page.locator("li[data-kind=escalation-cancelled]")
    expect(cancelled).to_have_count(1)
    expect(cancelled).to_contain_text(
        re.compile(r"escalation step 2: email after 00:15:00, unless seen cancelled: the user saw it at ")
    )
    shot(page, "notification-escalation")

    page.goto(f"{server.url}/console#notification/{waiting}")
    expect(page.locator("li[data-kind=escalation-planned]")).to_have_count(2)
    expect(page.locator("li[data-kind=escalation-planned]").last).to_contain_text("escalation step 2: email")
    expect(page.locator("li[data-kind=escalation-cancelled]")).to_have_count(0)
    assert page.errors == []


def test_an_org_admin_previews_and_sends_a_broadcast_to_their_org_and_watches_its_batch(
    context: Any, browser: Any, db: psycopg.Connection[Any], service: psycopg.Connection[Any], own_server: Any
) -> None:
    server: ServerProcess = own_server()
    org, other = uuid.uuid4(), uuid.uuid4()
    ours = [member(service, org) for _ in range(2)]
    german = uuid.uuid4()
    service.execute(
        "SELECT notify.upsert_recipient(%s, %s, 'de-AT', org_id => %s)", (german, f"{german}@example.com", org)
    )
    theirs = member(service, other)
    page = sign_in(context, server.url, make_token("ops-a", role="admin", org_id=str(org)), view="policies")
    expect(page.get_by_label("broadcast org")).to_have_value(str(org))
    expect(page.get_by_label("broadcast org")).to_have_attribute("readonly", "")
    expect(page.locator("input[name=everyone]")).to_have_count(0)
    page.get_by_label("broadcast title").fill("Maintenance tonight")
    page.get_by_role("button", name="Preview recipients").click()
    counts = page.locator("[data-view=broadcast-preview] [data-count]")
    expect(page.locator("[data-count=recipients]")).to_have_text("3")
    expect(page.locator("[data-count=in_app]")).to_have_text("3")
    expect(counts).to_have_count(5)

    page.get_by_label("broadcast language").fill("de")
    expect(page.locator("[data-view=broadcast-preview]")).to_have_count(0)  # a changed audience: preview again
    page.get_by_role("button", name="Preview recipients").click()
    expect(page.locator("[data-count=recipients]")).to_have_text("1")
    # Refused by the API's model, then by the database: said where the preview would be, and nothing to send.
    for label, bad, said in (
        ("language", "not a language", "locale"),
        ("time zone", "Europe/Nowhere", "unknown time zone"),
    ):
        page.get_by_label(f"broadcast {label}").fill(bad)
        page.get_by_role("button", name="Preview recipients").click()
        expect(page.locator("[data-broadcast-preview] .error")).to_contain_text(said)
        page.get_by_label(f"broadcast {label}").fill("")
        expect(page.locator("[data-action=broadcast]")).to_have_count(0)
    page.get_by_role("button", name="Preview recipients").click()
    expect(page.locator("[data-count=recipients]")).to_have_text("3")
    shot(page, "broadcast")

    page.locator("[data-action=broadcast]").click()
    expect(page.locator("#confirm-text")).to_have_text('Send "Maintenance tonight" to 3 users?')
    page.locator("#confirm-ok").click()
    progress = page.locator("[data-broadcast-progress]")
    expect(progress).to_contain_text("3 of 3 notifications")
    batch = progress.get_attribute("data-batch")
    assert batch is not None
    got = db.execute(
        "SELECT user_id FROM notify.notifications WHERE batch_id = %s AND title = 'Maintenance tonight'", (batch,)
    ).fetchall()
    assert sorted(row[0] for row in got) == sorted([*ours, german])
    assert theirs not in {row[0] for row in got}
    assert page.errors == []

    # A DBA names any org, or everyone.
    dba = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        page = sign_in(dba, server.url, make_token("ops", role="admin"), view="policies")
        page.get_by_label("broadcast org").fill(str(other))
        page.get_by_label("broadcast title").fill("Hello")
        page.get_by_role("button", name="Preview recipients").click()
        expect(page.locator("[data-count=recipients]")).to_have_text("1")
        page.locator("input[name=everyone]").check()
        page.get_by_role("button", name="Preview recipients").click()
        as_dba = dba_conn(db)
        try:
            expected = as_dba.execute("SELECT notify.broadcast_preview(NULL, 'system') -> 'recipients'").fetchone()
        finally:
            as_dba.close()
        assert expected is not None and expected[0] >= 4
        expect(page.locator("[data-count=recipients]")).to_have_text(str(expected[0]))
        assert page.errors == []
    finally:
        dba.close()


def test_activity_is_live_over_the_admin_stream_and_polls_while_it_is_down(
    context: Any, browser: Any, db: psycopg.Connection[Any], service: psycopg.Connection[Any], own_server: Any
) -> None:
    server: ServerProcess = own_server()
    orgs = {"a": uuid.uuid4(), "b": uuid.uuid4()}
    users = {name: member(service, org) for name, org in orgs.items()}
    listed: list[str] = []
    page = sign_in(context, server.url, make_token("ops", role="admin"), listed=listed)
    state = page.locator("[data-live]")
    expect(state).to_have_attribute("data-live", "stream")
    expect(page.locator("[data-view=activity] tbody tr")).to_have_count(0)
    # The list is read when the view opens and once more when the stream is live; then not again while it is.
    for _ in range(100):
        if len(listed) >= 2:
            break
        page.wait_for_timeout(50)
    assert len(listed) == 2, listed

    # A send shows before the 3 s poll would have read it, and with no read of the list at all (asserted below).
    sent = send(service, users["a"], title="Live from org a")
    row = page.locator(f"tr[data-id='{sent}']")
    expect(row).to_contain_text("Live from org a", timeout=2500)
    expect(row.locator("[data-channel=email]")).to_have_text("email: pending")
    # Its delivery moves (no NOTIFY): the stream sends the row again.
    dead_letter(db, sent, "503 from the provider")
    expect(row.locator("[data-channel=email]")).to_have_text("email: failed", timeout=6000)
    assert len(listed) == 2, listed
    # The status filter is the page's own: the stream goes on and the row stays.
    page.locator("select[name=status]").select_option("failed")
    expect(page.locator("[data-view=activity] tbody tr")).to_have_count(1)
    expect(state).to_have_attribute("data-live", "stream")
    assert page.errors == []

    # An org admin's page shows their org's sends, never another's.
    admin_b = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        theirs = sign_in(admin_b, server.url, make_token("ops-b", role="admin", org_id=str(orgs["b"])))
        expect(theirs.locator("[data-live]")).to_have_attribute("data-live", "stream")
        other = send(service, users["a"], title="Not for b")
        own = send(service, users["b"], title="For b")
        expect(theirs.locator(f"tr[data-id='{own}']")).to_have_count(1, timeout=2500)
        theirs.wait_for_timeout(500)
        expect(theirs.locator(f"tr[data-id='{other}']")).to_have_count(0)
        expect(theirs.locator("[data-view=activity] tbody tr")).to_have_count(1)
    finally:
        admin_b.close()

    # The stream cannot connect: the list is polled, and the stream is back once it can.
    down = context.new_page()
    down.errors = []
    down.on("pageerror", lambda error: down.errors.append(str(error)))
    down.route("**/api/v1/admin/activity/stream**", lambda route: route.abort())
    down.goto(f"{server.url}/console#activity")
    down.get_by_label("admin token").fill(make_token("ops", role="admin"))
    down.get_by_role("button", name="Sign in").click()
    expect(down.locator("[data-live]")).to_have_attribute("data-live", "polling")
    polled = send(service, users["b"], title="Found by polling")
    expect(down.locator(f"tr[data-id='{polled}']")).to_have_count(1, timeout=8000)
    down.unroute("**/api/v1/admin/activity/stream**")
    expect(down.locator("[data-live]")).to_have_attribute("data-live", "stream", timeout=8000)
    assert down.errors == []
