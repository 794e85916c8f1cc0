"""The policy table: priority × the user's preferences × an org lock × quiet hours → the planned deliveries.

`expected()` writes the documented rules out by hand (docs/channels.md planning table and its
resolution rules: priorities, preferences, quiet hours and org locks); it never asks the SQL. Every case of the
full product, 4 priorities × (push on/off × e-mail on/off × digest instant/daily/never) × 3 org locks ×
inside/outside quiet hours = 288 cases,
runs through all three creation paths (864 checks): a plain INSERT into notify.notifications and
notify.send (both as notify_service, in one module database with the clock pinned), and REST
POST /api/v1/notifications on the session's notifyd (its sessions cannot pin the clock, so the quiet
window there lies around the real time). Each case gets a fresh user and org, so no case sees another's
rows or rate-limit tokens, and no database is made per case. A second, small table covers a missing
device, a missing address and a suppressed address (18 checks). SMS goes only where a sender asks for it
(no priority's default set has it, which the table above shows: no case plans one); a third table asks
for in-app and SMS: 4 priorities × the user's SMS switch × the number (none, a number, a number that
replied STOP) × inside/outside quiet hours = 48 cases on each path (144 checks).

Every user also has a webhook endpoint and a chat connection: webhook goes at every priority, at once (a
machine has no quiet hours); chat at every priority but low, held by quiet hours as push is (critical
bypasses them). A fourth table gives SMS, webhook and chat the user's switch (unset, on, off) × the org's row
(none, default off, locked on, locked off) × 4 priorities × inside/outside quiet hours = 96 cases per
channel on each path (864 checks); webhook goes to the user's own endpoint and to their org's, and the
user's switch decides both.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from tests.conftest import _url
from tests.server import ServerProcess, make_token

TYPE = "task"
# +05:30 all year: no DST to reason about, and an offset that is not a whole hour.
ZONE = ZoneInfo("Asia/Kolkata")
# notify.clock of the SQL paths: a Wednesday, 17:30 in Kolkata.
PINNED = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
SERVICE = {"Authorization": f"Bearer {make_token('billing', role='service')}"}

PRIORITIES = ("critical", "high", "normal", "low")
DIGESTS = ("instant", "daily", "never")
LOCKS = ("no_lock", "push_locked_on", "email_locked_off")
PATHS = ("insert", "send", "rest")

# The org's row for the type, per lock. Without a lock it is an org default opposite to every user
# choice of the table, so that a case also shows the user's own row beating the org's default.
ORG_ROWS: dict[str, tuple[bool | None, bool | None, str | None, bool, bool]] = {
    # push_enabled, email_enabled, digest_frequency, push_locked, email_locked
    "no_lock": (False, False, "weekly", False, False),
    "push_locked_on": (True, None, None, True, False),
    "email_locked_off": (None, False, None, False, True),
}

PUSH_OFF = f"push is turned off for {TYPE} notifications"
EMAIL_OFF = f"e-mail is turned off for {TYPE} notifications"
EMAIL_LOCKED_OFF = f"{EMAIL_OFF} by the organization"

Planned = tuple[str, str, str | None, datetime | None]  # channel, status, reason, scheduled_for


@dataclass(frozen=True)
class Prefs:
    """The user's own row for the type."""

    push: bool
    email: bool
    digest: str


def local(at: datetime) -> str:
    return f"{at.astimezone(ZONE):%Y-%m-%d %H:%M} {ZONE.key}"


def expected(priority: str, prefs: Prefs, lock: str, quiet_until: datetime | None) -> list[Planned]:
    """The documented rules, channel by channel. quiet_until: when the user's quiet hours end; None outside them."""
    critical = priority == "critical"
    # In-app always, at once: it cannot be turned off and is never held by quiet hours.
    planned: list[Planned] = [("in_app", "sent", None, None)]

    # Push: never for low. A channel an org admin locked is the org's call; otherwise the user's switch,
    # which critical overrides. Quiet hours hold non-critical push until they end; critical bypasses them.
    if priority != "low":
        push_on = lock == "push_locked_on" or prefs.push
        if not (push_on or critical):
            planned.append(("push", "skipped", PUSH_OFF, None))
        elif quiet_until is not None and not critical:
            planned.append(("push", "pending", f"held for quiet hours until {local(quiet_until)}", quiet_until))
        else:
            planned.append(("push", "pending", None, None))

    # E-mail: critical overrides the user's switch and digest, but an org lock is the org's call
    # (README: "a channel an org admin locked is the org's call"; critical's row speaks of the user's
    # own choices). "never" is e-mail off. Low goes out in digests only: instant has none.
    if lock == "email_locked_off":
        planned.append(("email", "skipped", EMAIL_LOCKED_OFF, None))
    elif critical:
        planned.append(("email", "pending", None, None))
    elif not prefs.email or prefs.digest == "never":
        planned.append(("email", "skipped", EMAIL_OFF, None))
    elif prefs.digest != "instant":
        planned.append(("email", "held", f"for the {prefs.digest} digest", None))
    elif priority == "low":
        planned.append(("email", "skipped", "low-priority e-mail goes out in digests only", None))
    else:
        planned.append(("email", "pending", None, None))

    planned.append(("webhook", "pending", None, None))
    if priority != "low":
        if quiet_until is not None and not critical:
            planned.append(("chat", "pending", f"held for quiet hours until {local(quiet_until)}", quiet_until))
        else:
            planned.append(("chat", "pending", None, None))
    return planned


def case_id(priority: str, prefs: Prefs, lock: str, quiet: bool) -> str:
    switch = {True: "on", False: "off"}
    return (
        f"{priority}-push_{switch[prefs.push]}-email_{switch[prefs.email]}-{prefs.digest}-{lock}-"
        f"{'quiet' if quiet else 'awake'}"
    )


CASES = [
    pytest.param(
        priority,
        Prefs(push, email, digest),
        lock,
        quiet,
        id=case_id(priority, Prefs(push, email, digest), lock, quiet),
    )
    for priority, push, email, digest, lock, quiet in itertools.product(
        PRIORITIES, (True, False), (True, False), DIGESTS, LOCKS, (False, True)
    )
]


# --- Setting up a user and creating a notification --------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A quiet-hours window of every day, in ZONE, and when it ends (meaningful when it holds the clock)."""

    start: time
    end: time
    ends_at: datetime


def quiet_window(at: datetime, *, inside: bool) -> Window:
    """From an hour before `at` to two hours after (inside), or from three to four hours after (outside)."""
    now = at.astimezone(ZONE).replace(second=0, microsecond=0)
    start, end = (now + timedelta(hours=h) for h in ((-1, 2) if inside else (3, 4)))
    return Window(start.time(), end.time(), end.astimezone(UTC))


def make_user(
    owner: psycopg.Connection[Any], prefs: Prefs, lock: str, window: Window, *, device: bool = True,
    address: bool = True, suppressed: bool = False,
) -> tuple[uuid.UUID, uuid.UUID | None]:  # fmt: skip
    """A fresh user of a fresh org, with an address, one FCM device, a webhook endpoint and a chat connection,
    their row for the type and the org's row."""
    user, org = uuid.uuid4(), uuid.uuid4()
    email = f"{user.hex}@Example.com"
    owner.execute(
        "INSERT INTO notify.recipients (user_id, email, timezone, org_id) VALUES (%s, %s, %s, %s)",
        (user, email if address else None, ZONE.key, org),
    )
    if suppressed:
        owner.execute("INSERT INTO notify.email_suppressions (email, reason) VALUES (%s, 'manual')", (email.lower(),))
    owner.execute(
        "INSERT INTO notify.notification_preferences (user_id, notification_type, push_enabled, email_enabled, "
        "digest_frequency, quiet_hours_start, quiet_hours_end, quiet_hours_days) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, '[1, 2, 3, 4, 5, 6, 7]')",
        (user, TYPE, prefs.push, prefs.email, prefs.digest, window.start, window.end),
    )
    owner.execute(
        "INSERT INTO notify.org_notification_preferences (org_id, notification_type, push_enabled, email_enabled, "
        "digest_frequency, push_locked, email_locked) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (org, TYPE, *ORG_ROWS[lock]),
    )
    # Never sent here (no worker): the secret and URL need not be encrypted.
    owner.execute(
        "INSERT INTO notify.webhook_endpoints (user_id, url, secret_encrypted) VALUES (%s, 'https://example.com', 'x')",
        (user,),
    )
    owner.execute(
        "INSERT INTO notify.chat_connections (user_id, platform, url_encrypted) VALUES (%s, 'slack', 'x')", (user,)
    )
    if not device:
        return user, None
    row = owner.execute(
        "INSERT INTO notify.push_subscriptions (user_id, kind, fcm_token, token_hash) "
        "VALUES (%s, 'fcm', 'enc1.x.y', sha256(gen_random_uuid()::text::bytea)) RETURNING id",
        (user,),
    ).fetchone()
    assert row is not None
    return user, row[0]


def planned(owner: psycopg.Connection[Any], user: uuid.UUID) -> tuple[list[Planned], list[Any]]:
    """The user's deliveries (channel, status, reason, scheduled_for), and the device of each."""
    rows = owner.execute(
        "SELECT d.channel, d.status, d.reason, d.scheduled_for, d.subscription_id "
        "FROM notify.delivery_decisions AS d WHERE d.user_id = %s "
        "ORDER BY array_position(ARRAY['in_app', 'push', 'email', 'webhook', 'chat', 'sms'], d.channel)",
        (user,),
    ).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows], [r[4] for r in rows]


@dataclass
class Side:
    """Where notifications are created: the owner's connection (setup, checks), the clock, how to create."""

    owner: psycopg.Connection[Any]
    at: datetime  # what notify.now() reads while the case runs
    create: Callable[[str, uuid.UUID, str, list[str] | None], None]  # (path, user, priority, channels asked)


@pytest.fixture(scope="module")
def sql_side(postgresql_noproc: Any) -> Iterator[Side]:
    """One database for every SQL case, copied from the migrated template; the sender's clock pinned."""
    name = f"notifyd_policy_{os.getpid()}"
    with psycopg.connect(_url(postgresql_noproc, "postgres", login=False), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgresql_noproc.template_dbname}"')
    owner = psycopg.connect(_url(postgresql_noproc, name, login=False), autocommit=True)
    owner.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    service = psycopg.connect(_url(postgresql_noproc, name, login=True), autocommit=True)
    service.execute("SET ROLE notify_service")
    service.execute("""SELECT set_config('request.jwt.claims', '{"sub": "billing", "role": "service"}', false)""")
    service.execute(f"SET notify.clock = '{PINNED.isoformat()}'")

    def create(path: str, user: uuid.UUID, priority: str, channels: list[str] | None) -> None:
        # Autocommit: one transaction per notification, as a service sends it.
        if path == "insert":
            service.execute(
                "INSERT INTO notify.notifications (user_id, type, title, priority, channels) "
                "VALUES (%s, %s, 'Policy', %s, %s)",
                (user, TYPE, priority, channels),
            )
        else:
            service.execute(
                "SELECT notify.send(%s, %s, 'Policy', priority => %s, channels => %s)", (user, TYPE, priority, channels)
            )

    yield Side(owner, PINNED, create)
    service.close()
    owner.close()
    with psycopg.connect(_url(postgresql_noproc, "postgres", login=False), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def rest_side(server: ServerProcess, server_owner_url: str) -> Iterator[Side]:
    """The session's notifyd and its database; the real clock (notifyd's sessions cannot pin it)."""
    with psycopg.connect(server_owner_url, autocommit=True) as owner, httpx.Client(base_url=server.url) as client:

        def create(_path: str, user: uuid.UUID, priority: str, channels: list[str] | None) -> None:
            body: dict[str, Any] = {"user_id": str(user), "type": TYPE, "title": "Policy", "priority": priority}
            if channels is not None:
                body["channels"] = channels
            response = client.post("/api/v1/notifications", json=body, headers=SERVICE)
            assert response.status_code == 202, response.text

        yield Side(owner, datetime.now(UTC), create)


def side_of(request: pytest.FixtureRequest, path: str) -> Side:
    side: Side = request.getfixturevalue("rest_side" if path == "rest" else "sql_side")
    return side


# --- The table ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("priority", "prefs", "lock", "quiet"), CASES)
def test_policy_table(
    request: pytest.FixtureRequest, path: str, priority: str, prefs: Prefs, lock: str, quiet: bool
) -> None:
    side = side_of(request, path)
    window = quiet_window(side.at, inside=quiet)
    user, device = make_user(side.owner, prefs, lock, window)
    side.create(path, user, priority, None)
    got, devices = planned(side.owner, user)
    assert got == expected(priority, prefs, lock, window.ends_at if quiet else None)
    # A pending push goes to the user's one device; no other delivery names a device.
    assert devices == [device if (channel, status) == ("push", "pending") else None for channel, status, *_ in got]


INSTANT = Prefs(push=True, email=True, digest="instant")
MISSING = {
    "no_device": ("push", "skipped", "no active push subscription", None),
    "no_address": ("email", "skipped", "no e-mail address", None),
    "suppressed": ("email", "suppressed", "the address manual", None),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("priority", ["normal", "critical"])
@pytest.mark.parametrize("situation", list(MISSING))
def test_a_channel_without_a_way_to_the_user(
    request: pytest.FixtureRequest, path: str, priority: str, situation: str
) -> None:
    """No device, no address, a suppressed address: that channel is skipped or suppressed, critical or not."""
    side = side_of(request, path)
    user, _ = make_user(
        side.owner, INSTANT, "no_lock", quiet_window(side.at, inside=False),
        device=situation != "no_device", address=situation != "no_address", suppressed=situation == "suppressed",
    )  # fmt: skip
    side.create(path, user, priority, None)
    replaced = MISSING[situation]
    want = [replaced if row[0] == replaced[0] else row for row in expected(priority, INSTANT, "no_lock", None)]
    assert planned(side.owner, user)[0] == want


# --- SMS: only where asked ---------------------------------------------------------------------------

NUMBERS = ("no_number", "number", "replied_stop")
STOPPED_AT = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
SMS_CASES = [
    pytest.param(priority, sms_on, number, quiet,
                 id=f"{priority}-sms_{'on' if sms_on else 'off'}-{number}-{'quiet' if quiet else 'awake'}")
    for priority, sms_on, number, quiet in itertools.product(PRIORITIES, (True, False), NUMBERS, (False, True))
]  # fmt: skip


def expected_sms(priority: str, sms_on: bool, number: str, quiet_until: datetime | None) -> Planned:
    """docs/sms.md: critical overrides the user's switch and quiet hours, never a missing number nor a STOP."""
    critical = priority == "critical"
    if not sms_on and not critical:
        return ("sms", "skipped", f"SMS is turned off for {TYPE} notifications", None)
    if number == "no_number":
        return ("sms", "skipped", "no phone number", None)
    if number == "replied_stop":
        return ("sms", "skipped", f"the number replied STOP on {STOPPED_AT:%Y-%m-%d %H:%M} UTC", None)
    if quiet_until is not None and not critical:
        return ("sms", "pending", f"held for quiet hours until {local(quiet_until)}", quiet_until)
    return ("sms", "pending", None, None)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("priority", "sms_on", "number", "quiet"), SMS_CASES)
def test_sms_policy_table(
    request: pytest.FixtureRequest, path: str, priority: str, sms_on: bool, number: str, quiet: bool
) -> None:
    side = side_of(request, path)
    window = quiet_window(side.at, inside=quiet)
    user, org = uuid.uuid4(), uuid.uuid4()
    phone = None if number == "no_number" else f"+1415555{user.int % 10000:04d}"
    side.owner.execute(
        "INSERT INTO notify.recipients (user_id, timezone, org_id, phone, sms_opted_out_at) "
        "VALUES (%s, %s, %s, %s, %s)",
        (user, ZONE.key, org, phone, STOPPED_AT if number == "replied_stop" else None),
    )
    side.owner.execute(
        "INSERT INTO notify.notification_preferences (user_id, notification_type, sms_enabled, quiet_hours_start, "
        "quiet_hours_end, quiet_hours_days) VALUES (%s, %s, %s, %s, %s, '[1, 2, 3, 4, 5, 6, 7]')",
        (user, TYPE, sms_on, window.start, window.end),
    )
    side.create(path, user, priority, ["in_app", "sms"])
    assert planned(side.owner, user)[0] == [
        ("in_app", "sent", None, None),
        expected_sms(priority, sms_on, number, window.ends_at if quiet else None),
    ]


# --- SMS, webhook and chat: the user's switch × the org's default or lock ---------------------------------

SWITCHES = ("unset", "on", "off")
ORG_POLICIES = ("no_org_row", "default_off", "locked_on", "locked_off")
NEW_CHANNELS = ("sms", "webhook", "chat")
READER_NAMES = {"sms": "SMS", "webhook": "webhook", "chat": "chat"}
# The user's own endpoint and one of their org's; their org's chat channel; the user's number.
TARGETS = {"sms": 1, "webhook": 2, "chat": 1}
CHANNEL_CASES = [
    pytest.param(channel, priority, switch, org, quiet,
                 id=f"{channel}-{priority}-user_{switch}-{org}-{'quiet' if quiet else 'awake'}")
    for channel, priority, switch, org, quiet in itertools.product(
        NEW_CHANNELS, PRIORITIES, SWITCHES, ORG_POLICIES, (False, True))
]  # fmt: skip


def expected_channel(channel: str, priority: str, switch: str, org: str, quiet_until: datetime | None) -> list[Planned]:
    """docs/policies.md: the user's row beats the org's default; a lock beats both, critical included; critical
    overrides the user's own switch and quiet hours. Webhook has no quiet hours; low gets no chat."""
    critical = priority == "critical"
    if channel == "chat" and priority == "low":
        return []
    locked = org.startswith("locked")
    if locked:
        enabled = org == "locked_on"
    elif switch != "unset":
        enabled = switch == "on"
    else:
        enabled = org != "default_off"
    if not enabled and (not critical or locked):
        by_org = " by the organization" if locked else ""
        return [(channel, "skipped", f"{READER_NAMES[channel]} is turned off for {TYPE} notifications{by_org}", None)]
    if channel != "webhook" and quiet_until is not None and not critical:
        return [(channel, "pending", f"held for quiet hours until {local(quiet_until)}", quiet_until)] * TARGETS[
            channel
        ]
    return [(channel, "pending", None, None)] * TARGETS[channel]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("channel", "priority", "switch", "org", "quiet"), CHANNEL_CASES)
def test_sms_webhook_and_chat_policy_table(
    request: pytest.FixtureRequest, path: str, channel: str, priority: str, switch: str, org: str, quiet: bool
) -> None:
    """SMS asked for by the sender; webhook and chat as the priority has them, to the user's and the org's targets."""
    side = side_of(request, path)
    window = quiet_window(side.at, inside=quiet)
    user, org_id = uuid.uuid4(), uuid.uuid4()
    side.owner.execute(
        "INSERT INTO notify.recipients (user_id, timezone, org_id, phone) VALUES (%s, %s, %s, %s)",
        (user, ZONE.key, org_id, f"+1415555{user.int % 10000:04d}"),
    )
    side.owner.execute(
        f"INSERT INTO notify.notification_preferences (user_id, notification_type, {channel}_enabled, "
        "quiet_hours_start, quiet_hours_end, quiet_hours_days) VALUES (%s, %s, %s, %s, %s, '[1, 2, 3, 4, 5, 6, 7]')",
        (user, TYPE, None if switch == "unset" else switch == "on", window.start, window.end),
    )
    if org != "no_org_row":
        side.owner.execute(
            f"INSERT INTO notify.org_notification_preferences (org_id, notification_type, {channel}_enabled, "
            f"{channel}_locked) VALUES (%s, %s, %s, %s)",
            (org_id, TYPE, org == "locked_on", org.startswith("locked")),
        )
    for org_wide in (None, org_id):
        side.owner.execute(
            "INSERT INTO notify.webhook_endpoints (user_id, org_id, url, secret_encrypted) "
            "VALUES (%s, %s, 'https://example.com', 'x')",
            (user, org_wide),
        )
    side.owner.execute(
        "INSERT INTO notify.chat_connections (user_id, org_id, platform, url_encrypted) VALUES (%s, %s, 'slack', 'x')",
        (user, org_id),
    )
    side.create(path, user, priority, ["in_app", "sms"] if channel == "sms" else None)
    got = [row for row in planned(side.owner, user)[0] if row[0] == channel]
    assert got == expected_channel(channel, priority, switch, org, window.ends_at if quiet else None)
