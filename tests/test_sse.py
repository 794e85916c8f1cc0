"""GET /api/v1/notifications/stream: the WebSocket's events and resume as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest

from tests.server import ServerProcess, make_token
from tests.test_realtime import send

PATH = "/api/v1/notifications/stream"
EVENT_TIMEOUT = 5.0


class Sse:
    """A tiny SSE parser: a background reader turns the body into field dicts; None marks the end."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.events: asyncio.Queue[dict[str, str] | None] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            async for line in self.response.aiter_lines():
                if line:
                    name, _, value = line.partition(":")
                    fields[name or "comment"] = value.removeprefix(" ")
                elif fields:
                    await self.events.put(fields)
                    fields = {}
        except httpx.HTTPError:
            pass
        await self.events.put(None)

    async def next(self, timeout: float = EVENT_TIMEOUT) -> dict[str, str] | None:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def until(self, kind: str, timeout: float = EVENT_TIMEOUT) -> list[dict[str, str]]:
        """Events up to and including the first of `kind`."""
        seen: list[dict[str, str]] = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                assert event is not None, f"the stream ended before {kind}: {seen}"
                seen.append(event)
                if event.get("event") == kind:
                    return seen

    async def quiet(self, seconds: float = 0.5) -> list[dict[str, str]]:
        got: list[dict[str, str]] = []
        try:
            while True:
                event = await self.next(seconds)
                assert event is not None
                got.append(event)
        except TimeoutError:
            return got


def data(event: dict[str, str]) -> Any:
    return json.loads(event["data"])


def notifications(events: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The notifications' data, each checked to carry its seq as the event id."""
    found = [data(e) for e in events if e.get("event") == "notification"]
    ids = [e["id"] for e in events if e.get("event") == "notification"]
    assert ids == [str(n["seq"]) for n in found]
    return found


@asynccontextmanager
async def stream_for(
    server: ServerProcess, user: uuid.UUID, query: str = "", headers: dict[str, str] | None = None
) -> AsyncIterator[Sse]:
    """A stream authenticated by ?token= (the EventSource way), past `retry:`, with its first unread_count."""
    params = "&".join(p for p in (f"token={make_token(user)}", query) if p)
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream("GET", f"{PATH}?{params}", headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        sse = Sse(response)
        assert await sse.next() == {"retry": "3000"}
        yield sse
        sse.reader.cancel()


async def test_live_events_carry_seq_ids_and_reach_only_their_user(
    server: ServerProcess, server_owner_url: str
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream("GET", PATH, headers={"Authorization": f"Bearer {make_token(bob)}"}) as by_header,
        stream_for(server, alice) as stream,
    ):
        assert by_header.status_code == 200
        assert by_header.headers["content-type"].startswith("text/event-stream")
        assert by_header.headers["cache-control"] == "no-store"
        assert by_header.headers["x-accel-buffering"] == "no"
        other = Sse(by_header)
        assert await other.next() == {"retry": "3000"}
        for sse in (stream, other):
            [first] = await sse.until("unread_count")
            assert data(first) == {"type": "unread_count", "count": 0, "by_type": {}}
        nid = await asyncio.to_thread(send, server_owner_url, alice, "New task")
        events = await stream.until("unread_count")
        [note] = notifications(events)
        assert note["id"] == nid and note["title"] == "New task" and note["read_at"] is None
        assert data(events[-1]) == {"type": "unread_count", "count": 1, "by_type": {"task": 1}}
        assert "id" not in events[-1]
        assert await other.quiet() == []
        other.reader.cancel()


async def test_read_via_rest_sends_read_status_and_the_notification_with_a_new_seq(
    server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    nid = await asyncio.to_thread(send, server_owner_url, user, "to read")
    async with stream_for(server, user) as stream, httpx.AsyncClient(base_url=server.url) as client:
        await stream.until("unread_count")
        before = (await client.get(f"/api/v1/notifications/{nid}", headers=auth(user))).json()
        response = await client.patch(f"/api/v1/notifications/{nid}/read", headers=auth(user))
        assert response.status_code == 200, response.text
        events = await stream.until("read_status_updated")
        [again] = notifications(events)
        assert again["id"] == nid and again["read_at"] is not None and again["seq"] > before["seq"]
        read = data(events[-1])
        assert read["type"] == "read_status_updated" and "id" not in events[-1]
        assert read["notification_id"] == nid and read["unread_count"] == 0 and read["read_at"]


async def test_a_compact_stream_sends_the_count_inside_the_notification_event(
    server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    async with stream_for(server, user, "compact=1") as stream:
        [first] = await stream.until("unread_count")
        assert data(first) == {"type": "unread_count", "count": 0, "by_type": {}}
        nid = await asyncio.to_thread(send, server_owner_url, user, "compact")
        [event] = await stream.until("notification")
        message = data(event)
        assert message["type"] == "notification" and message["data"]["id"] == nid
        assert event["id"] == str(message["data"]["seq"])
        assert message["unread_count"] == 1 and message["unread_by_type"] == {"task": 1}
        assert await stream.quiet() == []


async def test_compact_must_be_a_boolean(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        for bad in ("maybe", "2", "-1"):
            response = await client.get(PATH, params={"compact": bad}, headers=auth(uuid.uuid4()))
            assert response.status_code == 422, (bad, response.text)
            # Without credentials the answer is 401 whatever the query holds: nothing is checked before them.
            anonymous = await client.get(PATH, params={"compact": bad, "after": "x"})
            assert anonymous.status_code == 401, (bad, anonymous.text)


def auth(user: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


async def test_resume_by_last_event_id_or_after_replays_the_missed_in_order_then_live(
    server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    seen = await asyncio.to_thread(send, server_owner_url, user, "seen")
    async with stream_for(server, user, "after=0") as stream:
        [note] = notifications(await stream.until("resumed"))
        assert note["id"] == seen
        last_id = str(note["seq"])
    missed = [await asyncio.to_thread(send, server_owner_url, user, f"missed {i}") for i in range(3)]
    # EventSource keeps its URL on reconnect: the Last-Event-ID header wins over ?after=.
    async with stream_for(server, user, "after=0", {"Last-Event-ID": last_id}) as stream:
        events = await stream.until("resumed")
        replayed = notifications(events)
        assert [n["id"] for n in replayed] == missed
        assert [n["seq"] for n in replayed] == sorted(n["seq"] for n in replayed)
        assert data(events[-1]) == {"type": "resumed", "count": 3}
        live = await asyncio.to_thread(send, server_owner_url, user, "live")
        assert [n["id"] for n in notifications(await stream.until("notification"))] == [live]
    async with stream_for(server, user, f"after={missed[0]}") as stream:
        events = await stream.until("resumed")
        assert [n["id"] for n in notifications(events)] == [*missed[1:], live]
        assert data(events[-1]) == {"type": "resumed", "count": 3}


def flood(url: str, user: uuid.UUID, rows: int) -> None:
    """One statement of `rows` critical notifications (critical: the in-app rate limit does not hold them)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE notify_service")
        conn.execute(
            "INSERT INTO notify.notifications (user_id, type, title, body, priority) "
            "SELECT %s, 'system', 'bulk ' || i, 'x', 'critical' FROM generate_series(1, %s) AS i",
            (user, rows),
        )


async def test_a_stream_whose_queue_overflows_ends_and_resumes_by_last_event_id(
    server: ServerProcess, server_owner_url: str
) -> None:
    user, rows = uuid.uuid4(), 2100  # one wake-up with more events than a session's queue holds
    marker = await asyncio.to_thread(send, server_owner_url, user, "before")
    async with stream_for(server, user, "after=0") as stream:
        [seen] = notifications(await stream.until("resumed"))
        assert seen["id"] == marker
        await stream.until("unread_count")
        await asyncio.to_thread(flood, server_owner_url, user, rows)
        events: list[dict[str, str]] = []
        while (event := await stream.next(10)) is not None:
            events.append(event)
    got = notifications(events)
    # Disconnected like a WebSocket closed 1013: no error event, just the end, before everything came.
    assert len(got) == len(events) < rows
    last_id = str(max([seen["seq"], *(n["seq"] for n in got)]))
    async with stream_for(server, user, headers={"Last-Event-ID": last_id}) as stream:
        events = await stream.until("resumed", timeout=30)
    replayed = notifications(events)
    assert data(events[-1]) == {"type": "resumed", "count": rows - len(got)}
    titles = [n["title"] for n in got + replayed]
    assert sorted(titles) == sorted(f"bulk {i}" for i in range(1, rows + 1))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("url", "headers", "status", "code"),
    [
        pytest.param(PATH, {}, 401, "UNAUTHORIZED", id="no-token"),
        pytest.param(f"{PATH}?token=not-a-jwt", {}, 401, "UNAUTHORIZED", id="garbage-query-token"),
        pytest.param(PATH, _bearer(make_token(uuid.uuid4(), exp_in=-120)), 401, "UNAUTHORIZED", id="expired"),
        pytest.param(f"{PATH}?token={make_token('svc', role='service')}", {}, 403, "FORBIDDEN", id="service"),
        pytest.param(PATH, {**_bearer(make_token(uuid.uuid4())), "Last-Event-ID": "x"}, 422, None, id="bad-resume"),
    ],
)
async def test_refusals_are_json_before_any_event(
    server: ServerProcess, url: str, headers: dict[str, str], status: int, code: str | None
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.get(url, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and (code is None or error["code"] == code)


async def test_an_expiring_token_ends_the_stream_with_auth_failed(server: ServerProcess) -> None:
    user = uuid.uuid4()
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream("GET", PATH, headers=_bearer(make_token(user, exp_in=2))) as response,
    ):
        sse = Sse(response)
        events = await sse.until("error", timeout=8)
        assert data(events[-1]) == {"type": "error", "code": "AUTH_FAILED", "message": "token expired"}
        assert await sse.next() is None


async def test_a_heartbeat_comment_keeps_an_idle_stream_open(own_server: Callable[..., ServerProcess]) -> None:
    server = own_server(WS_HEARTBEAT_INTERVAL="1")
    async with stream_for(server, uuid.uuid4()) as stream:
        await stream.until("unread_count")
        assert [await stream.next(3), await stream.next(3)] == [{"comment": "ping"}] * 2


async def test_a_shutting_down_server_ends_its_streams_at_once(own_server: Callable[..., ServerProcess]) -> None:
    server = own_server()
    async with stream_for(server, uuid.uuid4()) as stream:
        await stream.until("unread_count")
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        took = time.monotonic() - started
        assert await stream.next() is None
    # uvicorn waits its grace period (5 s) for responses that are still streaming.
    assert took < 2, f"stopping took {took:.1f} s"
