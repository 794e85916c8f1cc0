"""Web Push in a real Chromium: notifyd-push.js subscribes, notifyd-sw.js shows, reports and re-subscribes.

Each test runs its own `notifyd serve` and `notifyd worker` on the test's database, with the push service
stand-in. Chromium's PushManager.subscribe would call Google's push service, unreachable here: STUB
replaces it (in pages by an init script, in the service worker through Playwright's worker handle) with
one that makes the keys a browser makes and hands them to the test, which gives them to the stand-in
(`adopt`) so that it can check VAPID and decrypt what the worker sends.

Pushes reach the worker as real push events (DevTools' ServiceWorker.deliverPushMessage, with the payload
the stand-in decrypted). The rest of the worker's logic is called through `self.notifyd` on the worker
handle: a synthetic event cannot waitUntil, and a real notificationclick cannot be dispatched (headless
Chromium shows no notification to click). Chromium lets a worker focus or open a window only while it
handles a real click, so the click test records which window the worker focused or opened (WINDOWS)
instead of letting Chromium refuse.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.browser import open_page
from tests.server import QUICK_WORKER_ENV, ServerProcess, make_token, wait_for
from tests.standins.push_service import PushMessage, PushService
from tests.test_webpush import add_vapid_key, fetch

API = "/api/v1/notifications"

# PushManager.subscribe/getSubscription as a browser does them, but with no push service to call: an ECDH
# P-256 key pair and a 16-byte auth secret made with WebCrypto, an endpoint on the stand-in; the keys go
# to self.__pushKeys for the test. A realm (page or worker) holds one subscription, as a registration does.
SHOWN = """async (tag) => {
  for (const deadline = Date.now() + 3000; Date.now() < deadline;) {
    if ((await self.registration.getNotifications({tag})).length) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}"""

STUB = """(pushService) => {
  const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  const unb64 = (text) => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  let current = null;
  self.__pushKeys = [];
  PushManager.prototype.subscribe = async function (options) {
    const serverKey = typeof options.applicationServerKey === "string"
      ? unb64(options.applicationServerKey) : new Uint8Array(options.applicationServerKey);
    const pair = await crypto.subtle.generateKey({name: "ECDH", namedCurve: "P-256"}, true, ["deriveBits"]);
    const keys = {
      p256dh: b64(await crypto.subtle.exportKey("raw", pair.publicKey)),
      auth: b64(crypto.getRandomValues(new Uint8Array(16))),
    };
    const endpoint = `${pushService}/push/${crypto.randomUUID()}`;
    const {d} = await crypto.subtle.exportKey("jwk", pair.privateKey);
    self.__pushKeys.push({endpoint, private_key: d, auth: keys.auth, application_server_key: b64(serverKey)});
    const json = {endpoint, expirationTime: null, keys};
    const subscription = {
      endpoint, expirationTime: null,
      options: {userVisibleOnly: true, applicationServerKey: serverKey.buffer},
      toJSON: () => json,
      getKey: (name) => unb64(keys[name]).buffer,
      unsubscribe: async () => { if (current === subscription) current = null; return true; },
    };
    current = subscription;
    return subscription;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
}"""

# What the worker stored for itself (IndexedDB "notifyd" / "push" / "subscription").
STORED = """() => new Promise((resolve, reject) => {
  const open = indexedDB.open("notifyd");
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const get = open.result.transaction("push").objectStore("push").get("subscription");
    get.onsuccess = () => { open.result.close(); resolve(get.result ?? null); };
  };
})"""

# Records the window a click focuses or opens (see the module docstring).
WINDOWS = """() => {
  self.__windows = [];
  WindowClient.prototype.focus = async function () { self.__windows.push(["focus", this.url]); return this; };
  Clients.prototype.openWindow = async function (url) { self.__windows.push(["open", url]); return null; };
}"""


class PushBrowser:
    """A page of one user on notifyd's origin, its service worker, and the notifyd stack behind them."""

    def __init__(self, db: psycopg.Connection[Any], server: ServerProcess, push: PushService, context: Any) -> None:
        self.db = db
        self.server = server
        self.push = push
        self.context = context
        self.user = uuid.uuid4()
        db.execute("SELECT notify.upsert_recipient_v2(%s, %s)", (self.user, f"{self.user}@example.com"))
        context.grant_permissions(["notifications"], origin=server.url)
        context.add_init_script(f"({STUB})({json.dumps(push.url)})")
        head = (
            '<script type="module">import {NotifydClient} from "/static/notifyd-client.js";'
            f"window.client = new NotifydClient({{token: {json.dumps(make_token(self.user))}}});</script>"
        )
        self.page = open_page(context, server.url, "", head=head)
        self.page.wait_for_function("window.client !== undefined")
        self.worker: Any = None

    def state(self) -> str:
        return str(self.page.evaluate("client.pushState()"))

    def subscribe(self) -> tuple[str, list[dict[str, str]]]:
        """client.subscribePush(); the worker it registers gets STUB: (the state, the subscriptions made)."""
        with self.context.expect_event("serviceworker") as registered:
            state = str(self.page.evaluate("client.subscribePush()"))
        self.worker = registered.value
        self.worker.evaluate(STUB, self.push.url)
        return state, self.adopt(self.page)

    def adopt(self, realm: Any) -> list[dict[str, str]]:
        """Gives the stand-in the subscriptions the page or the worker made since the last call."""
        made: list[dict[str, str]] = realm.evaluate("self.__pushKeys.splice(0)")
        for keys in made:
            self.push.adopt(**keys)
        return made

    def deliver(self, message: PushMessage) -> None:
        """Dispatches a real push event with the decrypted payload to the worker (DevTools' "Push" button)."""
        cdp = self.context.new_cdp_session(self.page)
        registrations: list[dict[str, Any]] = []
        cdp.on("ServiceWorker.workerRegistrationUpdated", lambda event: registrations.extend(event["registrations"]))
        cdp.send("ServiceWorker.enable")
        deadline = time.monotonic() + 5
        while not registrations:  # CDP events arrive while Playwright runs: let it
            assert time.monotonic() < deadline, "DevTools reported no service worker registration"
            self.page.wait_for_timeout(20)
        [registration] = registrations
        self.page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        # A push delivered through DevTools was once not shown within 5 s in CI (not reproduced under load
        # since); a real push service redelivers until the browser acknowledges, so the test does too.
        # The notification's tag replaces a shown one and each receipt event counts once: nothing doubles.
        for _ in range(3):
            cdp.send("ServiceWorker.deliverPushMessage", {
                "origin": self.server.url, "registrationId": registration["registrationId"],
                "data": message.plaintext.decode(),
            })  # fmt: skip
            if self.worker.evaluate(SHOWN, message.json["id"]):
                break
        else:
            raise AssertionError(f"notification {message.json['id']} not shown after 3 pushes")
        cdp.detach()

    def stored(self) -> dict[str, Any]:
        row = self.worker.evaluate(STORED)
        assert row is not None, "the service worker stored no subscription"
        return dict(row)

    def current_key(self) -> str:
        return str(httpx.get(f"{self.server.url}{API}/vapid-public-key").json()["public_key"])

    def device(self) -> dict[str, Any]:
        row = fetch(
            self.db,
            "SELECT s.id, s.endpoint, s.is_active, k.public_key AS vapid_key FROM notify.push_subscriptions AS s "
            "JOIN notify.vapid_keys AS k ON k.id = s.vapid_key_id WHERE s.user_id = %s",
            self.user,
        )
        assert row is not None, "the user has no push device"
        return row

    def send(self, title: str, **kwargs: Any) -> str:
        """A high-priority notification by SQL, as notify_service."""
        args = "".join(f", {k} => %({k})s" for k in kwargs)
        with self.db.cursor() as cur:
            cur.execute("SET ROLE notify_service")
            row = cur.execute(
                f"SELECT notify.send(%(user)s, 'task', %(title)s, priority => 'high'{args})",
                {"user": self.user, "title": title, **kwargs},
            ).fetchone()
            cur.execute("RESET ROLE")
        assert row is not None
        return str(row[0])

    def message(self, notification_id: str) -> PushMessage:
        def arrived() -> PushMessage | None:
            return next((m for m in self.push.messages if m.json and m.json["id"] == notification_id), None)

        found = wait_for(arrived, 15, what=f"the push of {notification_id}")
        assert isinstance(found, PushMessage)
        return found

    def events(self, notification_id: str) -> list[str]:
        rows = self.db.execute(
            "SELECT event FROM notify.delivery_events WHERE notification_id = %s AND channel = 'push' ORDER BY event",
            (notification_id,),
        ).fetchall()
        return [r[0] for r in rows]


@pytest.fixture
def browser_push(
    db: psycopg.Connection[Any],
    own_server: Any,
    own_worker: Any,
    push_service: PushService,
    context: Any,
) -> Iterator[PushBrowser]:
    with ThreadPoolExecutor(2) as pool:
        worker = pool.submit(own_worker, **QUICK_WORKER_ENV)
        server = pool.submit(own_server)
        worker.result()
        started = PushBrowser(db, server.result(), push_service, context)
    wait_for(lambda: fetch(db, "SELECT 1 FROM notify.vapid_keys"), 10, what="the worker's first VAPID key")
    yield started
    assert started.page.errors == []


def test_subscribing_uses_the_current_vapid_key_and_unsubscribing_removes_the_device(
    browser_push: PushBrowser,
) -> None:
    b = browser_push
    b.context.clear_permissions()
    assert b.state() == "prompt"
    b.context.grant_permissions(["notifications"], origin=b.server.url)
    assert b.state() == "unsubscribed"  # no subscription yet
    no_key = {"error": {"code": "SERVICE_UNAVAILABLE", "message": "Web Push is not configured"}}
    b.page.route(f"{b.server.url}{API}/vapid-public-key", lambda route: route.fulfill(status=503, json=no_key))
    assert b.state() == "not-configured"
    b.page.unroute(f"{b.server.url}{API}/vapid-public-key")

    state, [made] = b.subscribe()
    assert state == "subscribed"
    scope = b.page.evaluate("navigator.serviceWorker.getRegistration().then((r) => r.scope)")
    assert (scope, b.worker.url) == (f"{b.server.url}/", f"{b.server.url}/notifyd-sw.js")

    key = b.current_key()
    assert made["application_server_key"] == key
    device = b.device()
    assert (device["endpoint"], device["vapid_key"], device["is_active"]) == (made["endpoint"], key, True)
    stored = b.stored()
    assert stored["subscription_token"]
    assert (stored["baseUrl"], stored["vapid_public_key"], stored["endpoint"]) == (b.server.url, key, made["endpoint"])
    assert b.state() == "subscribed"

    assert b.page.evaluate("client.unsubscribePush()") == "unsubscribed"
    assert fetch(b.db, "SELECT 1 FROM notify.push_subscriptions WHERE user_id = %s", b.user) is None
    assert b.worker.evaluate(STORED) is None


def test_a_push_is_shown_and_reported_received_clicked_and_acted_on(browser_push: PushBrowser) -> None:
    b = browser_push
    b.subscribe()
    actions = [{"action": "approve", "label": "Approve"}, {"action": "reject", "label": "Reject"}]
    sent = b.send("Deploy ready", body="Build 42 passed", data=Jsonb({"url": "/builds/42", "actions": actions}))
    message = b.message(sent)  # the stand-in checked VAPID and decrypted it
    b.deliver(message)
    wait_for(lambda: "delivered" in b.events(sent), what="the 'received' receipt")
    shown = b.worker.evaluate(
        "async () => (await self.registration.getNotifications()).map((n) => [n.title, n.body, n.tag, n.data.url,"
        " n.actions.map((a) => a.action)])"
    )
    assert shown == [["Deploy ready", "Build 42 passed", sent, "/builds/42", ["approve", "reject"]]]

    click = "async (action) => self.notifyd.handleClick((await self.registration.getNotifications())[0], action)"
    b.worker.evaluate(WINDOWS)
    open_page(b.context, b.server.url, "<h1>Other</h1>", path="/builds/4")
    build = open_page(b.context, b.server.url, "<h1>Build 42</h1>", path="/builds/42")
    b.worker.evaluate(click, "")
    assert b.worker.evaluate("self.__windows") == [["focus", f"{b.server.url}/builds/42"]]
    assert b.events(sent) == ["clicked", "delivered", "sent"]
    assert b.worker.evaluate("self.registration.getNotifications().then((n) => n.length)") == 0  # closed
    build.close()

    b.deliver(message)
    b.worker.evaluate(click, "")  # no tab shows the build any more: one is opened
    assert b.worker.evaluate("self.__windows")[-1] == ["open", f"{b.server.url}/builds/42"]

    b.deliver(message)
    b.worker.evaluate(click, "approve")
    taken = fetch(b.db, "SELECT action_taken FROM notify.notifications WHERE id = %s", sent)
    assert taken == {"action_taken": "approve"}
    assert len(b.worker.evaluate("self.__windows")) == 2  # an action button opens nothing


def test_a_replaced_subscription_moves_with_the_subscription_token_and_no_user_token(
    browser_push: PushBrowser,
) -> None:
    b = browser_push
    b.subscribe()
    before, device = b.stored(), b.device()
    calls: list[Any] = []

    def observe(route: Any) -> None:
        calls.append(route.request)
        route.continue_()

    b.context.route(f"{b.server.url}{API}/push/resubscribe", observe)
    # As Firefox does when the push service dropped the subscription: no new one given, the worker makes it.
    assert b.worker.evaluate("self.notifyd.handleSubscriptionChange(null, null)") is True
    [made] = b.adopt(b.worker)

    [request] = calls
    assert "authorization" not in request.all_headers()
    body = request.post_data_json
    assert (body["token"], body["subscription"]["endpoint"]) == (before["subscription_token"], made["endpoint"])
    moved = b.device()
    assert (moved["id"], moved["endpoint"], moved["vapid_key"]) == (device["id"], made["endpoint"], device["vapid_key"])
    after = b.stored()
    assert after["endpoint"] == made["endpoint"]
    assert after["subscription_token"] not in ("", before["subscription_token"])

    sent = b.send("After the move")
    assert b.message(sent).endpoint == made["endpoint"]

    # The user removed the device meanwhile: the worker drops the subscription instead of keeping it.
    b.db.execute("DELETE FROM notify.push_subscriptions WHERE user_id = %s", (b.user,))
    assert b.worker.evaluate("self.notifyd.handleSubscriptionChange(null, null)") is False
    assert b.worker.evaluate(STORED) is None
    assert b.worker.evaluate("self.registration.pushManager.getSubscription()") is None


def test_a_rotated_vapid_key_moves_the_subscription_to_it(browser_push: PushBrowser) -> None:
    b = browser_push
    b.subscribe()
    device = b.device()
    rotated = add_vapid_key(b.db)
    assert rotated != device["vapid_key"]
    # The page sees its subscription on an old key and asks the worker to check (notifyd:check-vapid).
    assert b.state() == "subscribed"
    [made] = b.adopt(b.worker)
    assert made["application_server_key"] == rotated
    moved = b.device()
    assert (moved["id"], moved["endpoint"], moved["vapid_key"]) == (device["id"], made["endpoint"], rotated)
    assert b.stored()["vapid_public_key"] == rotated
    assert b.worker.evaluate("self.notifyd.checkVapidKey()") is False  # nothing left to move

    sent = b.send("Signed with the new key")
    message = b.message(sent)
    assert (message.endpoint, message.vapid_key) == (made["endpoint"], rotated)
