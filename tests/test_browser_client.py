"""notifyd-client.js in Chromium against a real notifyd: live events, resume across restarts, the SSE
fallback, token refresh, hidden tabs and the REST methods."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.browser import open_page
from tests.server import ServerProcess, make_token
from tests.test_realtime import _owner_url, send

HEAD = (
    '<script type="module">import {NotifydClient, NotifydError} from "/static/notifyd-client.js";'
    " window.NotifydClient = NotifydClient; window.NotifydError = NotifydError;</script>"
)

WRONG_SECRET = "not-the-secret-of-this-notifyd-but-long-enough"

# Creates window.client and records every event it emits in window.events (details copied as JSON).
# The token is a string, or (null) a token function asking the test's mint().
START = """({token, options}) => {
  window.events = [];
  window.client = new NotifydClient({token: token ?? (() => window.mintToken()), ...options});
  for (const type of ["notification", "unread_count", "read_status", "state", "resumed", "error"]) {
    client.addEventListener(type, (e) => events.push({type, ...JSON.parse(JSON.stringify(e.detail))}));
  }
  client.connect();
}"""


def start_client(
    context: Any,
    base_url: str,
    token: str | None = None,
    *,
    mint: Callable[[], str] | None = None,
    before: Callable[[Any], None] | None = None,
    **options: Any,
) -> Any:
    """A page with a connected window.client: a fixed token, or a token function calling mint()."""
    page = open_page(context, base_url, "", head=HEAD)
    page.wait_for_function("!!window.NotifydClient")
    if mint is not None:
        page.expose_function("mintToken", mint)
    if before is not None:
        before(page)
    page.evaluate(START, {"token": token, "options": options})
    return page


def wait_open(page: Any) -> None:
    page.wait_for_function("client.state === 'open'")


def notifications(page: Any) -> list[dict[str, Any]]:
    """The notification events so far: id, seq, isNew, replay, title, deleted_at."""
    return list(
        page.evaluate("""events.filter((e) => e.type === "notification").map((e) => ({
          id: e.notification.id, seq: e.notification.seq, title: e.notification.title,
          deleted_at: e.notification.deleted_at ?? null, isNew: e.isNew, replay: e.replay}))""")
    )


def wait_for_ids(page: Any, ids: list[str]) -> None:
    page.wait_for_function(
        "ids => ids.every((id) => events.some((e) => e.type === 'notification' && e.notification.id === id))",
        arg=ids,
    )


def ids_of(page: Any) -> list[str]:
    return [n["id"] for n in notifications(page)]


def test_a_notification_sent_by_sql_arrives_as_new_with_the_unread_count(
    context: Any, server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    page = start_client(context, server.url, make_token(user))
    wait_open(page)
    assert page.evaluate("client.userId") == str(user)
    nid = send(server_owner_url, user, "hello")
    wait_for_ids(page, [nid])
    [got] = notifications(page)
    assert got["title"] == "hello" and got["isNew"] is True and got["replay"] is False
    page.wait_for_function("client.unreadCount === 1")
    assert page.evaluate("events.filter((e) => e.type === 'unread_count').at(-1)") == {
        "type": "unread_count",
        "count": 1,
        "by_type": {"task": 1},
    }
    states = page.evaluate("events.filter((e) => e.type === 'state').map((e) => e.state)")
    assert states == ["connecting", "open"]
    assert page.evaluate("client.transport") == "websocket"
    assert page.errors == []


# Records the URL of every WebSocket and EventSource the client opens, and the type of every frame they bring.
RECORD_CONNECTIONS = """() => {
  window.opened = []; window.frames = [];
  for (const name of ["WebSocket", "EventSource"]) {
    const Original = window[name];
    window[name] = class extends Original {
      constructor(url, ...rest) {
        super(url, ...rest);
        opened.push(String(url));
        if (name === "WebSocket") this.addEventListener("message", (e) => frames.push(JSON.parse(e.data).type));
        else for (const t of ["notification", "unread_count"]) this.addEventListener(t, () => frames.push(t));
      }
    };
  }
}"""


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_the_client_connects_compact_and_takes_the_count_from_the_notification_frame(
    context: Any, server: ServerProcess, server_owner_url: str, transport: str
) -> None:
    user = uuid.uuid4()
    page = start_client(
        context, server.url, make_token(user), before=lambda p: p.evaluate(RECORD_CONNECTIONS), transport=transport
    )
    wait_open(page)
    # The stream is open before its first read is done: the count that read sends comes first.
    page.wait_for_function("events.some((e) => e.type === 'unread_count')")
    nid = send(server_owner_url, user, "one frame")
    wait_for_ids(page, [nid])
    page.wait_for_function("client.unreadCount === 1")
    [url] = page.evaluate("opened")
    assert "compact=1" in url
    # The count came with the notification: its unread_count event follows it at once, and no frame repeats it.
    types = page.evaluate("events.filter((e) => e.type !== 'state').map((e) => e.type)")
    assert types[types.index("notification") + 1] == "unread_count"
    assert page.evaluate("events.filter((e) => e.type === 'unread_count').at(-1)") == {
        "type": "unread_count", "count": 1, "by_type": {"task": 1},
    }  # fmt: skip
    page.wait_for_timeout(500)
    frames = page.evaluate("frames")
    assert frames[frames.index("notification") :] == ["notification"], frames
    assert page.errors == []


def test_a_replayed_change_of_a_notification_older_than_the_client_is_not_new(
    context: Any, server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    old = [send(server_owner_url, user, f"old{i}") for i in range(2)]
    with psycopg.connect(server_owner_url) as conn:  # read elsewhere: old[0] gets the newest seq
        conn.execute("UPDATE notify.notifications SET read_at = now() WHERE id = %s", (old[0],))
    page = start_client(context, server.url, make_token(user))
    wait_for_ids(page, [old[0]])  # the first connection resumes from old[1]: old[0]'s change comes
    fresh = send(server_owner_url, user, "fresh")
    wait_for_ids(page, [fresh])
    got = notifications(page)
    assert [(n["id"], n["isNew"], n["replay"]) for n in got] == [(old[0], False, True), (fresh, True, False)]
    assert page.errors == []


def test_a_rejected_plain_token_stops_with_an_error(context: Any, server: ServerProcess) -> None:
    page = start_client(context, server.url, make_token(uuid.uuid4(), secret=WRONG_SECRET))
    page.wait_for_function("client.state === 'closed'")
    errors = page.evaluate("events.filter((e) => e.type === 'error')")
    assert errors == [{"type": "error", "code": "AUTH_FAILED", "message": "the token was rejected", "status": 401}]
    assert page.errors == []


def test_a_silent_connection_is_detected_by_the_heartbeat(
    context: Any, server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    sockets: list[dict[str, bool]] = []

    def relay(ws: Any) -> None:
        """Passes notifyd's messages on, until the test mutes this socket (a half-dead connection)."""
        upstream = ws.connect_to_server()
        state = {"mute": False}
        sockets.append(state)
        upstream.on_message(lambda message: None if state["mute"] else ws.send(message))

    context.route_web_socket("**/ws*", relay)
    page = start_client(context, server.url, make_token(user), heartbeatInterval=300)
    wait_open(page)
    first = send(server_owner_url, user, "first")
    wait_for_ids(page, [first])
    sockets[0]["mute"] = True
    lost = send(server_owner_url, user, "lost on the dead socket")
    wait_for_ids(page, [lost])  # no pong within an interval: a new socket, resumed
    assert ids_of(page) == [first, lost] and len(sockets) == 2
    assert [n["replay"] for n in notifications(page)] == [False, True]
    assert page.errors == []


# Reconnects come quickly in tests.
FAST: dict[str, Any] = {"backoff": {"initial": 100, "max": 400}}


def resumed_counts(page: Any) -> list[int]:
    return list(page.evaluate("events.filter((e) => e.type === 'resumed').map((e) => e.count)"))


def test_a_restart_delivers_what_was_sent_during_the_outage_once(
    own_server: Any, db: psycopg.Connection[Any], context: Any
) -> None:
    proc: ServerProcess = own_server()
    url, user = _owner_url(db), uuid.uuid4()
    page = start_client(context, proc.url, make_token(user), **FAST)
    wait_open(page)
    before = [send(url, user, f"before{i}") for i in range(2)]
    wait_for_ids(page, before)
    proc.stop()
    page.wait_for_function("client.state === 'reconnecting'")
    failed = page.evaluate("client.fetchUnreadCount().catch((e) => [e instanceof NotifydError, e.status, e.code])")
    assert failed == [True, 0, "NETWORK_ERROR"]
    missed = [send(url, user, f"missed{i}") for i in range(3)]
    proc.start()
    page.wait_for_function("events.filter((e) => e.type === 'resumed').length === 2")
    wait_open(page)
    after = send(url, user, "after")
    wait_for_ids(page, [after])
    got = notifications(page)
    # Live events follow the replay, so a duplicate would have come before `after`.
    assert ids_of(page) == [*before, *missed, after]
    assert [n["replay"] for n in got] == [False, False, True, True, True, False]
    assert all(n["isNew"] for n in got)
    assert resumed_counts(page) == [0, 3]  # the first connection resumes from the newest one too
    assert page.evaluate("client.transport") == "websocket"
    assert page.errors == []


def test_a_full_server_is_retried_with_backoff_over_websocket(own_server: Any, context: Any) -> None:
    proc: ServerProcess = own_server(WS_MAX_CONNECTIONS="1")
    first = start_client(context, proc.url, make_token(uuid.uuid4()), **FAST)
    wait_open(first)
    second = start_client(context, proc.url, make_token(uuid.uuid4()), **FAST)
    second.wait_for_function("events.filter((e) => e.state === 'reconnecting').length >= 1")
    first.evaluate("client.close()")  # frees the one slot
    wait_open(second)
    assert second.evaluate("client.transport") == "websocket"  # 1013 is "full", not "blocked"
    assert first.errors == [] and second.errors == []


def test_blocked_websocket_falls_back_to_server_sent_events(
    own_server: Any, db: psycopg.Connection[Any], context: Any
) -> None:
    proc: ServerProcess = own_server()
    url, user = _owner_url(db), uuid.uuid4()
    context.route_web_socket("**/ws*", lambda ws: ws.close())  # a proxy that refuses WebSockets
    page = start_client(context, proc.url, make_token(user), **FAST)
    wait_open(page)
    assert page.evaluate("client.transport") == "sse"
    live = send(url, user, "live")
    wait_for_ids(page, [live])
    proc.stop()
    page.wait_for_function("client.state === 'reconnecting'")
    missed = [send(url, user, f"missed{i}") for i in range(2)]
    proc.start()
    page.wait_for_function("events.filter((e) => e.type === 'resumed').length === 2")
    after = send(url, user, "after")
    wait_for_ids(page, [after])
    assert ids_of(page) == [live, *missed, after]
    assert resumed_counts(page) == [0, 2]
    page.wait_for_function("client.unreadCount === 4")
    assert page.evaluate("client.transport") == "sse"
    assert page.errors == []


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_short_lived_tokens_are_refreshed_without_losing_or_doubling_events(
    context: Any, server: ServerProcess, server_owner_url: str, transport: str
) -> None:
    user = uuid.uuid4()
    minted: list[str] = []

    def mint() -> str:
        # The second call gives the first token again, so that connection lives until notifyd ends it
        # at expiry (4001, or AUTH_FAILED on the stream); later ones are fresh: refreshed before expiry.
        minted.append(minted[0] if len(minted) == 1 else make_token(user, exp_in=3))
        return minted[-1]

    page = start_client(context, server.url, mint=mint, transport=transport, **FAST)
    wait_open(page)
    first = send(server_owner_url, user, "first")
    opens = "n => events.filter((e) => e.type === 'state' && e.state === 'open').length >= n"
    page.wait_for_function(opens, arg=2)  # expired: a fresh token, a resumed connection
    second = send(server_owner_url, user, "second")
    page.wait_for_function(opens, arg=3)  # refreshed before expiry
    third = send(server_owner_url, user, "third")
    wait_for_ids(page, [third])
    page.evaluate("token => client.setToken(token)", make_token(user))  # moves to it the same way
    page.wait_for_function(opens, arg=4)
    fourth = send(server_owner_url, user, "fourth")
    wait_for_ids(page, [fourth])
    assert ids_of(page) == [first, second, third, fourth]
    assert len(minted) >= 4 and page.evaluate("client.transport") == transport
    page.wait_for_function("client.state === 'open'")
    assert page.evaluate("events.filter((e) => e.type === 'error')") == []
    assert page.errors == []


VISIBILITY = """() => {
  window.__vis = "visible";
  Object.defineProperty(document, "visibilityState", {get: () => window.__vis, configurable: true});
  window.setVisibility = (state) => { window.__vis = state; document.dispatchEvent(new Event("visibilitychange")); };
}"""


def test_a_hidden_tab_pauses_then_catches_up_when_visible(
    context: Any, server: ServerProcess, server_owner_url: str
) -> None:
    user = uuid.uuid4()
    page = start_client(
        context, server.url, make_token(user), before=lambda p: p.evaluate(VISIBILITY), pauseWhenHidden=200
    )
    wait_open(page)
    page.evaluate("setVisibility('hidden')")
    page.wait_for_function("client.state === 'paused'")
    sent = [send(server_owner_url, user, f"hidden{i}") for i in range(2)]
    page.evaluate("setVisibility('visible')")
    wait_for_ids(page, sent)
    wait_open(page)
    last = send(server_owner_url, user, "visible")
    wait_for_ids(page, [last])
    got = notifications(page)
    assert [n["id"] for n in got] == [*sent, last]
    assert [n["replay"] for n in got] == [True, True, False]
    assert page.errors == []


def test_rest_methods(context: Any, server: ServerProcess, server_owner_url: str) -> None:
    user = uuid.uuid4()
    # The first token is refused (wrong secret): the 401 is retried once with a fresh one.
    refused = make_token(user, secret=WRONG_SECRET)
    tokens: Iterator[str] = iter([refused, *(make_token(user) for _ in range(100))])
    page = start_client(context, server.url, mint=lambda: next(tokens))
    wait_open(page)
    sent = [send(server_owner_url, user, f"n{i}") for i in range(45)]
    wait_for_ids(page, sent)
    listed = page.evaluate("""async () => {
      const ids = [];
      let cursor = null, pages = 0;
      do {
        const page = await client.list({limit: 20, cursor});
        pages += 1;
        ids.push(...page.items.map((n) => n.id));
        cursor = page.next_cursor;
      } while (cursor);
      return {ids, pages};
    }""")
    assert listed["pages"] == 3 and sorted(listed["ids"]) == sorted(sent) and len(listed["ids"]) == 45
    assert page.evaluate("id => client.get(id).then((n) => n.title)", sent[0]) == "n0"
    nothing = "id => client.revealSensitive(id).catch((e) => [e.status, e.message])"
    assert page.evaluate(nothing, sent[0]) == [404, "this notification has no sensitive fields"]

    read = page.evaluate("id => client.markRead(id)", sent[0])
    assert read["id"] == sent[0] and read["read_at"]
    page.wait_for_function(
        "id => events.some((e) => e.type === 'read_status' && e.notification_id === id)", arg=sent[0]
    )
    page.wait_for_function("client.unreadCount === 44")
    assert page.evaluate("client.fetchUnreadCount().then((c) => c.count)") == 44
    assert page.evaluate("client.markAllRead()") == {"updated_count": 44}
    page.wait_for_function("events.filter((e) => e.type === 'unread_count').at(-1).count === 0")

    assert page.evaluate("id => client.delete(id)", sent[1]) is None
    page.wait_for_function(
        "id => events.some((e) => e.type === 'notification' && e.notification.id === id && e.notification.deleted_at)",
        arg=sent[1],
    )
    assert sent[1] not in page.evaluate("client.list({limit: 100}).then((p) => p.items.map((n) => n.id))")
    # Every change of a known notification came again as not new, once per seq.
    changes = [n for n in notifications(page) if not n["isNew"]]
    assert changes and len({(n["id"], n["seq"]) for n in changes}) == len(changes)

    actions = {"actions": [{"action": "approve", "label": "Approve"}, {"action": "reject", "label": "Reject"}]}
    task = send(server_owner_url, user, "approve me", data=Jsonb(actions))
    wait_for_ids(page, [task])
    acted = page.evaluate("id => client.act(id, 'approve')", task)
    assert acted["id"] == task and acted["action"] == "approve" and acted["result"] == "recorded"
    with psycopg.connect(server_owner_url) as conn:
        row = conn.execute("SELECT action_taken FROM notify.notifications WHERE id = %s", (task,)).fetchone()
    assert row == ("approve",)

    item = page.evaluate("client.setPreference('task', {email_enabled: false})")
    assert item["notification_type"] == "task" and item["email_enabled"] is False
    prefs = page.evaluate("client.preferences()")
    assert [p["email_enabled"] for p in prefs["items"] if p["notification_type"] == "task"] == [False]
    assert page.evaluate("client.setGlobalPreferences({timezone: 'Europe/Paris'})")["timezone"] == "Europe/Paris"

    error = page.evaluate(
        """id => client.markRead(id).catch((e) =>
      ({isNotifydError: e instanceof NotifydError, status: e.status, code: e.code, message: e.message}))""",
        str(uuid.uuid4()),
    )
    assert error["isNotifydError"] is True and error["status"] == 404 and error["code"] and error["message"]
    assert page.errors == []
