"""notifyd-elements.js in Chromium against a real notifyd: the bell, toasts, the inbox, the preferences."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import psycopg
from playwright.sync_api import expect
from psycopg.types.json import Jsonb

from tests.browser import open_page, screenshot
from tests.server import ServerProcess, make_token, wait_for
from tests.test_realtime import send
from tests.test_webpush import add_vapid_key

HEAD = '<script type="module" src="/static/notifyd-elements.js"></script>'
XSS = "<img src=x onerror=alert(1)>"


def center(context: Any, server: ServerProcess, user: uuid.UUID, *, inbox: bool = True, **attrs: str) -> Any:
    """A page with the bell (and the inbox) for `user`, connected."""
    token = make_token(user)
    extra = "".join(f' {name.replace("_", "-")}="{value}"' for name, value in attrs.items())
    body = f'<header><notifyd-bell token="{token}" inbox-href="#inbox"{extra}></notifyd-bell></header>'
    if inbox:
        body += f'<main id="inbox"><notifyd-inbox token="{token}"></notifyd-inbox></main>'
    page = open_page(context, server.url, body, head=HEAD)
    page.wait_for_function("document.querySelector('notifyd-bell')?.client?.state === 'open'")
    return page


def badge(page: Any) -> Any:
    return page.locator("notifyd-bell").locator("[part=badge]")


def bell_button(page: Any) -> Any:
    return page.locator("notifyd-bell").locator("button[part=button]")


def inbox_items(page: Any) -> Any:
    return page.locator("notifyd-inbox").locator("article")


def toasts(page: Any) -> Any:
    return page.locator("notifyd-toasts").locator("[part~=toast]")


def owner(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def test_a_notification_shows_as_toast_and_in_the_bell_within_a_second(
    context: Any, server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    page = center(context, server, user, inbox=False)
    expect(badge(page)).to_be_hidden()
    send(server_owner_url, user, "Review PR #123", body="Ada asked you to review")
    expect(toasts(page)).to_have_count(1, timeout=1000)
    expect(toasts(page).first).to_contain_text("Review PR #123", timeout=1000)
    expect(badge(page)).to_have_text("1", timeout=1000)
    expect(bell_button(page)).to_have_attribute("aria-label", "Notifications, 1 new")
    expect(page).to_have_title("(1) App")
    assert page.errors == []


def test_reading_in_one_tab_updates_the_other_and_read_all_clears_both(
    context: Any, server: ServerProcess, server_owner_url: str
) -> None:
    """With badge="unread" the badge counts what is not read: opening the bell (seeing) leaves it as it was."""
    user = uuid.uuid4()
    first = send(server_owner_url, user, "Deploy finished")
    send(server_owner_url, user, "Ada mentioned you")
    one, two = center(context, server, user, badge="unread"), center(context, server, user, badge="unread")
    for tab in (one, two):
        expect(badge(tab)).to_have_text("2")
        expect(tab).to_have_title("(2) App")
    bell_button(one).click()
    expect(bell_button(one)).to_have_attribute("aria-label", "Notifications, 2 unread")
    one.locator("notifyd-bell").locator(f"[data-id='{first}']").get_by_role("button", name="Mark read").click()
    expect(badge(two)).to_have_text("1")
    expect(two).to_have_title("(1) App")
    expect(inbox_items(two).and_(two.locator(f"[data-id='{first}']"))).to_have_attribute("data-read", "true")
    expect(two.locator("notifyd-bell").locator(f"[data-id='{first}']")).to_have_attribute("data-read", "true")

    one.locator("notifyd-bell").get_by_role("button", name="Mark all read").click()
    for tab in (one, two):
        expect(badge(tab)).to_be_hidden()
        expect(tab).to_have_title("App")
        expect(bell_button(tab)).to_have_attribute("aria-label", "Notifications, 0 unread")
        expect(tab.locator("notifyd-inbox").locator("article[data-read=false]")).to_have_count(0)
    assert one.errors == two.errors == []


def all_items(page: Any, attribute: str) -> list[str]:
    return list(
        page.eval_on_selector(
            "notifyd-inbox",
            f"(el) => [...el.shadowRoot.querySelectorAll('article')].map((a) => a.getAttribute('{attribute}'))",
        )
    )


def test_infinite_scroll_over_250_and_the_filters(context: Any, server: ServerProcess, server_owner_url: str) -> None:
    user = uuid.uuid4()
    with owner(server_owner_url) as conn:
        conn.execute("SET ROLE notify_service")
        # One transaction each, so that each has its own time (one INSERT … SELECT gives all one created_at).
        # Critical ones bypass the in-app rate limit (100 an hour, 100 queued), so 250 fit at once.
        for i in range(1, 251):
            conn.execute(
                "SELECT notify.send(%s, %s, %s, priority => %s, channels => '{in_app}')",
                (user, ("task", "user", "billing")[i % 3], f"Item {i}", ("critical", "high", "normal", "low")[i % 4]),
            )
        conn.execute("RESET ROLE")
        conn.execute("UPDATE notify.notifications SET read_at = now() WHERE user_id = %s AND title ~ '0$'", (user,))
    page = center(context, server, user)
    items = inbox_items(page)
    expect(items).to_have_count(20)
    for _ in range(30):
        if items.count() == 250:
            break
        before = items.count()
        items.last.scroll_into_view_if_needed()
        expect(items).not_to_have_count(before)
    ids = all_items(page, "data-id")
    assert len(ids) == 250 and len(set(ids)) == 250
    assert all_items(page, "aria-setsize") == ["250"] * 250
    expect(page.locator("notifyd-inbox").get_by_role("button", name="Load more")).to_be_hidden()

    inbox = page.locator("notifyd-inbox")
    for label, value, attribute, expected in (
        ("Priority", "high", "data-priority", "high"),
        ("Type", "billing", "data-type", "billing"),
        ("Show", "read", "data-read", "true"),
    ):
        inbox.get_by_label(label).select_option(value)
        expect(items).to_have_count(20)
        assert set(all_items(page, attribute)) == {expected}
        inbox.get_by_label(label).select_option("")
    # Together: billing (i % 3 = 2), normal (i % 4 = 2), read (i % 10 = 0).
    inbox.get_by_label("Type").select_option("billing")
    inbox.get_by_label("Priority").select_option("normal")
    inbox.get_by_label("Show").select_option("read")
    expect(items).to_have_count(4)
    assert all_items(page, "aria-setsize") == ["4"] * 4
    assert {int(t.split()[1]) for t in items.locator("[part=title]").all_text_contents()} == {50, 110, 170, 230}
    inbox.get_by_label("Priority").select_option("low")  # low ones are odd, read ones even
    expect(inbox.locator("[part=empty]")).to_have_text("No notifications match these filters.")
    inbox.get_by_label("Show").select_option("unread")
    expect(items).to_have_count(20)  # billing, low, unread: i = 11 mod 12, 21 of them
    assert set(all_items(page, "data-read")) == {"false"} and set(all_items(page, "data-priority")) == {"low"}
    # The button is the keyboard user's way through the pages.
    inbox.get_by_label("Priority").select_option("")
    inbox.get_by_label("Type").select_option("")
    expect(items).to_have_count(20)
    load_more = inbox.get_by_role("button", name="Load more")
    load_more.focus()
    page.keyboard.press("Enter")
    expect(items).to_have_count(40)
    assert page.errors == []


def test_preferences_saved_in_the_ui_decide_in_the_database(
    context: Any, server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    with owner(server_owner_url) as conn:
        conn.execute("SELECT notify.upsert_recipient_v2(%s, 'grace@example.com')", (user,))
    page = open_page(
        context, server.url, f'<notifyd-preferences token="{make_token(user)}"></notifyd-preferences>', head=HEAD
    )
    prefs = page.locator("notifyd-preferences")
    email = prefs.get_by_label("Task: e-mail", exact=True)
    expect(email).to_be_checked()
    expect(prefs.get_by_label("Task: in-app (always on)")).to_be_disabled()
    email.uncheck()
    prefs.get_by_label("Task: chat", exact=True).uncheck()
    prefs.get_by_label("Webhooks (yours and your organization's)").uncheck()
    prefs.get_by_label("Billing: e-mail frequency").select_option("weekly")
    prefs.get_by_label("Saturday", exact=True).check()
    prefs.get_by_label("Saturday quiet hours from").fill("23:00")
    prefs.get_by_label("Saturday quiet hours until").fill("10:00")
    prefs.get_by_label("Sunday", exact=True).check()
    prefs.get_by_label("Sunday quiet hours from").fill("23:00")
    prefs.get_by_label("Sunday quiet hours until").fill("10:00")
    prefs.get_by_label("Time zone").select_option("Europe/Berlin")
    prefs.get_by_role("button", name="Save preferences").click()
    expect(prefs.get_by_role("status").filter(has_text="Saved")).to_be_visible()

    with owner(server_owner_url) as conn:
        rows = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT notification_type, email_enabled, digest_frequency, chat_enabled "
                "FROM notify.notification_preferences WHERE user_id = %s AND notification_type IS NOT NULL",
                (user,),
            )
        }
        assert rows["task"][0] is False and rows["billing"][1] == "weekly", rows
        assert (rows["task"][2], rows["billing"][2]) == (False, None), "chat off for task only"
        assert set(rows) == {"task", "billing"}, "only the types changed are saved"
        windows = conn.execute(
            "SELECT quiet_hours_start, quiet_hours_end, quiet_hours_days, quiet_hours_windows, webhook_enabled "
            "FROM notify.notification_preferences WHERE user_id = %s AND notification_type IS NULL",
            (user,),
        ).fetchone()
        assert windows is not None and windows[4] is False, "webhooks off everywhere"
        assert (str(windows[0]), str(windows[1]), windows[2]) == ("23:00:00", "10:00:00", [6, 7])
        assert windows[3] in ([], None)
        zone = conn.execute("SELECT timezone FROM notify.recipients WHERE user_id = %s", (user,)).fetchone()
        assert zone == ("Europe/Berlin",)
    nid = send(server_owner_url, user, "Task assigned")
    with owner(server_owner_url) as conn:
        decided = conn.execute(
            "SELECT status, reason FROM notify.delivery_decisions WHERE notification_id = %s AND channel = 'email'",
            (nid,),
        ).fetchone()
    assert decided == ("skipped", "e-mail is turned off for task notifications")
    # The form reloads what is in force.
    page.reload()
    expect(prefs.get_by_label("Task: e-mail", exact=True)).not_to_be_checked()
    expect(prefs.get_by_label("Task: chat", exact=True)).not_to_be_checked()
    expect(prefs.get_by_label("Billing: webhooks", exact=True)).not_to_be_checked()
    expect(prefs.get_by_label("Sunday quiet hours until")).to_have_value("10:00")
    assert page.errors == []


def test_notification_text_is_never_html(context: Any, server: ServerProcess, server_owner_url: str) -> None:
    user = uuid.uuid4()
    dialogs: list[str] = []
    page = center(context, server, user)

    def refuse(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    nid = send(server_owner_url, user, XSS, body=XSS, data=Jsonb({"url": "javascript:alert(1)"}))
    expect(toasts(page).first).to_contain_text(XSS)
    expect(inbox_items(page).first.locator("[part=title]")).to_have_text(XSS)
    bell_button(page).click()
    expect(page.locator("notifyd-bell").locator(f"[data-id='{nid}'] [part=title]")).to_have_text(XSS)
    images = page.evaluate("""() => [document, ...[...document.querySelectorAll('*')]
        .filter((el) => el.shadowRoot).map((el) => el.shadowRoot)]
        .reduce((n, root) => n + root.querySelectorAll('img').length, 0)""")
    links = page.evaluate("""() => [...document.querySelectorAll('*')].filter((el) => el.shadowRoot)
        .flatMap((el) => [...el.shadowRoot.querySelectorAll('a[href]')].map((a) => a.href))""")
    assert images == 0
    assert not any(link.startswith("javascript:") for link in links)
    assert dialogs == [] and page.errors == []


def test_action_buttons_record_the_choice_everywhere(
    context: Any, server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    actions = [{"action": "approve", "label": "Approve"}, {"action": "reject", "label": "Reject", "style": "danger"}]
    nid = send(server_owner_url, user, "Spec approval needed", data=Jsonb({"actions": actions}))
    one, two = center(context, server, user), center(context, server, user)
    for tab in (one, two):
        expect(tab.locator("notifyd-inbox").locator(f"[data-id='{nid}']")).to_contain_text("Action required")
    one.locator("notifyd-inbox").get_by_role("button", name="Approve").click()
    with owner(server_owner_url) as conn:
        wait_for(
            lambda: (
                conn.execute("SELECT action_taken FROM notify.notifications WHERE id = %s", (nid,)).fetchone()
                == ("approve",)
            ),
            what="action_taken = approve",
        )
    for tab in (one, two):
        item = tab.locator("notifyd-inbox").locator(f"[data-id='{nid}']")
        expect(item.get_by_role("button", name="Approve")).to_be_disabled()
        expect(item.get_by_role("button", name="Reject")).to_be_disabled()
        expect(item.locator("[part=action-taken]")).to_have_text("Done: Approve")
        expect(item).not_to_contain_text("Action required")
    # Deleted in one tab: gone from the other's inbox and bell.
    one.locator("notifyd-inbox").get_by_role("button", name="Delete: Spec approval needed").click()
    for tab in (one, two):
        expect(tab.locator("notifyd-inbox").locator(f"[data-id='{nid}']")).to_have_count(0)
        expect(tab.locator("notifyd-bell").locator(f"[data-id='{nid}']")).to_have_count(0)
        expect(tab.locator("notifyd-inbox").locator("[part=empty]")).to_have_text("No notifications yet.")
    assert one.errors == two.errors == []


def test_the_bell_by_keyboard(context: Any, server: ServerProcess, server_owner_url: str) -> None:
    user = uuid.uuid4()
    for title in ("First", "Second", "Third"):
        send(server_owner_url, user, title)
    page = center(context, server, user, inbox=False)
    expect(badge(page)).to_have_text("3")
    button = bell_button(page)
    expect(button).to_have_attribute("aria-haspopup", "dialog")
    page.keyboard.press("Tab")
    expect(button).to_be_focused()
    page.keyboard.press("Enter")
    panel = page.locator("notifyd-bell").get_by_role("dialog", name="Notifications")
    expect(panel).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "true")
    items = panel.locator("li.item")
    expect(items.first).to_be_focused()
    # Opened is seen: the badge goes, and the items stay unread.
    expect(badge(page)).to_be_hidden()
    expect(button).to_have_attribute("aria-label", "Notifications, 0 new")
    expect(items.and_(page.locator("[data-read=false]"))).to_have_count(3)
    expect(items.first).to_contain_text("Third")
    page.keyboard.press("ArrowDown")
    expect(items.nth(1)).to_be_focused()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    expect(items.last).to_be_focused()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(button).to_be_focused()
    # An outside click closes it too, and the focus goes back to the bell.
    button.click()
    expect(panel).to_be_visible()
    page.mouse.click(600, 500)
    expect(panel).to_be_hidden()
    expect(button).to_be_focused()
    expect(page.locator("notifyd-toasts").get_by_role("status")).to_have_attribute("aria-live", "polite")
    assert page.errors == []


def test_at_most_three_toasts_the_rest_queued(context: Any, server: ServerProcess, server_owner_url: str) -> None:
    user = uuid.uuid4()
    page = center(context, server, user, inbox=False)
    for i in range(1, 6):
        send(server_owner_url, user, f"Toast {i}", priority="high")
    expect(toasts(page)).to_have_count(3)
    expect(toasts(page)).to_have_text(["Toast 1×", "Toast 2×", "Toast 3×"])
    page.locator("notifyd-toasts").get_by_role("button", name="Dismiss: Toast 1").click()
    expect(toasts(page)).to_have_text(["Toast 2×", "Toast 3×", "Toast 4×"])
    page.locator("notifyd-toasts").get_by_role("button", name="Dismiss: Toast 2").click()
    expect(toasts(page)).to_have_text(["Toast 3×", "Toast 4×", "Toast 5×"])
    # Reading it elsewhere (here: the bell) takes its toast away.
    bell_button(page).click()
    page.locator("notifyd-bell").get_by_role("button", name="Mark read: Toast 4").click()
    expect(toasts(page)).to_have_text(["Toast 3×", "Toast 5×"])
    assert page.errors == []


APP_STYLE = """<style>
  body { margin: 0; font: 15px/1.5 system-ui, sans-serif; background: #f5f6f8; color: #1f2328; }
  header { display: flex; align-items: center; gap: 24px; padding: 8px 24px; background: #fff;
    border-bottom: 1px solid #e2e4e8; }
  header .brand { font-weight: 700; font-size: 17px; }
  header nav { display: flex; gap: 18px; color: #656d76; flex: 1; }
  header .me { width: 32px; height: 32px; border-radius: 50%; background: #8250df; color: #fff; display: grid;
    place-items: center; font-weight: 600; font-size: 13px; }
  main { max-width: 780px; margin: 28px auto; padding: 0 16px; }
  h1 { font-size: 22px; margin: 0 0 14px; }
</style>"""

SHOWCASE = [
    # (minutes ago, type, priority, title, body, data, read)
    (
        2 * 24 * 60,
        "billing",
        "low",
        "Invoice INV-2043 is ready",
        "€1,240.00 for November, due December 6.",
        {"url": "/billing/invoices/2043"},
        True,
    ),
    (
        26 * 60,
        "agent",
        "normal",
        "Nightly data sync finished",
        "14,203 records synced from Salesforce in 3 min 12 s.",
        {},
        True,
    ),
    (
        3 * 60,
        "task",
        "normal",
        "Task assigned: Update the onboarding docs",
        "Grace Hopper assigned you a task in Website revamp, due Friday.",
        {"url": "/tasks/481"},
        False,
    ),
    (
        47,
        "user",
        "normal",
        "Ada Lovelace mentioned you in #design",
        "“Can you check the new empty states before we ship?”",
        {"url": "/chat/design"},
        False,
    ),
    (
        12,
        "security",
        "critical",
        "New sign-in from Firefox on Linux",
        "Berlin, Germany. If this wasn't you, reset your password now.",
        {"url": "/account/security"},
        False,
    ),
    (
        3,
        "workflow",
        "high",
        "Spec approval needed: Payments v2",
        "Linus submitted the spec for review. Approve it to move the project to the build phase.",
        {"actions": [{"action": "approve", "label": "Approve"}, {"action": "reject", "label": "Request changes"}]},
        False,
    ),
]


def showcase(server_owner_url: str, user: uuid.UUID) -> None:
    """Realistic notifications of the last days, oldest first (each change in order: the newest has the top seq),
    each sent with the clock pinned to its time: a created_at never changes once made."""
    with owner(server_owner_url) as conn:
        conn.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    for minutes, kind, priority, title, body, data, read in SHOWCASE:
        with owner(server_owner_url) as conn:
            conn.execute(
                "SELECT set_config('notify.clock', (now() - make_interval(mins => %s))::text, false)", (minutes,)
            )
            conn.execute("SET ROLE notify_service")
            nid = conn.execute(
                "SELECT notify.send(%s, %s, %s, %s, %s, %s, '{in_app}')",
                (user, kind, title, body, priority, Jsonb(data)),
            ).fetchone()
            conn.execute("RESET ROLE")
            assert nid is not None
            conn.execute("SELECT set_config('notify.clock', '', false)")
            conn.execute(
                "UPDATE notify.notifications SET read_at = CASE WHEN %s THEN now() END WHERE id = %s", (read, nid[0])
            )


def test_screenshots_for_the_readme(context: Any, server: ServerProcess, server_owner_url: str) -> None:
    user = uuid.uuid4()
    showcase(server_owner_url, user)
    token = make_token(user)
    body = (
        f'<header><span class="brand">Acme Projects</span><nav><span>Projects</span><span>Tasks</span>'
        f'<span>Reports</span></nav><notifyd-bell token="{token}" inbox-href="#inbox" badge="unread"></notifyd-bell>'
        f'<span class="me">GH</span></header>'
        f'<main id="inbox"><h1>Notifications</h1><notifyd-inbox token="{token}"></notifyd-inbox></main>'
    )
    page = open_page(context, server.url, body, head=HEAD + APP_STYLE)
    expect(inbox_items(page)).to_have_count(len(SHOWCASE))
    expect(badge(page)).to_have_text("4")
    box = page.locator("main").bounding_box()
    assert box is not None
    screenshot(
        page,
        "inbox",
        clip={"x": box["x"] - 24, "y": box["y"] - 24, "width": box["width"] + 48, "height": box["height"] + 48},
    )

    bell_button(page).click()
    panel = page.locator("notifyd-bell").get_by_role("dialog")
    expect(panel).to_be_visible()
    panel_box = panel.bounding_box()
    assert panel_box is not None
    screenshot(
        page,
        "bell",
        clip={
            "x": panel_box["x"] - 24,
            "y": 0,
            "width": 1200 - panel_box["x"] + 24,
            "height": panel_box["y"] + panel_box["height"] + 24,
        },
    )
    assert toasts(page).count() == 0, "nothing new arrived: no toasts"

    assert page.errors == []


def test_preferences_with_browser_notifications(
    browser: Any, context: Any, db: psycopg.Connection[Any], own_server: Any
) -> None:
    """On a notifyd with a VAPID key (its own database): the permission flow's states, and the screenshot."""
    add_vapid_key(db)
    server = own_server()
    user, org = uuid.uuid4(), uuid.uuid4()
    db.execute("SELECT notify.upsert_recipient_v2(%s, 'grace@example.com', 'en', 'Europe/Berlin', %s)", (user, org))
    db.execute(
        "INSERT INTO notify.org_notification_preferences (org_id, notification_type, email_enabled, email_locked) "
        "VALUES (%s, 'security', true, true)",
        (org,),
    )
    token = make_token(user)
    for path, changes in (
        (
            "global",
            {
                "quiet_hours_start": "22:00",
                "quiet_hours_end": "07:00",
                "quiet_hours_days": [1, 2, 3, 4, 5],
                "quiet_hours_windows": [{"start": "23:00", "end": "10:00", "days": [6, 7]}],
            },
        ),
        ("user", {"email_enabled": False}),
        ("agent", {"push_enabled": False, "digest_frequency": "weekly"}),
        ("task", {"digest_frequency": "instant"}),
    ):
        answer = httpx.put(
            f"{server.url}/api/v1/notifications/preferences/{path}",
            json=changes,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200, answer.text
    body = f'<main><h1>Notification settings</h1><notifyd-preferences token="{token}"></notifyd-preferences></main>'
    # The fixture's context grants local-network-access only, which denies every other permission.
    page = open_page(context, server.url, body, head=HEAD + APP_STYLE)
    toggle = page.locator("notifyd-preferences").locator("notifyd-push-toggle")
    expect(toggle).to_have_attribute("data-state", "denied")
    expect(toggle).to_contain_text("Notifications are blocked for this site. To unblock them")
    expect(toggle.get_by_role("button")).to_be_hidden()

    fresh = browser.new_context(viewport={"width": 1200, "height": 800})  # nothing granted, nothing denied
    try:
        page = open_page(fresh, server.url, body, head=HEAD + APP_STYLE)
        prefs = page.locator("notifyd-preferences")
        toggle = prefs.locator("notifyd-push-toggle")
        expect(toggle).to_have_attribute("data-state", "prompt")
        expect(toggle.get_by_role("button", name="Enable browser notifications")).to_be_visible()
        expect(prefs.get_by_label("Sunday quiet hours until")).to_have_value("10:00")
        expect(prefs.get_by_label("Monday quiet hours from")).to_have_value("22:00")
        expect(prefs.get_by_label("Agent: push", exact=True)).not_to_be_checked()
        expect(prefs.get_by_label("Security: e-mail (locked by your organization)")).to_be_disabled()
        expect(prefs.get_by_text("Locked by your organization")).to_be_visible()
        screenshot(page, "preferences", full_page=True)

        fresh.grant_permissions(["notifications"], origin=server.url)
        page.reload()
        expect(toggle).to_have_attribute("data-state", "unsubscribed")
        expect(toggle).to_contain_text("Browser notifications are off for this browser.")
        expect(toggle.get_by_role("button", name="Enable browser notifications")).to_be_visible()

        # A browser without a push service: the toggle says so in words, not with the browser's own error.
        fresh.add_init_script(
            "PushManager.prototype.subscribe = () => Promise.reject("
            "new DOMException('Registration failed - push service error', 'AbortError'))"
        )
        page.reload()
        toggle.get_by_role("button", name="Enable browser notifications").click()
        expect(toggle).to_contain_text("This browser cannot receive notifications here: its push service is not")
        expect(toggle).not_to_contain_text("Registration failed")
        # Refused by the browser itself (a policy, say): how to unblock, not "NotAllowedError".
        fresh.add_init_script(
            "PushManager.prototype.subscribe = () => Promise.reject("
            "new DOMException('Registration failed - permission denied', 'NotAllowedError'))"
        )
        page.reload()
        toggle.get_by_role("button", name="Enable browser notifications").click()
        expect(toggle).to_contain_text("Notifications are blocked for this site. To unblock them")
        expect(toggle).not_to_contain_text("Registration failed")
        assert page.errors == []
    finally:
        fresh.close()


def test_a_toast_opens_its_link_and_low_ones_go_by_themselves(
    context: Any, server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    page = center(context, server, user, inbox=False)
    nid = send(server_owner_url, user, "Build failed", data=Jsonb({"url": "#builds/77"}))
    send(server_owner_url, user, "Weekly report is ready", priority="low")
    expect(toasts(page)).to_have_count(2)
    toasts(page).filter(has_text="Build failed").click()
    expect(page).to_have_url(re.compile(r"#builds/77$"))
    expect(toasts(page)).to_have_text(["Weekly report is ready×"])
    with owner(server_owner_url) as conn:
        wait_for(
            lambda: conn.execute(
                "SELECT 1 FROM notify.notifications WHERE id = %s AND read_at IS NOT NULL", (nid,)
            ).fetchone(),
            what="the clicked toast's notification read",
        )
    # A low one goes after 4 s, but not while the pointer is on it.
    toasts(page).first.hover()
    page.wait_for_timeout(4500)
    expect(toasts(page)).to_have_text(["Weekly report is ready×"])
    page.mouse.move(10, 10)
    expect(toasts(page)).to_have_count(0, timeout=5000)
    assert page.errors == []


def test_configure_gives_waiting_elements_their_client(
    context: Any, server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    send(server_owner_url, user, "Waiting for you")
    page = open_page(context, server.url, '<notifyd-bell toasts="off" title-count="off"></notifyd-bell>', head=HEAD)
    page.wait_for_function("!!customElements.get('notifyd-bell')")
    expect(badge(page)).to_be_hidden()
    page.evaluate(
        "async (token) => (await import('/static/notifyd-elements.js')).configure({token: () => token})",
        make_token(user),
    )
    expect(badge(page)).to_have_text("1")
    send(server_owner_url, user, "Another one")
    expect(badge(page)).to_have_text("2")
    expect(page).to_have_title("App")
    expect(page.locator("notifyd-toasts")).to_have_count(0)
    assert page.errors == []


def test_the_elements_survive_being_loaded_twice(context: Any, server: ServerProcess, server_owner_url: str) -> None:
    """A second copy of each element module (another URL) leaves the first definitions in place, without errors."""
    user = uuid.uuid4()
    page = center(context, server, user, inbox=False)
    page.evaluate(
        """() => Promise.all(["toasts", "bell", "inbox", "push-toggle", "preferences"].map(
            (name) => import(`/static/elements/${name}.js?copy=2`)))"""
    )
    send(server_owner_url, user, "Still here")
    expect(badge(page)).to_have_text("1")
    expect(toasts(page)).to_have_text(["Still here×"])
    assert page.errors == []


def test_the_page_places_the_toasts(context: Any, server: ServerProcess, server_owner_url: str) -> None:
    """Bottom right by default; --notifyd-toasts-inset moves them (here: bottom left, clear of a side panel)."""
    user = uuid.uuid4()
    page = center(context, server, user, inbox=False)
    page.emulate_media(reduced_motion="reduce")  # no slide-in: the boxes are where they stay
    send(server_owner_url, user, "Where am I")
    expect(toasts(page)).to_have_count(1)

    def edges() -> tuple[float, float, float]:
        box = toasts(page).first.bounding_box()
        return round(box["x"]), round(1200 - box["x"] - box["width"]), round(800 - box["y"] - box["height"])

    assert edges() == (1200 - 16 - 360, 16, 16)
    page.add_style_tag(content=":root { --notifyd-toasts-inset: auto auto 16px 16px; }")
    assert edges() == (16, 1200 - 16 - 360, 16)
    assert page.errors == []
