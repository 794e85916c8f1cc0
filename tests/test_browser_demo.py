"""The `notifyd dev` demo in Chromium: sign in as a demo user, send as a service, act, see the e-mail outbox.

The tour test also makes the screenshots of docs/tour.md (docs/img/tour/), so they follow the demo.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import expect

from notifyd import dev
from notifyd.db.localdb import STATE_DIR_ENV
from tests.browser import screenshot
from tests.conftest import database_url
from tests.server import free_port, wait_for

TOUR = Path(__file__).resolve().parent.parent / "docs" / "img" / "tour"
ISO_TIME = r"\d\d:\d\d \(UTC\)"  # the demo users' time zone


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def demo(db: psycopg.Connection[Any], tmp_path: Path) -> Iterator[str]:
    """`notifyd dev` on the test's own database (as its owner, as DATABASE_URL would give it), stopped by Ctrl-C."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(db, login=False), "NOTIFYD_PORT": str(port),
           STATE_DIR_ENV: str(tmp_path)}  # fmt: skip
    with (tmp_path / "dev.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "notifyd", "dev"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url) or proc.poll() is not None, timeout=30, what="notifyd dev")
        assert proc.poll() is None, (tmp_path / "dev.log").read_text()
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def inbox_item(page: Any, title: str) -> Any:
    return page.locator("notifyd-inbox").locator("article").filter(has_text=title)


def open_demo(context: Any, url: str, user: str = "alice") -> Any:
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(f"{url}/?user={user}")
    page.wait_for_function("document.querySelector('notifyd-bell')?.client?.state === 'open'")
    return page


def send_from_panel(
    page: Any, to: str, title: str, body: str = "", *, decision: bool = False, sms: bool = False
) -> Any:
    """Sends as a service from the side panel; the outcome's list, one item per channel decision."""
    panel = page.locator("#send")
    panel.get_by_label("To").select_option(label=to)
    panel.get_by_label("Title").fill(title)
    panel.get_by_label("Body").fill(body)
    panel.get_by_label("Needs a decision (Approve / Reject)").set_checked(decision)
    panel.get_by_label("Also by SMS").set_checked(sms)
    panel.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#sent")).to_contain_text(f"Accepted (202) for {to}")
    return page.locator("#sent li")


def channel(outcome: Any, name: str) -> Any:
    return outcome.and_(outcome.page.locator(f"[data-channel={name}]"))


def test_the_demo_shows_the_whole_product(demo: str, context: Any, db: psycopg.Connection[Any]) -> None:
    page = open_demo(context, demo)
    expect(page.get_by_label("demo user")).to_have_value("alice")

    # A service sends alice a decision to make, from the side panel.
    page.locator("#send").get_by_label("Priority").select_option("high")
    outcome = send_from_panel(page, "alice", "Approve the Q3 budget", decision=True)
    expect(channel(outcome, "in_app")).to_contain_text("delivered now")
    expect(page.locator("notifyd-toasts")).to_contain_text("Approve the Q3 budget")
    expect(page.locator("notifyd-bell").locator("[part=badge]")).to_have_text("1")
    expect(page).to_have_title("(1) Acme Tasks")
    item = inbox_item(page, "Approve the Q3 budget")
    item.get_by_role("button", name="Approve", exact=True).click()
    expect(item.get_by_role("button", name="Approve", exact=True)).to_be_disabled()
    taken = "SELECT action_taken FROM notify.notifications WHERE title = 'Approve the Q3 budget'"
    wait_for(lambda: db.execute(taken).fetchone() == ("approve",), timeout=5, what="the action in SQL")
    screenshot(page, "demo")

    # Every channel: the critical test e-mail is sent at once and lands in the outbox.
    page.get_by_role("button", name="Send me a test on every channel").click()
    expect(channel(page.locator("#channels li"), "email")).to_contain_text(re.compile("queued now|sent"))
    page.get_by_role("tab", name="E-mail outbox").click()
    outbox = page.locator("#emails")
    for _ in range(40):
        if "alice@example.com" in outbox.inner_text():
            break
        page.wait_for_timeout(250)
        page.get_by_role("tab", name="E-mail outbox").click()
    expect(outbox).to_contain_text("alice@example.com")

    page.get_by_role("tab", name="Preferences").click()
    expect(page.locator("notifyd-preferences").get_by_role("button", name="Save").first).to_be_visible()

    # Signed in as bob, alice's notifications are not there.
    page.get_by_label("demo user").select_option("bob")
    page.wait_for_url("**/?user=bob")
    page.wait_for_function("document.querySelector('notifyd-bell')?.client?.state === 'open'")
    expect(page.locator("notifyd-inbox")).not_to_contain_text("Approve the Q3 budget")
    assert page.errors == []


def test_the_five_minute_tour(demo: str, context: Any) -> None:
    """What a first visit shows, step by step, with the screenshots docs/tour.md shows."""
    TOUR.mkdir(parents=True, exist_ok=True)
    page = open_demo(context, demo)

    # 1. A service sends alice a decision: her inbox, bell and a toast show it; she takes e-mail at once.
    outcome = send_from_panel(page, "alice", "Approve the Q3 budget", "Finance needs your sign-off by Friday.",
                              decision=True)  # fmt: skip
    expect(channel(outcome, "in_app")).to_contain_text("delivered now")
    expect(channel(outcome, "push")).to_contain_text("skipped: no active push subscription")
    expect(channel(outcome, "email")).to_contain_text("sent: see the E-mail outbox tab")
    item = inbox_item(page, "Approve the Q3 budget")
    expect(item.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    toasts = page.locator("notifyd-toasts")
    expect(toasts).to_contain_text("Approve the Q3 budget")
    page.screenshot(path=str(TOUR / "01-inbox.png"))

    # 2. To bob, who keeps the default daily digest: the panel says so, and when, instead of "queued".
    outcome = send_from_panel(page, "bob", "Quarterly report ready", "The Q3 report is ready for your review.")
    expect(channel(outcome, "in_app")).to_contain_text("delivered now")
    expect(channel(outcome, "email")).to_contain_text(re.compile(f"held for the daily digest at {ISO_TIME}"))
    # The toasts stay clear of the side panel, where that answer is.
    box, panel = toasts.bounding_box(), page.locator("aside").bounding_box()
    assert box is not None and panel is not None and box["x"] + box["width"] <= panel["x"], (box, panel)
    page.screenshot(path=str(TOUR / "02-send.png"))

    # 3. alice's e-mail as it arrived: her product's name, a button to the notification's link, no dead links.
    sink = context.new_page()
    sink.goto(f"{demo}/dev/outbox")
    expect(sink.locator("h1")).to_have_text("Dev e-mail sink")
    sink.get_by_role("link", name="Approve the Q3 budget").click()
    button = sink.get_by_role("link", name="Open in Acme Tasks")
    expect(button).to_have_attribute("href", re.compile(r"/t/click/"))
    expect(sink.locator("body")).to_contain_text("because Acme Tasks sends you task notifications")
    expect(sink.get_by_role("link", name="Privacy policy")).to_have_count(0)  # no PRIVACY_POLICY_URL in dev
    sink.set_viewport_size({"width": 640, "height": 330})
    sink.screenshot(path=str(TOUR / "03-email.png"))
    button.click()
    sink.wait_for_url(re.compile(r"/\?user=alice#inbox$"))
    expect(sink.get_by_label("demo user")).to_have_value("alice")
    assert page.errors == []


def test_the_header_fits_a_390px_screen(demo: str, browser: Any) -> None:
    TOUR.mkdir(parents=True, exist_ok=True)
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                device_scale_factor=2, bypass_csp=True)  # fmt: skip
    try:
        page = open_demo(phone, demo)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.evaluate("document.body.scrollWidth") <= 390
        for part in (page.locator("header h1"), page.get_by_label("demo user"), page.locator("notifyd-bell")):
            expect(part).to_be_visible()
            box = part.bounding_box()
            assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= 390, box
        send_from_panel(page, "alice", "On the go", "Toasts stay clear of the answer below the Send button.")
        toasts = page.locator("notifyd-toasts")
        expect(toasts).to_contain_text("On the go")
        expect(page.locator("#sent li[data-channel=email]")).to_contain_text("sent")
        box, answer = toasts.bounding_box(), page.locator("#sent").bounding_box()
        assert box is not None and answer is not None
        assert box["y"] + box["height"] <= answer["y"] or answer["y"] + answer["height"] <= box["y"], (box, answer)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.evaluate("scrollTo(0, 0)")
        page.screenshot(path=str(TOUR / "04-mobile.png"))
        assert page.errors == []
    finally:
        phone.close()


def test_the_demo_connects_each_local_stand_in_and_shows_what_arrived(
    demo: str, browser: Any, db: psycopg.Connection[Any]
) -> None:
    # One failure opens Resend's circuit for the test; a failed e-mail is retried within a second.
    db.execute("UPDATE notify.settings SET value = '1' WHERE key = 'circuit.failures_to_open'")
    db.execute("UPDATE notify.settings SET value = '\"1 hour\"' WHERE key = 'circuit.probe_after'")
    db.execute("UPDATE notify.settings SET value = '\"0.2 seconds\"' WHERE key = 'delivery.retry_base'")
    context = browser.new_context(bypass_csp=True)
    try:
        page = open_demo(context, demo)
        page.get_by_role("tab", name="Webhooks & chat").click()
        for button, kind in (("Connect a webhook receiver", "webhook"), ("Connect Slack", "slack"),
                             ("Connect Teams", "teams"), ("Connect Discord", "discord")):  # fmt: skip
            page.get_by_role("button", name=button).click()
            expect(page.locator("#hooked")).to_contain_text(f"alice is connected to the {kind} stand-in")
        expect(page.locator("#hooked")).not_to_contain_text("whsec_")  # the last answer is Discord's: no secret
        page.get_by_role("tab", name="SMS").click()
        page.get_by_role("button", name="Set my phone number").click()
        expect(page.locator("#phone")).to_have_text(f"alice's phone number is {dev.DEMO_PHONES['alice']}")

        outcome = send_from_panel(page, "alice", "Deploy finished", "All green", sms=True)
        expect(channel(outcome, "sms")).to_contain_text("sent: see the SMS tab (via twilio)")
        expect(channel(outcome, "email")).to_contain_text("sent: see the E-mail outbox tab (via resend)")
        # Each tab follows its stand-in: what arrived shows without a reload.
        texts = page.locator("#texts tr")
        expect(texts).to_have_count(1)
        expect(texts).to_contain_text(f"alice ({dev.DEMO_PHONES['alice']})")
        expect(texts).to_contain_text("Deploy finished")
        page.get_by_role("tab", name="Webhooks & chat").click()
        rows = page.locator("#arrived tr")
        expect(rows).to_have_count(4)
        assert sorted(rows.locator("td:nth-child(2)").all_inner_texts()) == ["discord", "slack", "teams", "webhook"]
        for text in rows.locator("td:nth-child(3)").all_inner_texts():
            assert "Deploy finished" in text, text
        # The receiver checked the Standard Webhooks signature with the endpoint's secret.
        expect(rows.filter(has_text="webhook").locator("td:nth-child(4)")).to_have_text("signature verified")
        page.get_by_role("tab", name="E-mail outbox").click()
        emails = page.locator("#emails tr")
        expect(emails.filter(has_text="Deploy finished")).to_contain_text("Resend")

        # Resend goes down: the e-mail's first attempt fails, the circuit opens, the retry goes over SMTP.
        page.get_by_label("Resend is down (its stand-in answers 500)").check()
        outcome = send_from_panel(page, "alice", "Resend is down", "This one fails over")
        expect(channel(outcome, "email")).to_contain_text("sent: see the E-mail outbox tab (via smtp)")
        over_smtp = emails.filter(has_text="Resend is down")
        expect(over_smtp).to_have_count(1)
        expect(over_smtp.locator("td:nth-child(2)")).to_have_text("SMTP")
        expect(over_smtp.locator("td:nth-child(3)")).to_have_text("alice@example.com")
        with context.expect_page() as opened:
            over_smtp.get_by_role("link", name="Resend is down").click()
        expect(opened.value.locator("body")).to_contain_text("This one fails over")
        listed = httpx.get(f"{demo}/dev/outbox.json").json()
        assert listed["resend_failing"] is True
        assert [e["via"] for e in listed["emails"]] == ["smtp", "resend"]
        assert page.errors == []
    finally:
        context.close()
