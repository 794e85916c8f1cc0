"""Aggregation under concurrency, on the WebSocket and through REST: one group, one row, the right count.

The rules themselves (window, read groups, keys, what does not fold) are in tests/sql/aggregation.sql.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.conftest import dsn, service_conn
from tests.server import ServerProcess, make_token, wait_for
from tests.test_realtime import notifications, recv_until, send, settle, ws_for

API = "/api/v1/notifications"
SERVICE = {"Authorization": f"Bearer {make_token('ticketing', role='service')}"}
GROUP_TITLE = {"group_title": "{count} tickets assigned"}


def send_or_insert(conn: psycopg.Connection[Any], user: uuid.UUID, number: int) -> uuid.UUID | None:
    """Even numbers through notify.send (the group's id), odd ones by plain INSERT (no row when folded)."""
    data = Jsonb({**GROUP_TITLE, "ticket": number})
    title = f"Ticket #{number} assigned"
    if number % 2 == 0:
        row = conn.execute("SELECT notify.send(%s, 'task', %s, group_key => 'assign', data => %s)", (user, title, data))
    else:
        row = conn.execute(
            "INSERT INTO notify.notifications (user_id, type, title, group_key, data) "
            "VALUES (%s, 'task', %s, 'assign', %s) RETURNING id",
            (user, title, data),
        )
    got = row.fetchone()
    return None if got is None else uuid.UUID(str(got[0]))


def waiting_on_a_lock(db: psycopg.Connection[Any], count: int) -> bool:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return row is not None and row[0] >= count


@pytest.mark.parametrize("senders", [5, 50])
def test_concurrent_sends_with_one_group_key_make_one_notification(db: psycopg.Connection[Any], senders: int) -> None:
    user = uuid.uuid4()
    conns = [service_conn(db) for _ in range(senders)]
    conns[0].execute("SELECT notify.upsert_recipient_v2(%s, 'ada@example.com')", (user,))
    # Hold the recipient's row so that every sender is inside its INSERT, queued on the same lock, at once.
    holder = psycopg.connect(**dsn(db, login=False))
    holder.execute("SELECT 1 FROM notify.recipients WHERE user_id = %s FOR UPDATE", (user,))
    answers: dict[int, uuid.UUID | None] = {}
    errors: list[BaseException] = []

    def run(number: int) -> None:
        try:
            answers[number] = send_or_insert(conns[number], user, number)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(senders)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: waiting_on_a_lock(db, senders), what=f"{senders} senders waiting on the recipient's lock")
    finally:
        holder.commit()
        holder.close()
    for t in threads:
        t.join(30)
    for conn in conns:
        conn.close()
    assert errors == []

    rows = db.execute(
        "SELECT id, group_count, title, seq FROM notify.notifications WHERE user_id = %s", (user,)
    ).fetchall()
    assert len(rows) == 1
    group_id, count, title, seq = rows[0]
    assert (count, title) == (senders, f"{senders} tickets assigned")
    # notify.send always answers with the group; a plain INSERT returns a row only when it made the group.
    assert {answers[n] for n in range(0, senders, 2)} == {group_id}
    assert [a for n, a in answers.items() if n % 2 == 1 and a is not None] in ([], [group_id])
    assert db.execute("SELECT last_seq FROM notify.recipients WHERE user_id = %s", (user,)).fetchone() == (seq,)
    folds = db.execute(
        "SELECT array_agg(group_count ORDER BY group_count) FROM notify.notification_folds WHERE notification_id = %s",
        (group_id,),
    ).fetchone()
    assert folds == (list(range(2, senders + 1)),)
    # One plan, the first sender's: in-app, push (no device), e-mail (held for the digest).
    deliveries = db.execute(
        "SELECT count(*), count(DISTINCT notification_id) FROM notify.delivery_decisions WHERE user_id = %s",
        (user,),
    ).fetchone()
    assert deliveries == (3, 1)


async def test_sessions_receive_the_folded_group_again(server: ServerProcess, server_owner_url: str) -> None:
    user = uuid.uuid4()
    async with ws_for(server, user) as tab1, ws_for(server, user) as tab2:
        await settle(tab1)
        await settle(tab2)
        first_id = await asyncio.to_thread(
            send, server_owner_url, user, "Ticket #1 assigned", group_key="assign", data=Jsonb(GROUP_TITLE)
        )
        [first] = notifications(await recv_until(tab1, "unread_count"))
        await recv_until(tab2, "unread_count")
        assert first["id"] == first_id and first["group_count"] == 1 and first["title"] == "Ticket #1 assigned"
        folded_id = await asyncio.to_thread(
            send, server_owner_url, user, "Ticket #2 assigned", group_key="assign", data=Jsonb(GROUP_TITLE)
        )
        assert folded_id == first_id
        for ws in (tab1, tab2):
            events = await recv_until(ws, "unread_count")
            [again] = notifications(events)
            assert again["id"] == first_id and again["seq"] > first["seq"]
            assert (again["group_count"], again["title"]) == (2, "2 tickets assigned")
            assert events[-1] == {"type": "unread_count", "count": 1, "by_type": {"task": 1}}


def test_rest_sends_fold_and_answer_with_the_groups_id(client: httpx.Client) -> None:
    user = uuid.uuid4()

    def post(number: int, key: str) -> httpx.Response:
        body = {"user_id": str(user), "type": "task", "title": f"Ticket #{number} assigned", "group_key": "assign",
                "data": GROUP_TITLE}  # fmt: skip
        return client.post(API, json=body, headers={**SERVICE, "Idempotency-Key": key})

    first, second = post(1, "t-1"), post(2, "t-2")
    assert (first.status_code, second.status_code) == (202, 202), second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["created_at"] == first.json()["created_at"], "the group keeps its first created_at"
    replay = post(2, "t-2")
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]

    listed = client.get(API, headers={"Authorization": f"Bearer {make_token(user)}"})
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert (item["id"], item["group_count"], item["title"]) == (first.json()["id"], 2, "2 tickets assigned")
