"""The inbox states beyond read (docs/rest.md, docs/browser.md): seen, archived and snoozed, over REST and the
WebSocket, synced across the sessions of one user, against a real notifyd, database and worker."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifyd.core.models import MAX_SEEN_IDS
from tests.conftest import database_url
from tests.server import ServerProcess, make_token, wait_for
from tests.test_realtime import notifications, recv, recv_until, send, settle, ws_for
from tests.test_sse import data as sse_data
from tests.test_sse import stream_for

API = "/api/v1/notifications"


def headers(user: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def listed(client: httpx.Client, user: uuid.UUID, state: str | None = None) -> list[str]:
    params = {"state": state} if state is not None else {}
    return [item["id"] for item in ok(client.get(API, params=params, headers=headers(user)))["items"]]


def column(url: str, name: str, notification_id: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT {name} FROM notify.notifications WHERE id = %s", (notification_id,)).fetchone()
        assert row is not None
        return row[0]


def test_seen_archive_unarchive_and_snooze_over_rest(server: ServerProcess, server_owner_url: str) -> None:
    user, other = uuid.uuid4(), uuid.uuid4()
    first, second, third = (send(server_owner_url, user, title) for title in ("first", "second", "third"))
    foreign = send(server_owner_url, other, "not yours")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert ok(client.get(f"{API}/seen", headers=headers(user))) == {"seen_seq": 0, "unseen_count": 3}
        seq_before = column(server_owner_url, "seq", first)
        answer = ok(client.post(f"{API}/seen", json={"ids": [first, foreign]}, headers=headers(user)))
        assert answer["updated_count"] == 1 and answer["unseen_count"] == 2
        assert column(server_owner_url, "seq", first) == seq_before, "seen takes no new seq"
        assert column(server_owner_url, "seen_at", foreign) is None
        assert listed(client, user, "unseen") == [third, second]
        answer = ok(client.post(f"{API}/seen", headers=headers(user)))
        assert answer["updated_count"] == 2 and answer["unseen_count"] == 0 and answer["seen_seq"] > 0

        archived = ok(client.post(f"{API}/{first}/archive", headers=headers(user)))
        assert archived["id"] == first and archived["archived_at"] is not None
        assert listed(client, user) == [third, second]
        assert listed(client, user, "archived") == [first]
        assert listed(client, user, "all") == [third, second, first]
        assert ok(client.get(f"{API}/unread-count", headers=headers(user)))["count"] == 2
        assert ok(client.get(f"{API}/{first}", headers=headers(user)))["archived_at"] == archived["archived_at"]
        assert ok(client.post(f"{API}/{first}/unarchive", headers=headers(user))) == {"id": first, "archived_at": None}
        assert listed(client, user) == [third, second, first]

        until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        snoozed = ok(client.post(f"{API}/{second}/snooze", json={"until": until}, headers=headers(user)))
        assert datetime.fromisoformat(snoozed["snoozed_until"]) == datetime.fromisoformat(until)
        assert listed(client, user) == [third, first]
        assert listed(client, user, "snoozed") == [second]

        for path, body in (("archive", None), ("unarchive", None), ("snooze", {"until": until})):
            for target in (foreign, str(uuid.uuid4())):
                response = client.post(f"{API}/{target}/{path}", json=body, headers=headers(user))
                assert response.status_code == 404, (path, response.text)
        assert column(server_owner_url, "archived_at", foreign) is None
        assert column(server_owner_url, "snoozed_until", foreign) is None


# Times not in the future, and values that are no time with an offset: each a 422, nothing written.
PAST = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2025, 1, 1), timezones=st.just(UTC)).map(
    lambda at: at.isoformat()
)
NOT_A_TIME = st.one_of(
    st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(), st.text(max_size=30),
    st.datetimes(timezones=st.none()).map(lambda at: at.isoformat()),
)  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.one_of(st.tuples(st.just("past"), PAST), st.tuples(st.just("no time"), NOT_A_TIME)))
def test_a_snooze_not_in_the_future_is_a_clear_422_and_changes_nothing(
    server: ServerProcess, server_owner_url: str, case: tuple[str, Any]
) -> None:
    kind, until = case
    user = uuid.uuid4()
    target = send(server_owner_url, user, "keep me")
    response = httpx.post(
        f"{server.url}{API}/{target}/snooze", json={"until": until}, headers=headers(user), timeout=30
    )
    assert response.status_code == 422, response.text
    if kind == "past":
        assert response.json()["error"]["message"].startswith("a snooze must end in the future, got ")
    assert column(server_owner_url, "snoozed_until", target) is None
    with psycopg.connect(server_owner_url) as conn:
        wake = conn.execute(
            "SELECT count(*) FROM notify.notification_deliveries WHERE notification_id = %s AND channel = 'in_app'",
            (target,),
        ).fetchone()
    assert wake == (0,), "no wake-up was planned"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.fixed_dictionaries({"ids": st.lists(st.text(max_size=10), min_size=1, max_size=3)}),
        st.fixed_dictionaries({"ids": st.one_of(st.integers(), st.text(), st.dictionaries(st.text(), st.integers()))}),
        st.fixed_dictionaries({"ids": st.just([str(uuid.UUID(int=1))] * (MAX_SEEN_IDS + 1))}),
        st.fixed_dictionaries({"everything": st.booleans()}),
    )
)
def test_bad_ids_to_mark_seen_are_a_clear_422(server: ServerProcess, server_owner_url: str, body: Any) -> None:
    user = uuid.uuid4()
    target = send(server_owner_url, user, "unseen")
    response = httpx.post(f"{server.url}{API}/seen", json=body, headers=headers(user), timeout=30)
    assert response.status_code == 422, response.text
    assert column(server_owner_url, "seen_at", target) is None


async def changed(
    ws: Any, notification_id: str, key: str, is_set: bool, answer: str | None = None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The next notification frame of `notification_id` whose `key` is set (or not), and the `answer` event if one
    is awaited too (the answer and the hub's frame race: either comes first); other events are skipped."""
    frame: dict[str, Any] | None = None
    answered: dict[str, Any] | None = None
    while frame is None or (answer is not None and answered is None):
        event = await recv(ws)
        if event["type"] == answer:
            answered = event
        for data in notifications([event]):
            if data["id"] == notification_id and (data[key] is not None) == is_set:
                frame = data
    return frame, answered


async def test_states_sync_across_two_sessions_of_one_user(server: ServerProcess, server_owner_url: str) -> None:
    user = uuid.uuid4()
    ids = [await asyncio.to_thread(send, server_owner_url, user, f"n{i}") for i in range(3)]
    async with ws_for(server, user) as tab1, ws_for(server, user) as tab2:
        for ws in (tab1, tab2):
            events = await recv_until(ws, "unread_count")
            # Nothing marked seen yet: no seen_updated, every unread one is unseen.
            assert all(e["type"] != "seen_updated" for e in events), events
        # Seen everything: one seen_updated in each tab, and no notification is sent again.
        await tab1.send(json.dumps({"type": "mark_seen"}))
        answer = await recv_until(tab1, "seen_updated")
        assert answer[-1]["unseen_count"] == 0 and answer[-1]["seen_seq"] > 0
        synced = await recv_until(tab2, "seen_updated")
        assert notifications(synced) == [] and synced[-1]["unseen_count"] == 0
        assert synced[-1]["seen_seq"] == answer[-1]["seen_seq"]
        # A session opened later learns the badge when it resumes.
        async with ws_for(server, user) as tab3:
            events = await recv_until(tab3, "unread_count")
            assert {"type": "seen_updated", "seen_seq": answer[-1]["seen_seq"], "unseen_count": 0} in events

        # Archive in one tab: the answer there, and the changed notification in both.
        await tab1.send(json.dumps({"type": "archive", "notification_id": ids[0]}))
        frame, archived = await changed(tab1, ids[0], "archived_at", True, answer="archived")
        assert archived == {"type": "archived", "notification_id": ids[0], "archived_at": frame["archived_at"]}
        assert (await changed(tab2, ids[0], "archived_at", True))[0]["seq"] == frame["seq"]

        await tab2.send(json.dumps({"type": "unarchive", "notification_id": ids[0]}))
        frame, unarchived = await changed(tab2, ids[0], "archived_at", False, answer="unarchived")
        assert unarchived == {"type": "unarchived", "notification_id": ids[0]}
        assert (await changed(tab1, ids[0], "archived_at", False))[0]["seq"] == frame["seq"]

        until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        await tab1.send(json.dumps({"type": "snooze", "notification_id": ids[1], "until": until}))
        frame, snoozed = await changed(tab1, ids[1], "snoozed_until", True, answer="snoozed")
        # The answer writes the time exactly as the frame does (a time ending in zeros once differed).
        assert snoozed == {"type": "snoozed", "notification_id": ids[1], "snoozed_until": frame["snoozed_until"]}
        assert datetime.fromisoformat(frame["snoozed_until"]) == datetime.fromisoformat(until)
        assert (await changed(tab2, ids[1], "snoozed_until", True))[0]["seq"] == frame["seq"]

        # Bad commands: a clear error each, the session stays.
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        for command, code in (
            ({"type": "snooze", "notification_id": ids[2], "until": past}, "INVALID_MESSAGE"),
            ({"type": "snooze", "notification_id": ids[2], "until": "tomorrow"}, "INVALID_MESSAGE"),
            ({"type": "archive", "notification_id": str(uuid.uuid4())}, "NOT_FOUND"),
            ({"type": "archive", "notification_id": "nope"}, "INVALID_MESSAGE"),
            ({"type": "mark_seen", "notification_ids": "all"}, "INVALID_MESSAGE"),
            ({"type": "mark_seen", "notification_ids": ["nope"]}, "INVALID_MESSAGE"),
        ):
            await tab1.send(json.dumps(command))
            error = await recv_until(tab1, "error")
            assert error[-1]["code"] == code, (command, error)
        assert column(server_owner_url, "snoozed_until", ids[2]) is None
        await tab1.send(json.dumps({"type": "ping"}))
        assert (await recv_until(tab1, "pong"))[-1]["type"] == "pong"


async def test_a_snoozed_notification_comes_back_as_new_at_its_time(
    own_server: Any, own_worker: Any, db: psycopg.Connection[Any]
) -> None:
    server: ServerProcess = own_server()
    own_worker()
    user = uuid.uuid4()
    owner = database_url(db, login=False)
    target = await asyncio.to_thread(send, owner, user, "later", channels=["in_app"])
    async with ws_for(server, user) as ws:
        await settle(ws)
        await ws.send(json.dumps({"type": "mark_seen"}))
        await recv_until(ws, "seen_updated")
        first_seq = column(owner, "seq", target)
        until = datetime.now(UTC) + timedelta(seconds=2)
        await ws.send(json.dumps({"type": "snooze", "notification_id": target, "until": until.isoformat()}))
        await recv_until(ws, "snoozed")
        # The snooze itself, then, at its time, the notification again: new seq, unseen, unread, not snoozed.
        woke: dict[str, Any] = {}
        while not woke:
            for data in notifications([await recv(ws, timeout=30)]):
                if data["snoozed_until"] is None:
                    woke = data
        assert woke["id"] == target and woke["seq"] > first_seq
        assert woke["seen_at"] is None and woke["read_at"] is None
        assert datetime.now(UTC) >= until
    wait_for(lambda: column(owner, "snoozed_until", target) is None, what="the row woken")


async def test_a_stream_gets_seen_updated_when_another_session_marks_seen(
    server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    await asyncio.to_thread(send, server_owner_url, user, "seen elsewhere")
    async with stream_for(server, user) as stream, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        await stream.until("unread_count")
        answer = (await client.post(f"{API}/seen", headers=headers(user))).json()
        events = await stream.until("seen_updated")
        assert sse_data(events[-1]) == {
            "type": "seen_updated", "seen_seq": answer["seen_seq"], "unseen_count": 0,
        }  # fmt: skip
        assert [e for e in events if e.get("event") == "notification"] == [], "nothing is sent again"
