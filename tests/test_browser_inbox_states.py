"""The inbox states in the web components, in Chromium against a real notifyd: the bell's unseen badge (its default)
that opening the bell clears in every tab, the row menu's Archive, Unarchive and Snooze
(its choices), and the Archive tab."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from playwright.sync_api import expect

from tests.server import ServerProcess, wait_for
from tests.test_browser_elements import badge, bell_button, center, inbox_items
from tests.test_realtime import send


def column(url: str, name: str, notification_id: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT {name} FROM notify.notifications WHERE id = %s", (notification_id,)).fetchone()
        assert row is not None
        return row[0]


def test_the_unseen_badge_clears_in_every_tab_when_one_opens_the_bell(
    context: Any, server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    ids = [send(server_owner_url, user, title) for title in ("Deploy finished", "Ada mentioned you")]
    one, two = (center(context, server, user, inbox=False) for _ in range(2))
    for tab in (one, two):
        expect(badge(tab)).to_have_text("2")
        expect(bell_button(tab)).to_have_attribute("aria-label", "Notifications, 2 new")
    bell_button(one).click()
    for tab in (one, two):
        expect(badge(tab)).to_be_hidden()
        expect(bell_button(tab)).to_have_attribute("aria-label", "Notifications, 0 new")
    assert all(column(server_owner_url, "seen_at", i) is not None for i in ids)
    assert all(column(server_owner_url, "read_at", i) is None for i in ids), "seen is not read"
    # Something new: unseen again, in every tab.
    send(server_owner_url, user, "Build failed")
    for tab in (one, two):
        expect(badge(tab)).to_have_text("1")
    assert one.errors == [] and two.errors == []


def test_archive_snooze_and_the_archive_tab(context: Any, server: ServerProcess, server_owner_url: str) -> None:
    user = uuid.uuid4()
    keep, done, later = (send(server_owner_url, user, title) for title in ("Keep me", "Done with it", "Not now"))
    one, two = center(context, server, user), center(context, server, user)
    for tab in (one, two):
        expect(inbox_items(tab)).to_have_count(3)
    inbox = one.locator("notifyd-inbox")
    inbox.get_by_role("button", name="Archive: Done with it").click()
    for tab in (one, two):
        expect(inbox_items(tab)).to_have_count(2)
        expect(tab.locator("notifyd-inbox").locator(f"[data-id='{done}']")).to_have_count(0)
    assert column(server_owner_url, "archived_at", done) is not None

    # Snooze offers its choices once opened; tomorrow 9:00 is in the user's (the browser's) time zone.
    snooze = inbox.get_by_role("button", name="Snooze: Not now")
    expect(inbox.get_by_role("button", name="Snooze for an hour: Not now")).to_be_hidden()
    snooze.click()
    expect(snooze).to_have_attribute("aria-expanded", "true")
    expect(inbox.get_by_role("group", name="Snooze Not now").get_by_role("button")).to_have_text(
        ["For an hour", "Tomorrow 9:00", "Next week"]
    )
    zone = ZoneInfo(one.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone"))
    inbox.get_by_role("button", name="Snooze until tomorrow 9:00: Not now").click()
    tomorrow_nine = datetime.combine(datetime.now(zone).date() + timedelta(days=1), time(9), tzinfo=zone)
    for tab in (one, two):
        expect(inbox_items(tab)).to_have_count(1)
    assert column(server_owner_url, "snoozed_until", later) == tomorrow_nine

    # The Archive tab lists the archived one; Unarchive brings it back to the Inbox.
    inbox.get_by_role("tab", name="Archive").click()
    expect(inbox.get_by_role("tab", name="Archive")).to_have_attribute("aria-selected", "true")
    expect(inbox_items(one)).to_have_count(1)
    expect(inbox.locator(f"[data-id='{done}']")).to_have_count(1)
    inbox.get_by_role("button", name="Unarchive: Done with it").click()
    expect(inbox_items(one)).to_have_count(0)
    expect(inbox_items(two)).to_have_count(2)
    inbox.get_by_role("tab", name="Inbox").click()
    expect(inbox_items(one)).to_have_count(2)
    assert column(server_owner_url, "archived_at", done) is None
    wait_for(
        lambda: column(server_owner_url, "seen_at", keep) is not None, what="the inbox marking what it showed seen"
    )
    assert one.errors == [] and two.errors == []
