"""GET /api/v1/admin/activity/stream on a real notifyd and PostgreSQL: a DBA sees every org's sends live (woken by
NOTIFY, before the hub's poll), an org admin only their org's (RLS is the only org filter), delivery statuses as
they move, resume by Last-Event-ID without a lost row, and refusals and bad filters as 4xx before any event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import psycopg
import pytest

from notifyd.db.pool import become
from notifyd.db.queries import query
from notifyd.realtime.admin import ACTIVITY_LIMIT
from notifyd.realtime.hub import MAX_WATCHERS, POLL_INTERVAL
from tests.conftest import database_url, service_conn
from tests.server import ServerProcess, make_token
from tests.test_console_api import dead_letter, member
from tests.test_email import send
from tests.test_sse import Sse, data

PATH = "/api/v1/admin/activity/stream"


@pytest.fixture
def service(db: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    conn = service_conn(db)
    yield conn
    conn.close()


def admin_token(org: uuid.UUID | None = None) -> str:
    claims: dict[str, Any] = {"org_id": str(org)} if org else {}
    return make_token("ops", role="admin", **claims)


@dataclass
class Opened:
    """An admin stream past its first read: the rows that read sent, and the event id it ended with."""

    sse: Sse
    replayed: list[dict[str, Any]]
    event_id: str


@asynccontextmanager
async def admin_stream(
    server: ServerProcess, token: str, query_string: str = "", last_event_id: str | None = None
) -> AsyncIterator[Opened]:
    """A stream by the Authorization header, past `retry:` and its first read."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream("GET", f"{PATH}?{query_string}", headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        sse = Sse(response)
        assert await sse.next() == {"retry": "3000"}
        # The first read: its rows, its checkpoint (an id alone), then `resumed` with its count.
        events = await sse.until("resumed")
        [checkpoint] = [e for e in events if set(e) == {"id"}]
        replayed = [data(e) for e in events if e.get("event") == "activity"]
        assert data(events[-1]) == {"type": "resumed", "count": len(replayed)}
        yield Opened(sse, replayed, checkpoint["id"])
        sse.reader.cancel()


async def rows_until(sse: Sse, wanted: set[str], timeout: float = 5.0) -> list[dict[str, Any]]:
    """The activity rows sent until every id in `wanted` came."""
    rows: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not wanted <= {row["id"] for row in rows}:
            event = await sse.next(timeout)
            assert event is not None, f"the stream ended: {rows}"
            if event.get("event") == "activity":
                rows.append(data(event))
    return rows


def orgs_and_members(service: psycopg.Connection[Any]) -> tuple[dict[str, uuid.UUID], dict[str, uuid.UUID]]:
    orgs = {"a": uuid.uuid4(), "b": uuid.uuid4()}
    return orgs, {name: member(service, org) for name, org in orgs.items()}


async def test_a_dba_sees_every_org_live_and_an_org_admin_only_theirs(
    own_server: Any, service: psycopg.Connection[Any]
) -> None:
    server: ServerProcess = own_server()
    orgs, users = orgs_and_members(service)
    async with (
        admin_stream(server, admin_token()) as dba_stream,
        admin_stream(server, admin_token(orgs["a"])) as org_a_stream,
    ):
        dba, org_a = dba_stream.sse, org_a_stream.sse
        # Each stream's first read just ended: the hub's next poll of them is POLL_INTERVAL away at the earliest.
        read_at = time.monotonic()
        sent_b = str(await asyncio.to_thread(send, service, users["b"], title="for b"))
        sent_a = str(await asyncio.to_thread(send, service, users["a"], title="for a"))
        rows = await rows_until(dba, {sent_a, sent_b})
        took = time.monotonic() - read_at
        assert took < POLL_INTERVAL - 0.5, f"came after {took:.1f} s: by the hub's poll, not its NOTIFY"
        by_id = {row["id"]: row for row in rows}
        assert by_id[sent_a]["user_id"] == str(users["a"]) and by_id[sent_a]["title"] == "for a"
        assert by_id[sent_a]["type"] == "task" and by_id[sent_a]["priority"] == "critical"
        assert by_id[sent_a]["channels"]["email"] == "pending" and "created_at" in by_id[sent_a]
        checkpoint = await dba.next()
        assert checkpoint is not None and set(checkpoint) == {"id"}

        mine = await rows_until(org_a, {sent_a})
        # B's send committed first: had RLS let it through, it would have come in the same read or before.
        mine += [data(e) for e in await org_a.quiet(1.0) if e.get("event") == "activity"]
        assert {row["id"] for row in mine} == {sent_a}


async def test_rls_alone_keeps_an_org_admin_to_their_org(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any]
) -> None:
    """The stream's query names no org: run as org A's admin, neither B's change nor B's watched id comes back."""
    orgs, users = orgs_and_members(service)
    before = db.execute("SELECT pg_current_snapshot()::text").fetchone()
    assert before is not None
    sent = {name: send(service, user) for name, user in users.items()}
    conn = await asyncpg.connect(database_url(db, login=True))
    try:
        async with conn.transaction():
            await become(conn, "notify_admin", {"sub": "ops", "role": "admin", "org_id": str(orgs["a"])})
            rows = await conn.fetch(
                query("admin_activity"), before[0], None, None, None, None, ACTIVITY_LIMIT, [sent["b"]]
            )
    finally:
        await conn.close()
    assert [(row["changed"], row["id"]) for row in rows] == [(True, sent["a"])]
    assert json.loads(rows[0]["row"])["user_id"] == str(users["a"])


async def test_a_delivery_that_moves_is_sent_again_without_a_notify(
    own_server: Any, db: psycopg.Connection[Any], service: psycopg.Connection[Any]
) -> None:
    server: ServerProcess = own_server()
    _, users = orgs_and_members(service)
    async with admin_stream(server, admin_token()) as opened:
        dba = opened.sse
        sent = await asyncio.to_thread(send, service, users["a"])
        [row] = await rows_until(dba, {str(sent)})
        assert row["channels"]["email"] == "pending"
        # As the worker records a dead letter: the delivery row changes, no notification does (no NOTIFY).
        await asyncio.to_thread(dead_letter, db, sent, "503 from the provider")
        again = await rows_until(dba, {str(sent)}, timeout=POLL_INTERVAL + 3)
        assert [r["channels"]["email"] for r in again] == ["failed"]
        # Every channel has settled or is in-app's "sent": nothing more is sent of it while nothing changes.
        assert [e for e in await dba.quiet(POLL_INTERVAL + 0.5) if e.get("event") == "activity"] == []


async def test_a_reconnect_with_last_event_id_misses_nothing(own_server: Any, service: psycopg.Connection[Any]) -> None:
    server: ServerProcess = own_server()
    _, users = orgs_and_members(service)
    token = admin_token()
    async with admin_stream(server, token, f"user_id={users['a']}") as left:
        pass
    missed = [str(await asyncio.to_thread(send, service, users["a"], title=f"missed {n}")) for n in range(3)]
    async with admin_stream(server, token, f"user_id={users['a']}", last_event_id=left.event_id) as again:
        assert [row["id"] for row in again.replayed] == missed
        assert [row["title"] for row in again.replayed] == ["missed 0", "missed 1", "missed 2"]
    # ?after= for clients that cannot set the header; without either, a stream starts from now.
    async with admin_stream(server, token, f"user_id={users['a']}&after={left.event_id}") as again:
        assert [row["id"] for row in again.replayed] == missed
    async with admin_stream(server, token, f"user_id={users['a']}") as fresh:
        assert fresh.replayed == []


async def test_more_changes_than_one_read_sends_make_a_reset_then_the_stream_goes_on(
    own_server: Any, service: psycopg.Connection[Any]
) -> None:
    server: ServerProcess = own_server()
    _, users = orgs_and_members(service)
    many = [uuid.uuid4() for _ in range(ACTIVITY_LIMIT + 1)]
    async with admin_stream(server, admin_token()) as opened:
        await asyncio.to_thread(
            service.execute, "SELECT notify.send_bulk(%s::uuid[], 'system', 'To all', channels => '{in_app}')", (many,)
        )
        events = await opened.sse.until("reset")
        assert [e for e in events if e.get("event") == "activity"] == []
        assert data(events[-1])["type"] == "reset"
        checkpoint = await opened.sse.next()
        assert checkpoint is not None and set(checkpoint) == {"id"} and checkpoint["id"] != opened.event_id
        after = str(await asyncio.to_thread(send, service, users["a"], title="after the reset"))
        assert [row["id"] for row in await rows_until(opened.sse, {after})] == [after]


async def test_the_filters_narrow_the_stream(own_server: Any, service: psycopg.Connection[Any]) -> None:
    server: ServerProcess = own_server()
    _, users = orgs_and_members(service)
    token = admin_token()
    async with (
        admin_stream(server, token, f"user_id={users['a']}&priority=low") as low_stream,
        admin_stream(server, token, f"user_id={users['a']}&type=system&channel=email") as system_stream,
    ):
        low, system = low_stream.sse, system_stream.sse
        critical = str(await asyncio.to_thread(send, service, users["a"]))
        calm = str(await asyncio.to_thread(send, service, users["a"], priority="low", title="calm"))
        rows = await rows_until(low, {calm})
        assert critical not in {row["id"] for row in rows}
        assert [e for e in await system.quiet(1.0) if e.get("event") == "activity"] == []


async def test_refusals_and_bad_input_are_4xx_before_any_event(server: ServerProcess) -> None:
    user = make_token(uuid.uuid4())
    service = make_token("billing", role="service")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        assert (await client.get(PATH)).status_code == 401
        for refused in (
            await client.get(PATH, headers={"Authorization": f"Bearer {user}"}),
            await client.get(PATH, params={"token": user}),
            await client.get(PATH, headers={"Authorization": f"Bearer {service}"}),
        ):
            assert refused.status_code == 403 and "for admins" in refused.json()["error"]["message"]
        dba = {"Authorization": f"Bearer {admin_token()}"}
        for params in (
            {"priority": "urgent"},
            {"type": "Not A Type"},
            {"user_id": "nobody"},
            {"channel": "fax"},
            {"status": "failed"},  # a status changes as a delivery goes: the client filters by it
            {"after": "yesterday"},
            {"after": "10:5:"},  # digits, but no snapshot: xmin after xmax
            {"after": "5:10:3"},  # an in-progress xid below xmin
        ):
            answer = await client.get(PATH, params=params, headers=dba)
            assert answer.status_code == 422, (params, answer.text)
            assert answer.headers["content-type"] == "application/json"
        bad_header = await client.get(PATH, headers={**dba, "Last-Event-ID": "1:2:3:4"})
        assert bad_header.status_code == 422


async def test_an_expiring_token_ends_the_stream_with_auth_failed(server: ServerProcess) -> None:
    async with admin_stream(server, make_token("ops", role="admin", exp_in=2)) as opened:
        [ended] = await opened.sse.until("error", timeout=6)
        assert data(ended) == {"type": "error", "code": "AUTH_FAILED", "message": "token expired"}
        assert await opened.sse.next() is None


async def test_a_process_takes_at_most_max_watchers_admin_streams(own_server: Any) -> None:
    # A ping a second keeps the first streams within the clients' read timeout while the others open.
    server: ServerProcess = own_server(WS_HEARTBEAT_INTERVAL="1")
    token = admin_token()
    async with contextlib.AsyncExitStack() as streams:
        for _ in range(MAX_WATCHERS):
            await streams.enter_async_context(admin_stream(server, token))
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            refused = await client.get(PATH, headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"
            assert "admin activity streams open" in refused.json()["error"]["message"]
    # Closed streams free their places.
    async with admin_stream(server, token) as opened:
        assert opened.replayed == []
