"""Quiet hours in SQL: notify_private.quiet_hours_end against a small zoneinfo reference.

The rules are written out at the top of sql/functions/065_quiet_hours.sql. Quiet hours are not an
RLS question, so the function is called as the owner; one test asks as the user through notify_authenticated.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

USER = uuid.UUID(int=0x5191E7)
WEEKDAYS = frozenset(range(1, 6))
EVERY_DAY = frozenset(range(1, 8))
ENDLESS = "infinity"  # what SQL's 'infinity' (windows covering the whole week) reads as here

# The zones of the property test: DST of one hour both ways round the year, of 30 minutes (Lord Howe),
# at 02:45 with a 45-minute offset (Chatham), at midnight (Santiago), "negative" DST (Dublin), none.
ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "UTC",
    "America/Santiago",
    "Europe/Dublin",
]


@dataclass(frozen=True)
class Window:
    start: time
    end: time
    days: frozenset[int] = EVERY_DAY

    def as_json(self) -> dict[str, Any]:
        return {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M"), "days": sorted(self.days)}


@dataclass(frozen=True)
class Preference:
    """One notification_preferences row: the quiet_hours_* window (or none) and quiet_hours_windows."""

    type: str | None = None
    window: Window | None = None
    windows: tuple[Window, ...] = ()
    days: frozenset[int] = field(default=WEEKDAYS)

    def all_windows(self) -> list[Window]:
        seed = [Window(self.window.start, self.window.end, self.days)] if self.window else []
        return seed + list(self.windows)


def hm(text: str) -> time:
    return time.fromisoformat(text)


def save(db: psycopg.Connection[Any], user: uuid.UUID, zone: str, *rows: Preference) -> None:
    db.execute("INSERT INTO notify.recipients (user_id, timezone) VALUES (%s, %s)", (user, zone))
    for row in rows:
        db.execute(
            "INSERT INTO notify.notification_preferences (user_id, notification_type, quiet_hours_start, "
            "quiet_hours_end, quiet_hours_days, quiet_hours_windows) VALUES (%s, %s, %s, %s, %s, %s)",
            (
                user,
                row.type,
                row.window and row.window.start,
                row.window and row.window.end,
                json.dumps(sorted(row.days)),
                json.dumps([w.as_json() for w in row.windows]),
            ),
        )


def quiet_hours_end(db: psycopg.Connection[Any], user: uuid.UUID, type_: str | None, at: datetime) -> Any:
    row = db.execute(
        "SELECT CASE WHEN isfinite(e) THEN e END, e = 'infinity' FROM notify_private.quiet_hours_end(%s, %s, %s) AS e",
        (user, type_, at),
    ).fetchone()
    assert row is not None
    return ENDLESS if row[1] else row[0]


# --- The reference: the same rules, from Python's zoneinfo rather than PostgreSQL's time zone code.


def local_instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """A local time as PostgreSQL reads it: of the two readings in a DST gap or overlap, the later."""
    naive = datetime.combine(day, wall)
    return max((naive.replace(tzinfo=zone, fold=fold) for fold in (0, 1)), key=datetime.timestamp).astimezone(UTC)


def occurrences(
    windows: list[Window], zone: ZoneInfo, around: datetime, days: range
) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) of each window started on the local days `days` (offsets) from `around`'s."""
    today = around.astimezone(zone).date()
    for window in windows:
        if window.start == window.end:
            continue
        for offset in days:
            day = today + timedelta(days=offset)
            if day.isoweekday() in window.days:
                start = local_instant(day, window.start, zone)
                end = local_instant(day + timedelta(days=int(window.end <= window.start)), window.end, zone)
                if start < end:
                    yield start, end


def reference_end(windows: list[Window], zone: ZoneInfo, at: datetime) -> datetime | str | None:
    spans = list(occurrences(windows, zone, at, range(-2, 10)))
    end, moment = None, at
    while covering := [e for s, e in spans if s <= moment < e]:
        end = moment = max(covering)
        if end - at > timedelta(days=7):
            return ENDLESS
    return end


# --- Table: the rules one case at a time, in Europe/Berlin (CEST, +02:00, in June 2026) unless said.

NIGHTS = Preference(window=Window(hm("22:00"), hm("08:00")))  # 22:00-08:00, Monday to Friday
WEEKENDS = Preference(
    window=Window(hm("22:00"), hm("08:00")), windows=(Window(hm("23:00"), hm("10:00"), frozenset({6, 7})),)
)
# 10 June 2026 is a Wednesday.
CASES: list[tuple[str, str, tuple[Preference, ...], str | None, str, str | None]] = [
    ("before the window", "Europe/Berlin", (NIGHTS,), None, "2026-06-10T21:59+02:00", None),
    ("at its start", "Europe/Berlin", (NIGHTS,), None, "2026-06-10T22:00+02:00", "2026-06-11T08:00+02:00"),
    ("after midnight", "Europe/Berlin", (NIGHTS,), "task", "2026-06-11T03:00+02:00", "2026-06-11T08:00+02:00"),
    ("at its end", "Europe/Berlin", (NIGHTS,), None, "2026-06-11T08:00+02:00", None),
    (
        "Saturday 03:00: Friday's window",
        "Europe/Berlin",
        (NIGHTS,),
        None,
        "2026-06-13T03:00+02:00",
        "2026-06-13T08:00+02:00",
    ),
    ("no window starts on Saturday", "Europe/Berlin", (NIGHTS,), None, "2026-06-13T23:00+02:00", None),
    ("nor on Sunday", "Europe/Berlin", (NIGHTS,), None, "2026-06-15T03:00+02:00", None),
    ("weekend window", "Europe/Berlin", (WEEKENDS,), None, "2026-06-13T23:30+02:00", "2026-06-14T10:00+02:00"),
    ("Sunday night", "Europe/Berlin", (WEEKENDS,), None, "2026-06-15T09:00+02:00", "2026-06-15T10:00+02:00"),
    ("weekday window beside it", "Europe/Berlin", (WEEKENDS,), None, "2026-06-12T09:00+02:00", None),
    (
        "overlapping windows chain",
        "Europe/Berlin",
        (Preference(window=Window(hm("22:00"), hm("08:00")), windows=(Window(hm("07:00"), hm("09:30")),)),),
        None,
        "2026-06-11T03:00+02:00",
        "2026-06-11T09:30+02:00",
    ),
    (
        "touching windows chain",
        "Europe/Berlin",
        (Preference(windows=(Window(hm("12:00"), hm("13:00")), Window(hm("13:00"), hm("13:30")))),),
        None,
        "2026-06-11T12:59+02:00",
        "2026-06-11T13:30+02:00",
    ),
    (
        "start = end is no window",
        "Europe/Berlin",
        (Preference(window=Window(hm("22:00"), hm("22:00")), days=EVERY_DAY),),
        None,
        "2026-06-10T23:00+02:00",
        None,
    ),
    (
        "windows covering the week never end",
        "Europe/Berlin",
        (
            Preference(
                window=Window(hm("08:00"), hm("22:00")), windows=(Window(hm("22:00"), hm("08:00")),), days=EVERY_DAY
            ),
        ),
        None,
        "2026-06-10T12:00+02:00",
        ENDLESS,
    ),
    # The user's row for a type replaces their global row's windows.
    (
        "global row for a type without a row",
        "Europe/Berlin",
        (NIGHTS, Preference(type="task")),
        "user",
        "2026-06-10T23:00+02:00",
        "2026-06-11T08:00+02:00",
    ),
    (
        "a type's row without quiet hours",
        "Europe/Berlin",
        (NIGHTS, Preference(type="task")),
        "task",
        "2026-06-10T23:00+02:00",
        None,
    ),
    (
        "a type's own window",
        "Europe/Berlin",
        (NIGHTS, Preference(type="billing", window=Window(hm("12:00"), hm("13:00")), days=EVERY_DAY)),
        "billing",
        "2026-06-13T12:30+02:00",
        "2026-06-13T13:00+02:00",
    ),
    ("no preferences", "Europe/Berlin", (), None, "2026-06-10T23:00+02:00", None),
    # DST, New York: 8 March 2026 02:00 EST -> 03:00 EDT; 1 November 2026 02:00 EDT -> 01:00 EST.
    (
        "an end in the spring gap moves by the gap",
        "America/New_York",
        (Preference(window=Window(hm("01:00"), hm("02:30")), days=EVERY_DAY),),
        None,
        "2026-03-08T01:59-05:00",
        "2026-03-08T03:30-04:00",
    ),
    (
        "an end in the autumn overlap is its second reading",
        "America/New_York",
        (Preference(window=Window(hm("22:00"), hm("01:30")), days=EVERY_DAY),),
        None,
        "2026-11-01T01:45-04:00",
        "2026-11-01T01:30-05:00",
    ),
    (
        "a window mostly in the gap is empty that night",
        "America/New_York",
        (Preference(window=Window(hm("02:30"), hm("03:10")), days=EVERY_DAY),),
        None,
        "2026-03-08T03:05-04:00",
        None,
    ),
    (
        "and back the next night",
        "America/New_York",
        (Preference(window=Window(hm("02:30"), hm("03:10")), days=EVERY_DAY),),
        None,
        "2026-03-09T02:45-04:00",
        "2026-03-09T03:10-04:00",
    ),
    (
        "a 30-minute gap (Lord Howe, 4 October 2026 02:00 -> 02:30)",
        "Australia/Lord_Howe",
        (Preference(window=Window(hm("22:00"), hm("02:15")), days=EVERY_DAY),),
        None,
        "2026-10-04T02:40+11:00",
        "2026-10-04T02:45+11:00",
    ),
]


@pytest.mark.parametrize(("zone", "rows", "type_", "at", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_quiet_hours_end(
    db: psycopg.Connection[Any],
    zone: str,
    rows: tuple[Preference, ...],
    type_: str | None,
    at: str,
    expected: str | None,
) -> None:
    save(db, USER, zone, *rows)
    want = expected if expected in (None, ENDLESS) else datetime.fromisoformat(expected)
    assert quiet_hours_end(db, USER, type_, datetime.fromisoformat(at)) == want
    # The reference agrees with every row of the table (the property test then goes further).
    row = next((r for r in rows if r.type == type_), next((r for r in rows if r.type is None), Preference()))
    assert reference_end(row.all_windows(), ZoneInfo(zone), datetime.fromisoformat(at)) == want


def test_no_recipient_is_no_quiet_hours(db: psycopg.Connection[Any]) -> None:
    assert quiet_hours_end(db, uuid.uuid4(), None, datetime(2026, 6, 10, 23, tzinfo=UTC)) is None


def test_the_calling_user_asks_from_sql(db: psycopg.Connection[Any], as_role: Any) -> None:
    save(db, USER, "Europe/Berlin", NIGHTS)
    db.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    me = {"sub": str(USER)}
    with as_role("notify_authenticated", me) as cur:
        cur.execute("SET LOCAL notify.clock = '2026-06-10 23:00+02'")
        assert cur.execute("SELECT notify.quiet_hours_end()").fetchone() == (
            datetime.fromisoformat("2026-06-11T08:00+02:00"),
        )
        assert cur.execute("SELECT notify.quiet_hours_end('task', '2026-06-11 12:00+02')").fetchone() == (None,)
    with as_role("notify_authenticated", me) as cur, pytest.raises(psycopg.errors.InvalidParameterValue) as bad:
        cur.execute("SELECT notify.quiet_hours_end('tasks')")
    assert 'unknown notification type "tasks"' in str(bad.value)
    with as_role("notify_authenticated", me) as cur, pytest.raises(psycopg.errors.InsufficientPrivilege):
        cur.execute("SELECT notify_private.quiet_hours_end(%s, NULL, now())", (uuid.uuid4(),))
    with as_role("notify_authenticated", {}) as cur, pytest.raises(psycopg.errors.InsufficientPrivilege) as nobody:
        cur.execute("SELECT notify.quiet_hours_end()")
    assert "request.jwt.claims has no user sub" in str(nobody.value)


def test_who_may_ask(db: psycopg.Connection[Any]) -> None:
    private, public = (
        "notify_private.quiet_hours_end(uuid, text, timestamptz)",
        "notify.quiet_hours_end(text, timestamptz)",
    )
    allowed = {
        (role, function): db.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, function)).fetchone()
        for role in ("notify_definer", "notify_worker", "notify_authenticated", "notify_service")
        for function in (private, public)
    }
    assert {key for key, value in allowed.items() if value == (True,)} == {
        ("notify_definer", private),
        ("notify_worker", private),
        ("notify_definer", public),
        ("notify_worker", public),
        ("notify_authenticated", public),
    }


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("quiet_hours_end = NULL", "quiet_hours_start and quiet_hours_end are set together: both or neither"),
        ("quiet_hours_days = '[1, 8]'", "quiet_hours_days must be a list of ISO weekdays 1 (Monday) to 7 (Sunday)"),
        ("quiet_hours_days = '[1.5]'", "quiet_hours_days must be a list of ISO weekdays"),
        ("quiet_hours_windows = '{}'", "quiet_hours_windows must be a JSON array of windows"),
        ("quiet_hours_windows = '[1]'", 'quiet_hours_windows[0] must be {"start": "HH:MM", "end": "HH:MM", "days"'),
        (
            """quiet_hours_windows = '[{"start": "22:00", "end": "07:00", "days": [6], "tz": "UTC"}]'""",
            "quiet_hours_windows[0] must be",
        ),
        (
            """quiet_hours_windows = '[{"start": "22:00", "end": "07:00", "days": [6]},
                                      {"start": "24:00", "end": "07:00", "days": [7]}]'""",
            'quiet_hours_windows[1].start must be a time "HH:MM" from 00:00 to 23:59, got "24:00"',
        ),
        (
            """quiet_hours_windows = '[{"start": "22:00", "end": "7:00", "days": [6]}]'""",
            'quiet_hours_windows[0].end must be a time "HH:MM"',
        ),
        (
            """quiet_hours_windows = '[{"start": "22:00", "end": "07:00", "days": ["sat"]}]'""",
            "quiet_hours_windows[0].days must be a list of ISO weekdays",
        ),
        (
            "quiet_hours_windows = (SELECT jsonb_agg(jsonb_build_object('start', '01:00', 'end', '02:00', "
            "'days', jsonb_build_array(1))) FROM generate_series(1, 15))",
            "quiet_hours_windows holds at most 14 windows, got 15",
        ),
    ],
)
def test_malformed_quiet_hours_are_refused(db: psycopg.Connection[Any], assignment: str, message: str) -> None:
    save(db, USER, "Europe/Berlin", WEEKENDS)
    before = db.execute("SELECT to_jsonb(p) FROM notify.notification_preferences AS p").fetchone()
    with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
        db.execute(f"UPDATE notify.notification_preferences SET {assignment}")  # noqa: S608 - the table's cases
    assert message in str(refused.value)
    assert db.execute("SELECT to_jsonb(p) FROM notify.notification_preferences AS p").fetchone() == before


# --- Properties: random zones, windows and instants near the DST changes of 2026 and 2027.


@cache
def transitions(zone_name: str) -> list[datetime]:
    """The instants the zone's UTC offset changes in 2026-2027, to the second."""
    zone = ZoneInfo(zone_name)

    def offset(seconds: int) -> timedelta | None:
        return datetime.fromtimestamp(seconds, UTC).astimezone(zone).utcoffset()

    found = []
    start, stop = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()), int(datetime(2028, 1, 1, tzinfo=UTC).timestamp())
    for hour in range(start, stop, 3600):
        if offset(hour) != offset(hour + 3600):
            low, high = hour, hour + 3600
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset(middle) == offset(low) else (low, middle)
            found.append(datetime.fromtimestamp(high, UTC))
    return found


def test_the_property_zones_change_as_expected() -> None:
    assert len(transitions("America/New_York")) == 4 and transitions("UTC") == transitions("Asia/Kolkata") == []
    assert transitions("America/New_York")[0] == datetime(2026, 3, 8, 7, tzinfo=UTC)
    assert transitions("Australia/Lord_Howe")[0] == datetime(2026, 4, 4, 15, tzinfo=UTC)  # 02:00 +11 -> 01:30 +10:30


# Times of day near the DST changes (01:00-03:45 local, midnight) are likelier than the rest.
times_of_day = st.one_of(
    st.sampled_from(
        [
            hm(t)
            for t in (
                "00:00",
                "00:30",
                "01:00",
                "01:30",
                "01:45",
                "02:00",
                "02:15",
                "02:30",
                "02:45",
                "03:00",
                "03:10",
                "03:30",
                "03:45",
                "08:00",
                "22:00",
                "23:30",
            )
        ]
    ),
    st.integers(0, 24 * 60 - 1).map(lambda m: time(m // 60, m % 60)),
)
windows = st.builds(Window, start=times_of_day, end=times_of_day, days=st.frozensets(st.integers(1, 7)))


@st.composite
def instants(draw: st.DrawFn, zone_name: str) -> datetime:
    changes = transitions(zone_name)
    if changes and draw(st.integers(0, 9)) > 0:
        base = draw(st.sampled_from(changes))
    else:
        base = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=draw(st.integers(0, 729)))
    return base + timedelta(minutes=draw(st.integers(-36 * 60, 36 * 60)), seconds=draw(st.sampled_from([0, 0, 1, 59])))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, Preference, list[datetime]]:
    zone_name = draw(st.sampled_from(ZONES))
    preference = Preference(
        window=draw(st.none() | windows),
        days=draw(st.frozensets(st.integers(1, 7))),
        windows=tuple(draw(st.lists(windows, max_size=3))),
    )
    return zone_name, preference, draw(st.lists(instants(zone_name), min_size=1, max_size=6))


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_held_exactly_when_inside_a_window(
    db: psycopg.Connection[Any], scenario: tuple[str, Preference, list[datetime]]
) -> None:
    zone_name, preference, moments = scenario
    zone, user, quiet = ZoneInfo(zone_name), uuid.uuid4(), preference.all_windows()
    save(db, user, zone_name, preference)
    # Every window edge near the first instant, and the second before it: where off-by-one errors live.
    edges = {edge for span in occurrences(quiet, zone, moments[0], range(-1, 2)) for edge in span}
    moments = moments + sorted(edges) + [edge - timedelta(seconds=1) for edge in sorted(edges)]
    answers = db.execute(
        """
        SELECT q.at, CASE WHEN isfinite(q.ends) THEN q.ends END, q.ends = 'infinity',
               notify_private.quiet_hours_end(%(user)s, NULL, q.ends),
               notify_private.quiet_hours_end(%(user)s, NULL, q.ends - interval '1 microsecond')
        FROM (SELECT t AS at, notify_private.quiet_hours_end(%(user)s, 'task', t) AS ends
              FROM unnest(%(moments)s::timestamptz[]) AS t) AS q
        """,
        {"user": user, "moments": moments},
    ).fetchall()
    for at, ends, endless, at_the_end, just_before in answers:
        got = ENDLESS if endless else ends
        assert got == reference_end(quiet, zone, at), (at, zone_name, preference)
        if isinstance(got, datetime):
            # Quiet ends in the future, on a window's end as the local clock reads it, for good.
            assert got > at
            assert any(
                local_instant(got.astimezone(zone).date() + timedelta(days=k), w.end, zone) == got
                for w in quiet
                for k in (-1, 0, 1)
            )
            assert at_the_end is None and just_before == got
