"""The notification center's visibility rule: written once (notify.inbox) and honoured by every reader."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import psycopg
import pytest

from notifyd.db import queries
from notifyd.db.queries import query
from tests.conftest import database_url
from tests.server import ServerProcess, make_token

API = "/api/v1/notifications"
USER = uuid.UUID("1b0c0000-0000-4000-8000-000000000001")
OTHER = uuid.UUID("1b0c0000-0000-4000-8000-000000000002")
HIDDEN = ("deleted", "scheduled for tomorrow", "template not rendered yet")

# The rule's conditions on when and whether a row is ready, as any query or function would spell them.
RULE_PARTS = (
    re.compile(r"held_until\s+IS\s+DISTINCT\s+FROM\s+'infinity'", re.IGNORECASE),
    re.compile(r"send_at\s*<=\s*notify\.now\(\)", re.IGNORECASE),
)


def test_the_rule_is_written_in_the_view_alone(db: psycopg.Connection[Any]) -> None:
    views = db.execute("""
        SELECT c.oid::regclass::text, pg_get_viewdef(c.oid) FROM pg_class AS c
        WHERE c.relnamespace::regnamespace::text IN ('notify', 'notify_private') AND c.relkind = 'v'""").fetchall()
    functions = db.execute("""
        SELECT p.oid::regprocedure::text, p.prosrc FROM pg_proc AS p
        WHERE p.pronamespace::regnamespace::text IN ('notify', 'notify_private')""").fetchall()
    texts = [*views, *functions, *((f"query {name}", sql) for name, sql in queries._all().items())]
    assert len(texts) > 100
    holders = sorted({name for name, text in texts for part in RULE_PARTS if part.search(text)})
    # A digest takes the held e-mail that is due: its own rule, after it skipped the read and deleted ones.
    digest = "notify_private.claim_digest(uuid,text,timestamp with time zone,timestamp with time zone)"
    assert holders == ["notify.inbox", digest]
    comment = db.execute("SELECT obj_description('notify.inbox'::regclass, 'pg_class')").fetchone()
    assert comment is not None and comment[0] and "\n" not in comment[0]


def add(db: psycopg.Connection[Any], user: uuid.UUID, title: str, **columns: str) -> uuid.UUID:
    """One unread notification through the real triggers; then `columns` set on it as the owner."""
    row = db.execute(
        "INSERT INTO notify.notifications (user_id, type, title, priority, send_at) "
        "VALUES (%s, 'task', %s, 'high', %s) RETURNING id",
        (user, title, columns.pop("send_at", None)),
    ).fetchone()
    assert row is not None
    for column, value in columns.items():
        db.execute(f"UPDATE notify.notifications SET {column} = {value} WHERE id = %s", (row[0],))
    return uuid.UUID(str(row[0]))


def fill(db: psycopg.Connection[Any]) -> dict[str, uuid.UUID]:
    """The user's one visible notification and one of each kind the center leaves out; another user's one."""
    ids = {
        "visible": add(db, USER, "visible"),
        "deleted": add(db, USER, "deleted", deleted_at="now()"),
        "scheduled for tomorrow": add(db, USER, "later", send_at="tomorrow"),
        "template not rendered yet": add(db, USER, "{{ placeholder }}", held_until="'infinity'"),
    }
    add(db, OTHER, "someone else's")
    return ids


@pytest.fixture
def center(db: psycopg.Connection[Any]) -> dict[str, uuid.UUID]:
    return fill(db)


@pytest.fixture
def client(center: dict[str, uuid.UUID], own_server: Any) -> Iterator[httpx.Client]:
    server: ServerProcess = own_server()
    with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {make_token(USER)}"}) as http:
        yield http


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("sort", ["newest", "oldest", "priority"])
def test_every_order_of_the_list_shows_only_the_visible_one(
    client: httpx.Client, center: dict[str, uuid.UUID], sort: str
) -> None:
    page = ok(client.get(API, params={"sort": sort}))
    assert [item["id"] for item in page["items"]] == [str(center["visible"])]
    assert page["unread_count"] == 1


def test_get_finds_the_visible_one_and_none_of_the_others(client: httpx.Client, center: dict[str, uuid.UUID]) -> None:
    assert ok(client.get(f"{API}/{center['visible']}"))["title"] == "visible"
    for kind in HIDDEN:
        response = client.get(f"{API}/{center[kind]}")
        assert response.status_code == 404, (kind, response.text)


def test_unread_count_history_and_export_count_only_the_visible_one(
    client: httpx.Client, center: dict[str, uuid.UUID]
) -> None:
    assert ok(client.get(f"{API}/unread-count")) == {"count": 1, "by_type": {"task": 1}}
    assert [item["id"] for item in ok(client.get(f"{API}/history"))["items"]] == [str(center["visible"])]
    exported = client.get(f"{API}/export", params={"format": "csv"})
    assert exported.status_code == 200, exported.text
    _, *rows = list(csv.reader(io.StringIO(exported.text, newline="")))
    assert [row[0] for row in rows] == [str(center["visible"])]


def test_mark_all_read_marks_only_what_the_center_shows(client: httpx.Client, db: psycopg.Connection[Any]) -> None:
    assert ok(client.post(f"{API}/read-all")) == {"updated_count": 1}
    unread = db.execute(
        "SELECT title FROM notify.notifications WHERE user_id = %s AND read_at IS NULL ORDER BY title", (USER,)
    ).fetchall()
    assert [r[0] for r in unread] == ["deleted", "later", "{{ placeholder }}"]


async def hub_reads(url: str, snapshot: str) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """The hub's two reads, as the hub makes them (notify_worker): the changes since `snapshot`, the counts."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET ROLE notify_worker")
        changes = await conn.fetch(query("hub_fan_out"), snapshot)
        counts = await conn.fetch(query("hub_unread_counts"), [USER, OTHER])
        return changes, counts
    finally:
        await conn.close()


def test_the_hub_counts_only_the_visible_one_and_sends_no_hidden_one(db: psycopg.Connection[Any]) -> None:
    before = db.execute("SELECT pg_current_snapshot()::text").fetchone()
    assert before is not None
    ids = {kind: str(found) for kind, found in fill(db).items()}
    changes, counts = asyncio.run(hub_reads(database_url(db, login=True), before[0]))
    sent = {row["id"]: row["data"] for row in changes if row["user_id"] == USER}
    assert ids["visible"] in sent
    assert ids["scheduled for tomorrow"] not in sent and ids["template not rendered yet"] not in sent
    # A deletion is an event, so that open sessions drop the notification; it carries no read_at.
    assert '"deleted_at": null' not in sent[ids["deleted"]]
    assert {row["user_id"]: row["count"] for row in counts} == {USER: 1, OTHER: 1}
