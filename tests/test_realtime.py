"""The WebSocket protocol (docs/browser.md) against a real notifyd, a real database and a real client."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from psycopg.types.json import Jsonb
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from notifyd.core.config import Settings
from notifyd.server import Server, config
from tests.conftest import database_url
from tests.figures import report
from tests.server import JWT_SECRET, ServerProcess, free_port, make_token

EVENT_TIMEOUT = 5.0


def send(url: str, user: uuid.UUID, title: str = "hello", **kwargs: Any) -> str:
    """notify.send as notify_service; returns the notification id."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE notify_service")
        args = ", ".join(f"{k} => %({k})s" for k in kwargs)
        row = conn.execute(
            f"SELECT notify.send(%(user)s, 'task', %(title)s{', ' + args if args else ''})",
            {"user": user, "title": title, **kwargs},
        ).fetchone()
        assert row is not None
        return str(row[0])


@asynccontextmanager
async def ws_for(
    server: ServerProcess, user: uuid.UUID | None = None, query: str = "", **kw: Any
) -> AsyncIterator[ClientConnection]:
    """A socket authenticated by ?token= (or unauthenticated when user is None), past `authenticated`."""
    url = server.ws_url
    params = []
    if user is not None:
        params.append(f"token={make_token(user)}")
    if query:
        params.append(query)
    if params:
        url += "?" + "&".join(params)
    async with connect(url, compression=None, **kw) as ws:
        if user is not None:
            first = await recv(ws)
            assert first == {"type": "authenticated", "user_id": str(user)}
        yield ws


async def recv(ws: ClientConnection, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[no-any-return]


async def recv_until(ws: ClientConnection, kind: str, timeout: float = EVENT_TIMEOUT) -> list[dict[str, Any]]:
    """Events up to and including the first of `kind`."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        event = await recv(ws, max(0.01, deadline - time.monotonic()))
        seen.append(event)
        if event["type"] == kind:
            return seen


async def quiet(ws: ClientConnection, seconds: float = 0.5) -> list[dict[str, Any]]:
    """Whatever arrives within `seconds` (expected: nothing of interest)."""
    got = []
    try:
        while True:
            got.append(await recv(ws, seconds))
    except TimeoutError:
        return got


async def closed_with(ws: ClientConnection, timeout: float = 10) -> tuple[int | None, list[dict[str, Any]]]:
    """Reads until the server closes; the close code and what came before it."""
    got = []
    try:
        async with asyncio.timeout(timeout):
            async for message in ws:
                got.append(json.loads(message))
    except ConnectionClosed:
        pass
    assert ws.close_code is not None, "the server did not close the socket"
    return ws.close_code, got


def notifications(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == "notification"]


async def settle(ws: ClientConnection) -> None:
    """Past the unread_count every new session gets, so later reads see only new events."""
    await recv_until(ws, "unread_count")


async def test_a_notification_reaches_every_session_of_its_user_and_no_one_else(
    server: ServerProcess, server_owner_url: str
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with ws_for(server, alice) as tab1, ws_for(server, alice) as tab2, ws_for(server, bob) as other:
        for ws in (tab1, tab2, other):
            await settle(ws)
        nid = await asyncio.to_thread(send, server_owner_url, alice, "New task", data=Jsonb({"action_url": "/t/1"}))
        for ws in (tab1, tab2):
            events = await recv_until(ws, "unread_count")
            [data] = notifications(events)
            assert data["id"] == nid and data["title"] == "New task" and data["type"] == "task"
            assert data["data"] == {"action_url": "/t/1"} and data["read_at"] is None
            assert isinstance(data["seq"], int) and data["seq"] >= 1
            assert "user_id" not in data and "changed_xid" not in data
            assert events[-1] == {"type": "unread_count", "count": 1, "by_type": {"task": 1}}
        assert await quiet(other) == []


async def test_read_in_one_tab_updates_the_other(server: ServerProcess, server_owner_url: str) -> None:
    user = uuid.uuid4()
    async with ws_for(server, user) as tab1, ws_for(server, user) as tab2:
        await settle(tab1)
        await settle(tab2)
        nid = await asyncio.to_thread(send, server_owner_url, user, "read me")
        first_seq = notifications(await recv_until(tab1, "unread_count"))[0]["seq"]
        await recv_until(tab2, "unread_count")
        await tab1.send(json.dumps({"type": "mark_read", "notification_id": nid}))
        # The answer and the hub's fan-out of the change race (both follow the commit): either comes first.
        asked: list[dict[str, Any]] = []
        types: list[str] = []
        while not ("read_status_updated" in types and "unread_count" in types[types.index("notification") :]
                   if "notification" in types else False):  # fmt: skip
            asked.append(await recv(tab1))
            types.append(asked[-1]["type"])
        [answer] = [e for e in asked if e["type"] == "read_status_updated"]
        assert answer["notification_id"] == nid and answer["read_at"] and answer["unread_count"] == 0
        events = await recv_until(tab2, "unread_count")
        [changed] = notifications(events)
        assert changed["id"] == nid and changed["seq"] > first_seq and changed["read_at"] is not None
        statuses = [e for e in events if e["type"] == "read_status_updated"]
        assert statuses == [
            {"type": "read_status_updated", "notification_id": nid, "read_at": changed["read_at"], "unread_count": 0}
        ]
        assert events[-1] == {"type": "unread_count", "count": 0, "by_type": {}}
        # The tab that asked got its answer directly and is not told twice; it sees the change once.
        assert sorted(e["type"] for e in asked) == ["notification", "read_status_updated", "unread_count"], asked


async def test_mark_read_of_another_users_notification_is_not_found(
    server: ServerProcess, server_owner_url: str
) -> None:
    owner, intruder = uuid.uuid4(), uuid.uuid4()
    nid = await asyncio.to_thread(send, server_owner_url, owner, "private")
    async with ws_for(server, intruder) as ws:
        await settle(ws)
        for target in (nid, str(uuid.uuid4())):
            await ws.send(json.dumps({"type": "mark_read", "notification_id": target}))
            error = await recv(ws)
            assert error["type"] == "error" and error["code"] == "NOT_FOUND"
    with psycopg.connect(server_owner_url) as conn:
        row = conn.execute("SELECT read_at FROM notify.notifications WHERE id = %s", (nid,)).fetchone()
        assert row == (None,)


async def test_ping_pong_and_invalid_messages(server: ServerProcess) -> None:
    async with ws_for(server, uuid.uuid4()) as ws:
        await settle(ws)
        await ws.send(json.dumps({"type": "ping"}))
        pong = await recv(ws)
        assert pong["type"] == "pong"
        assert abs(datetime.fromisoformat(pong["timestamp"]).timestamp() - time.time()) < 5
        for bad in ("{not json", "[1, 2]", json.dumps({"type": "dance"}), json.dumps({"no": "type"})):
            await ws.send(bad)
            error = await recv(ws)
            assert error["type"] == "error" and error["code"] == "INVALID_MESSAGE", bad
        await ws.send(json.dumps({"type": "mark_read", "notification_id": "not-a-uuid"}))
        assert (await recv(ws))["code"] == "INVALID_MESSAGE"
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv(ws))["type"] == "pong", "the connection stays open after bad messages"


async def test_authenticate_by_first_message(server: ServerProcess, server_owner_url: str) -> None:
    user = uuid.uuid4()
    async with ws_for(server) as ws:
        await ws.send(json.dumps({"type": "authenticate", "token": make_token(user)}))
        assert await recv(ws) == {"type": "authenticated", "user_id": str(user)}
        await settle(ws)
        nid = await asyncio.to_thread(send, server_owner_url, user)
        assert notifications(await recv_until(ws, "notification"))[0]["id"] == nid


def _alg_none(user: uuid.UUID) -> str:
    return jwt.encode({"sub": str(user), "exp": int(time.time()) + 600}, "", algorithm="none")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("not-a-jwt", id="malformed"),
        pytest.param(make_token(uuid.uuid4(), secret="another-secret-of-enough-length-for-hs256"), id="signature"),
        pytest.param(make_token(uuid.uuid4(), exp_in=-120), id="expired"),
        pytest.param(_alg_none(uuid.uuid4()), id="alg-none"),
        pytest.param(make_token("billing", role="service"), id="service-role"),
        pytest.param(make_token(uuid.uuid4(), role="admin"), id="admin-role"),
        pytest.param(make_token("not-a-uuid"), id="sub-not-uuid"),
    ],
)
@pytest.mark.parametrize("how", ["query", "message"])
async def test_bad_tokens_fail_with_4001(server: ServerProcess, token: str, how: str) -> None:
    if how == "query":
        ws_cm = connect(f"{server.ws_url}?token={token}", compression=None)
    else:
        ws_cm = connect(server.ws_url, compression=None)
    async with ws_cm as ws:
        if how == "message":
            await ws.send(json.dumps({"type": "authenticate", "token": token}))
        code, events = await closed_with(ws)
    assert code == 4001
    assert len(events) == 1 and events[0]["type"] == "error" and events[0]["code"] == "AUTH_FAILED"


async def test_no_authentication_within_5_seconds_fails(server: ServerProcess) -> None:
    async with connect(server.ws_url, compression=None) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv(ws))["code"] == "INVALID_MESSAGE"  # nothing but authenticate before auth
        started = time.monotonic()
        code, events = await closed_with(ws)
    assert code == 4001 and [e["code"] for e in events] == ["AUTH_FAILED"]
    assert 3 < time.monotonic() - started < 8


async def test_token_expiring_while_connected_closes_4001(server: ServerProcess) -> None:
    user = uuid.uuid4()
    token = make_token(user, exp_in=2)
    async with connect(f"{server.ws_url}?token={token}", compression=None) as ws:
        assert (await recv(ws))["type"] == "authenticated"
        code, events = await closed_with(ws)
    assert code == 4001
    assert events[-1]["type"] == "error" and events[-1]["code"] == "AUTH_FAILED"


async def test_a_fresh_token_extends_the_session_and_another_users_ends_it(server: ServerProcess) -> None:
    user = uuid.uuid4()
    async with connect(f"{server.ws_url}?token={make_token(user, exp_in=2)}", compression=None) as ws:
        assert (await recv(ws))["type"] == "authenticated"
        await ws.send(json.dumps({"type": "authenticate", "token": make_token(user)}))
        await recv_until(ws, "authenticated")
        await asyncio.sleep(3)  # past the first token's exp
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_until(ws, "pong"))[-1]["type"] == "pong"
        await ws.send(json.dumps({"type": "authenticate", "token": make_token(uuid.uuid4())}))
        code, events = await closed_with(ws)
    assert code == 4001 and events[-1]["code"] == "AUTH_FAILED"


async def test_oversize_message_closes_1009(server: ServerProcess) -> None:
    async with ws_for(server, uuid.uuid4()) as ws:
        await settle(ws)
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 5000}))
        code, _ = await closed_with(ws)
    assert code == 1009


async def test_rate_limit_refuses_then_closes_a_flood(server: ServerProcess) -> None:
    async with ws_for(server, uuid.uuid4()) as ws:
        await settle(ws)
        for _ in range(15):
            await ws.send(json.dumps({"type": "ping"}))
        answers = [await recv(ws) for _ in range(15)]
        kinds = [a["type"] if a["type"] == "pong" else a["code"] for a in answers]
        assert kinds.count("pong") >= 10 and "RATE_LIMITED" in kinds
        await asyncio.sleep(1.5)  # the bucket refills: still open, served again
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv(ws))["type"] == "pong"
        try:
            for _ in range(200):
                await ws.send(json.dumps({"type": "ping"}))
        except ConnectionClosed:
            pass
        code, _ = await closed_with(ws)
    assert code == 1008


async def test_resume_by_seq_and_by_id_sends_the_gap_in_order_then_live(
    server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    ids = [await asyncio.to_thread(send, server_owner_url, user, f"n{i}") for i in range(5)]
    async with ws_for(server, user) as ws:
        await settle(ws)
        await ws.send(json.dumps({"type": "resume", "after": 0}))
        events = await recv_until(ws, "resumed")
        got = notifications(events)
        assert [n["id"] for n in got] == ids and [n["seq"] for n in got] == sorted(n["seq"] for n in got)
        assert events[-1] == {"type": "resumed", "count": 5}
        await recv_until(ws, "unread_count")
        # What this connection already sent is not sent again: a point inside it replays nothing.
        await ws.send(json.dumps({"type": "resume", "after": ids[2]}))
        # (an unread_count may come first: the hub's wake-up for the five sends can be late under load)
        replay = [e for e in await recv_until(ws, "resumed") if e["type"] != "unread_count"]
        assert replay == [{"type": "resumed", "count": 0}]
        await recv_until(ws, "unread_count")
        live = await asyncio.to_thread(send, server_owner_url, user, "live")
        assert [n["id"] for n in notifications(await recv_until(ws, "unread_count"))] == [live]
        await ws.send(json.dumps({"type": "resume", "after": str(uuid.uuid4())}))
        assert (await recv(ws))["code"] == "NOT_FOUND"


async def test_resume_while_notifications_keep_arriving_has_no_gap_and_no_duplicate(
    server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    for i in range(20):
        await asyncio.to_thread(send, server_owner_url, user, f"before{i}")

    async def keep_sending() -> list[str]:
        return [await asyncio.to_thread(send, server_owner_url, user, f"during{i}") for i in range(30)]

    sender = asyncio.create_task(keep_sending())
    async with ws_for(server, user, query="after=0") as ws:
        during = await sender
        seen: list[dict[str, Any]] = []
        events = await recv_until(ws, "resumed")
        seen += notifications(events)
        deadline = time.monotonic() + EVENT_TIMEOUT
        while len(seen) < 50 and time.monotonic() < deadline:
            seen += notifications([await recv(ws)])
        seqs = [n["seq"] for n in seen]
        assert seqs == list(range(1, 51)), "every seq once, in order"
        assert [n["id"] for n in seen][20:] == during
        assert notifications(await quiet(ws)) == []


async def test_slow_reader_is_closed_1013_while_others_are_served(server: ServerProcess, server_owner_url: str) -> None:
    slow_user, fast_user = uuid.uuid4(), uuid.uuid4()
    # A tiny receive buffer and no reading: the server's send blocks and its queue fills.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    body = "x" * 9000
    async with ws_for(server, slow_user, sock=sock, max_queue=1) as slow, ws_for(server, fast_user) as fast:
        await settle(fast)

        def flood() -> None:
            with psycopg.connect(server_owner_url, autocommit=True) as conn:
                conn.execute("SET ROLE notify_service")
                # Statements of 100 rows: one wake-up each, more than the queue holds. Critical, so
                # that the in-app rate limit (100/h) does not hold them back.
                for _ in range(30):
                    conn.execute(
                        "INSERT INTO notify.notifications (user_id, type, title, body, priority) "
                        "SELECT %s, 'system', 'bulk', %s, 'critical' FROM generate_series(1, 100)",
                        (slow_user, body),
                    )

        await asyncio.to_thread(flood)
        # The fast client is still served while the slow one is (being) cut off.
        nid = await asyncio.to_thread(send, server_owner_url, fast_user, "still here")
        assert notifications(await recv_until(fast, "notification"))[0]["id"] == nid
        code, events = await closed_with(slow, timeout=30)
    report("slow reader", notifications_sent=3000, received_before_close=len(notifications(events)), close_code=code,
           other_client_served=True)  # fmt: skip
    assert code == 1013
    assert len(notifications(events)) < 1200, "closed before everything was queued"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "notifyd_slow_clients_closed_total 0.0" not in metrics


async def test_a_dropped_fan_out_connection_is_made_again_and_loses_nothing(
    server: ServerProcess, server_owner_url: str
) -> None:
    """The hub reads on a connection of its own (notify_worker for its life): killed, the next read makes a new one."""
    user = uuid.uuid4()
    async with ws_for(server, user) as ws:
        await settle(ws)

        def kill_reader() -> int:
            with psycopg.connect(server_owner_url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'notifyd-fan-out' AND datname = current_database()"
                ).fetchall()
                return len(rows)

        for round_ in range(3):
            assert await asyncio.to_thread(kill_reader) == 1, "one reading connection per serve process"
            ids = [await asyncio.to_thread(send, server_owner_url, user, f"r{round_}-{i}") for i in range(3)]
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 10
            while len(seen) < 3 and time.monotonic() < deadline:
                seen += notifications([await recv(ws, 10)])
            assert [n["id"] for n in seen] == ids
            assert notifications(await quiet(ws, 0.5)) == [], "each notification exactly once"


async def test_dropped_listen_connection_recovers_and_loses_nothing(
    server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()

    def reconnects() -> float:
        for line in httpx.get(f"{server.url}/metrics").text.splitlines():
            if line.startswith("notifyd_listen_reconnects_total"):
                return float(line.split()[1])
        raise AssertionError("no reconnect metric")

    before = reconnects()
    async with ws_for(server, user) as ws:
        await settle(ws)

        def outage() -> list[str]:
            with psycopg.connect(server_owner_url, autocommit=True) as conn:
                killed = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'notifyd-listen' AND datname = current_database()"
                ).fetchall()
                assert killed == [(True,)]
            return [send(server_owner_url, user, f"gap{i}") for i in range(5)]

        ids = await asyncio.to_thread(outage)
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while len(seen) < 5 and time.monotonic() < deadline:
            seen += notifications([await recv(ws, 10)])
        assert sorted(n["id"] for n in seen) == sorted(ids)
        more = notifications(await quiet(ws, 1.0))
        assert more == [], "each notification exactly once"
        seqs = [n["seq"] for n in seen]
        assert seqs == sorted(seqs)
    deadline = time.monotonic() + 10
    while reconnects() <= before and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert reconnects() == before + 1
    assert httpx.get(f"{server.url}/readyz").status_code == 200


async def test_restart_while_disconnected_then_resume_delivers_everything(
    own_server: Any, db: psycopg.Connection[Any]
) -> None:
    proc: ServerProcess = own_server()
    user = uuid.uuid4()
    owner_url = _owner_url(db)
    async with ws_for(proc, user) as ws:
        await settle(ws)
        first = await asyncio.to_thread(send, owner_url, user, "first")
        [seen] = notifications(await recv_until(ws, "notification"))
        assert seen["id"] == first
    proc.stop()
    missed = [await asyncio.to_thread(send, owner_url, user, f"missed{i}") for i in range(3)]
    db.execute("UPDATE notify.notifications SET read_at = now() WHERE id = %s", (first,))
    proc.start()
    async with ws_for(proc, user, query=f"after={seen['seq']}") as ws:
        events = await recv_until(ws, "resumed")
        got = notifications(events)
        assert [n["id"] for n in got] == [*missed, first]  # the read gives `first` a new, later seq
        assert [n["seq"] for n in got] == list(range(seen["seq"] + 1, seen["seq"] + 5))
        assert events[-1] == {"type": "resumed", "count": 4}
        assert (await recv_until(ws, "unread_count"))[-1]["count"] == 3


async def test_server_full_closes_1013(own_server: Any) -> None:
    proc: ServerProcess = own_server(WS_MAX_CONNECTIONS="2")
    async with ws_for(proc, uuid.uuid4()), ws_for(proc, uuid.uuid4()):
        async with connect(f"{proc.ws_url}?token={make_token(uuid.uuid4())}", compression=None) as third:
            code, events = await closed_with(third)
    assert code == 1013 and events == []
    # Freed slots are usable again (once the server has seen the two closes).
    deadline = time.monotonic() + 5
    while True:
        try:
            async with ws_for(proc, uuid.uuid4()) as again:
                await settle(again)
                break
        except ConnectionClosed:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


def _owner_url(db: psycopg.Connection[Any]) -> str:
    info = db.info
    auth = info.user + (f":{info.password}" if info.password else "")
    return f"postgresql://{auth}@{info.host}:{info.port}/{info.dbname}"


async def test_compact_sessions_take_the_count_from_the_notification_frame(
    server: ServerProcess, server_owner_url: str
) -> None:
    """Every notification frame carries the user's unread count; ?compact=1 drops the unread_count event that
    would repeat it, but not the one after a read or a delete (the count changed, no new notification)."""
    user = uuid.uuid4()
    headers = {"Authorization": f"Bearer {make_token(user)}"}
    async with (
        ws_for(server, user) as full,
        ws_for(server, user, "compact=1") as compact,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        await settle(full)
        await settle(compact)  # the resume's count comes in both modes
        sent = [await asyncio.to_thread(send, server_owner_url, user, f"n{i}") for i in range(3)]
        frames: list[dict[str, Any]] = []
        while len(frames) < 3:
            frames.append(await recv(compact))
        assert [f["type"] for f in frames] == ["notification"] * 3 and [f["data"]["id"] for f in frames] == sent
        # Each frame has the count when the hub read it (sends may share a wake-up): it only grows, up to 3.
        counts = [f["unread_count"] for f in frames]
        assert counts == sorted(counts) and counts[-1] == 3 and frames[-1]["unread_by_type"] == {"task": 3}
        assert await quiet(compact) == []
        events = await recv_until(full, "unread_count")
        while sum(e["type"] == "notification" for e in events) < 3:
            events += await recv_until(full, "unread_count")
        assert all(e["unread_count"] >= 1 for e in events if e["type"] == "notification")
        assert events[-1] == {"type": "unread_count", "count": 3, "by_type": {"task": 3}}

        deleted = await client.delete(f"/api/v1/notifications/{sent[0]}", headers=headers)
        assert deleted.status_code in (200, 204), deleted.text
        after_delete = await recv_until(compact, "unread_count")
        assert [e["type"] for e in after_delete] == ["notification", "unread_count"]
        assert after_delete[0]["unread_count"] == 2 and after_delete[-1]["count"] == 2

        await compact.send(json.dumps({"type": "mark_read", "notification_id": sent[1]}))
        asked: list[dict[str, Any]] = []
        while [e["type"] for e in asked].count("notification") + [e["type"] for e in asked].count("unread_count") < 2:
            asked.append(await recv(compact))
        assert sorted(e["type"] for e in asked) == ["notification", "read_status_updated", "unread_count"], asked
        assert [e["count"] for e in asked if e["type"] == "unread_count"] == [1]


async def test_serve_freezes_its_start_up_objects_once_the_app_pool_and_hub_are_up(
    db: psycopg.Connection[Any],
) -> None:
    settings = Settings(database_url=database_url(db, login=True), jwt_secret="s" * 32, host="127.0.0.1", port=0)
    server = Server(config(settings))
    gc.unfreeze()
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.05)
        app = server.config.app
        assert isinstance(app, Starlette)
        hub = app.state.hub
        assert hub.is_listening and gc.get_freeze_count() > 0
        # The hub and the pool, made before the freeze, are out of the collector's generations for good.
        frozen = {id(o) for o in gc.get_objects()}
        assert id(hub) not in frozen and id(app.state.pool) not in frozen
    finally:
        server.should_exit = True
        await serving
        gc.unfreeze()


async def test_an_idle_websocket_session_runs_no_task_of_its_own(db: psycopg.Connection[Any]) -> None:
    """uvicorn's task per connection is the only one: the session's commands run in it (memory per idle socket)."""
    port = free_port()
    settings = Settings(database_url=database_url(db, login=True), jwt_secret=JWT_SECRET, host="127.0.0.1", port=port)
    server = Server(config(settings))
    serving = asyncio.create_task(server.serve())
    sockets = 5
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.05)
        before = len(asyncio.all_tasks())
        url = f"ws://127.0.0.1:{port}/api/v1/notifications/ws?token="
        # No keepalive pings: a client connection would run a task for them in this same loop.
        clients = [
            await connect(url + make_token(uuid.uuid4()), compression=None, ping_interval=None) for _ in range(sockets)
        ]
        try:
            for ws in clients:
                await recv_until(ws, "unread_count")  # live: resumed, the writer idle again
            assert len(asyncio.all_tasks()) - before == sockets
            # A command still answers, from the same task.
            await clients[0].send(json.dumps({"type": "ping"}))
            assert (await recv(clients[0]))["type"] == "pong"
        finally:
            for ws in clients:
                await ws.close()
    finally:
        server.should_exit = True
        await serving
        gc.unfreeze()
