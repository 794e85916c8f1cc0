"""The `notifyd dev` demo in Chromium: sign in as a demo user, send as a service, act, see the e-mail outbox."""

from __future__ import annotations

import os
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

from notifyd.db.localdb import STATE_DIR_ENV
from tests.browser import screenshot
from tests.conftest import database_url
from tests.server import free_port, wait_for


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


def test_the_demo_shows_the_whole_product(demo: str, context: Any, db: psycopg.Connection[Any]) -> None:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{demo}/?user=alice")
    expect(page.get_by_label("demo user")).to_have_value("alice")
    page.wait_for_function("document.querySelector('notifyd-bell')?.client?.state === 'open'")

    # A service sends alice a decision to make, from the side panel.
    panel = page.locator("#send")
    panel.get_by_label("Priority").select_option("high")
    panel.get_by_label("Title").fill("Approve the Q3 budget")
    panel.get_by_label("Needs a decision (Approve / Reject)").check()
    panel.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#sent")).to_contain_text("202: queued on in_app")
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
    expect(page.locator("#channels")).to_contain_text("email: pending")
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
    assert errors == []
