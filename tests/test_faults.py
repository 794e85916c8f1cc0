"""Crash and fault suites with real processes: what notifyd survives, in figures (printed at the end of the run).

- the worker SIGKILLed 20 times at random points while 1,201 deliveries (e-mail, push, SMS, webhook, chat) are in
  flight, and 8 times while 100 e-mails go over SMTP (Resend's circuit open);
- every database connection of notifyd terminated, and a full PostgreSQL restart, while notifications stream
  to WebSocket sessions;
- providers that answer slowly, with 500s, with 429 and Retry-After, or reset the connection;
- overload: more sockets than WS_MAX_CONNECTIONS, floods, huge frames.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from notifyd.db.localdb import PrivateCluster
from tests.conftest import database_url
from tests.figures import report
from tests.server import ServerProcess, make_token, wait_for
from tests.standins.chat import ChatPlatforms
from tests.standins.http import Response
from tests.standins.push_service import PushService
from tests.standins.resend import ResendService
from tests.standins.smtp import SmtpService
from tests.standins.twilio import TwilioService
from tests.standins.webhook_receiver import WebhookReceiver
from tests.test_sms import twilio_env
from tests.test_webpush import API, start_stack, user_headers
from tests.test_worker import FAST, prepared, private_cluster, resend_env  # noqa: F401 - fixture

EMAILS = 900
PUSHES = 100
SMSES = 100
WEBHOOKS = 50
CHATS = 51  # 17 per platform
EMAILS_IN_FLIGHT = 200
KILLS = 20
# Slow provider answers keep the 1,201 deliveries in flight across all the kills.
PROVIDER_DELAY = 0.3


def pending(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM notify.notification_deliveries WHERE status = 'pending'").fetchone()
    assert row is not None
    return int(row[0])


def alert(db: psycopg.Connection[Any], users: list[uuid.UUID], channel: str) -> None:
    """A critical security alert to every one of the users, by `channel` only: one batch."""
    db.execute("SELECT notify.send_bulk(%s, 'security', 'New login', 'from Berlin', 'critical', "
               "channels => %s)", (users, [channel]))  # fmt: skip


def kill_workers(
    db: psycopg.Connection[Any],
    own_worker: Any,
    env: dict[str, str],
    kills: int,
    rng: random.Random,
    pause: tuple[float, float],
    after_kills: Callable[[], None],
) -> int:
    """Starts a worker and SIGKILLs it after a random pause (seconds, within `pause`), `kills` times; then
    `after_kills()` (the providers back to their normal speed: slow answers were there only to keep deliveries
    in flight across the kills) and one worker that stays, until every delivery settled. How many of the kills
    fell while deliveries were pending."""
    kills_in_flight = 0
    for _ in range(kills):
        worker = own_worker(**env)
        time.sleep(rng.uniform(*pause))
        kills_in_flight += pending(db) > 0
        worker.kill()
    after_kills()
    own_worker(**env)
    wait_for(lambda: pending(db) == 0, timeout=120, what="every delivery settled after the kills")
    return kills_in_flight


def test_the_worker_killed_20_times_with_1000_deliveries_in_flight_loses_none_and_sends_no_email_twice(
    db: psycopg.Connection[Any],
    own_server: Any,
    own_worker: Any,
    push_service: PushService,
    resend_service: ResendService,
    twilio_service: TwilioService,
    webhook_receiver: WebhookReceiver,
    chat_platforms: ChatPlatforms,
) -> None:
    env = {**FAST, **resend_env(resend_service), **twilio_env(twilio_service), "WORKER_CONCURRENCY": "4"}
    stack = start_stack(db, own_server, own_worker, push_service, **env)
    push_users = [uuid.uuid4() for _ in range(PUSHES)]
    for user in push_users:
        _, endpoint = stack.subscribe(user)
        push_service.script(endpoint, Response(delay=PROVIDER_DELAY))
    # Webhook endpoints and chat connections, registered over REST, each answering slowly too.
    hook_users = [uuid.uuid4() for _ in range(WEBHOOKS)]
    for user in hook_users:
        url = webhook_receiver.endpoint()
        created = stack.client.post(f"{API}/webhooks", json={"url": url}, headers=user_headers(user))
        assert created.status_code == 201, created.text
        webhook_receiver.trust(url, created.json()["secret"])
        webhook_receiver.script(url, Response(delay=PROVIDER_DELAY))
    chat_users = [uuid.uuid4() for _ in range(CHATS)]
    for user, platform in zip(chat_users, ["slack", "teams", "discord"] * (CHATS // 3), strict=True):
        url = chat_platforms.webhook(platform)
        body = {"platform": platform, "url": url}
        created = stack.client.post(f"{API}/chat-connections", json=body, headers=user_headers(user))
        assert created.status_code == 201, created.text
        chat_platforms.script(url, Response(delay=PROVIDER_DELAY))
    email_users = [uuid.uuid4() for _ in range(EMAILS)]
    db.execute(
        "SELECT notify.upsert_recipient_v2(u, u::text || '@example.com') FROM unnest(%s::uuid[]) AS u", (email_users,)
    )
    resend_service.script(*[Response(delay=PROVIDER_DELAY)] * EMAILS)
    sms_users = {uuid.uuid4(): f"+1415555{i:04d}" for i in range(SMSES)}
    db.execute(
        "SELECT notify.upsert_recipient_v2(u, phone => p) FROM unnest(%s::uuid[], %s::text[]) AS x(u, p)",
        (list(sms_users), list(sms_users.values())),
    )
    twilio_service.script(*[Response(delay=PROVIDER_DELAY)] * SMSES)
    worker = stack.processes[1]
    worker.kill()
    for users, channel in ((email_users, "email"), (push_users, "push"), (list(sms_users), "sms"),
                           (hook_users, "webhook"), (chat_users, "chat")):  # fmt: skip
        alert(db, users, channel)
    total = EMAILS + PUSHES + SMSES + WEBHOOKS + CHATS
    assert pending(db) == total

    def unscripted() -> None:
        for provider in (push_service, resend_service, twilio_service, webhook_receiver, chat_platforms):
            provider.unscript()

    kills_in_flight = kill_workers(db, own_worker, env, KILLS, random.Random(8), (0.2, 1.0), unscripted)

    statuses = Counter(r[0] for r in db.execute("SELECT status FROM notify.notification_deliveries"))
    emails = Counter(e.idempotency_key for e in resend_service.emails)
    pushes = Counter(m.json["id"] for m in push_service.messages)
    smses = Counter(m.to for m in twilio_service.messages)
    # A webhook's receiver tells repeats by webhook-id (the delivery id); a chat platform cannot, so its
    # messages are counted per webhook URL (one notification each).
    hooks = Counter(m.webhook_id for m in webhook_receiver.messages)
    chats = Counter(m.path for m in chat_platforms.messages)
    repeated = {
        channel: dict(db.execute("SELECT d.id::text, d.repeats FROM notify.notification_deliveries AS d "
                                 "WHERE d.channel = %s", (channel,)).fetchall())
        for channel in ("push", "sms", "webhook", "chat")
    }  # fmt: skip
    repeats = db.execute("SELECT coalesce(sum(repeats), 0) FROM notify.notification_deliveries").fetchone()
    report(
        "worker SIGKILL",
        kills=KILLS,
        kills_with_deliveries_in_flight=kills_in_flight,
        deliveries=total,
        lost=total - statuses["sent"],
        emails_sent_twice=sum(1 for n in emails.values() if n > 1),
        email_requests=len(resend_service.requests),
        pushes_received_twice=sum(1 for n in pushes.values() if n > 1),
        sms_received_twice=sum(1 for n in smses.values() if n > 1),
        webhooks_received_twice=sum(1 for n in hooks.values() if n > 1),
        chat_messages_received_twice=sum(1 for n in chats.values() if n > 1),
        repeats_counted=repeats[0] if repeats else None,
    )
    assert kills_in_flight == KILLS, "every kill hit deliveries in flight"
    assert statuses == {"sent": total}, statuses
    assert len(emails) == EMAILS and set(emails.values()) == {1}, "Resend created each e-mail once"
    assert len(pushes) == PUSHES and len(hooks) == WEBHOOKS and len(chats) == CHATS
    assert set(smses) == set(sms_users.values())
    assert set(hooks) == set(repeated["webhook"]), "every webhook-id is a delivery id"
    # A push, SMS, webhook or chat message (no provider idempotency key) repeats only when a kill fell between
    # the provider's answer and the ledger's commit, and the next attempt counts each such possible repeat.
    assert all(n - 1 <= repeated["webhook"][i] for i, n in hooks.items()), "a webhook repeated only in a kill window"
    twice = (
        sum(n - 1 for n in pushes.values()) + sum(n - 1 for n in smses.values()) + sum(n - 1 for n in chats.values())
    )
    assert sum(repeated["push"].values()) + sum(repeated["sms"].values()) + sum(repeated["chat"].values()) >= twice


SMTP_EMAILS = 100
SMTP_KILLS = 8


def test_the_worker_killed_while_email_fails_over_to_smtp_loses_none_and_counts_every_repeat(
    db: psycopg.Connection[Any], own_worker: Any, resend_service: ResendService
) -> None:
    """Resend's circuit open: every e-mail goes over SMTP, which takes no idempotency key. Kills fall between
    the server taking a message and the ledger recording it: the repeats are counted, none is lost."""
    db.execute("UPDATE notify.settings SET value = '\"1 hour\"' WHERE key = 'circuit.probe_after'")
    db.execute(
        "UPDATE notify_private.provider_circuits SET state = 'open', opened_at = now() WHERE provider = 'resend'"
    )
    db.execute("UPDATE notify.settings SET value = '\"0.2 seconds\"' WHERE key = 'delivery.retry_base'")
    with SmtpService(delay=PROVIDER_DELAY) as smtp:
        env = {**FAST, **resend_env(resend_service), "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port),
               "SMTP_TLS": "none", "WORKER_CONCURRENCY": "4"}  # fmt: skip
        users = [uuid.uuid4() for _ in range(SMTP_EMAILS)]
        db.execute(
            "SELECT notify.upsert_recipient_v2(u, u::text || '@example.com') FROM unnest(%s::uuid[]) AS u", (users,)
        )
        alert(db, users, "email")
        kills_in_flight = kill_workers(db, own_worker, env, SMTP_KILLS, random.Random(25), (0.5, 1.5),
                                       lambda: setattr(smtp, "delay", 0.0))  # fmt: skip
        arrived = Counter(str(m["Message-ID"]).split("@")[0].lstrip("<") for m in smtp.messages)
    rows = db.execute("SELECT id::text, status, provider, repeats FROM notify.notification_deliveries").fetchall()
    twice = sum(n - 1 for n in arrived.values())
    repeats = sum(r[3] for r in rows)
    report("worker SIGKILL, e-mail over SMTP", kills=SMTP_KILLS, kills_with_deliveries_in_flight=kills_in_flight,
           deliveries=SMTP_EMAILS, lost=SMTP_EMAILS - sum(1 for r in rows if r[1] == "sent"),
           smtp_received_twice=sum(1 for n in arrived.values() if n > 1), repeats_counted=repeats)  # fmt: skip
    assert {(r[1], r[2]) for r in rows} == {("sent", "smtp")}
    assert set(arrived) == {r[0] for r in rows}, "every e-mail arrived over SMTP"
    assert resend_service.emails == []
    assert repeats >= twice, "every second arrival is counted as a possible repeat"
    assert kills_in_flight >= SMTP_KILLS - 1


# --- connections terminated, PostgreSQL restarted ---------------------------------------------------------


class Sessions:
    """WebSocket sessions of `users`, each recording every notification id it receives."""

    def __init__(self, server: ServerProcess, users: list[uuid.UUID]) -> None:
        self.server = server
        self.users = users
        self.received: dict[uuid.UUID, Counter[str]] = {u: Counter() for u in users}
        self.closed: list[str] = []
        self._stop = threading.Event()
        self._authenticated = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self._ready.wait(timeout=30), "every session authenticated"

    async def _session(self, user: uuid.UUID) -> None:
        async with connect(f"{self.server.ws_url}?token={make_token(user)}") as ws:
            # Live once the first unread_count comes: a session opened without `after` is owed nothing
            # committed before its starting point, which it reads after "authenticated".
            while json.loads(await ws.recv())["type"] != "unread_count":
                pass
            self._authenticated += 1  # one event loop: no lock needed
            if self._authenticated == len(self.users):
                self._ready.set()
            while not self._stop.is_set():
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                except TimeoutError:
                    continue
                except ConnectionClosed as closed:
                    self.closed.append(f"{closed.rcvd.code if closed.rcvd else None}")
                    return
                if message["type"] == "notification":
                    self.received[user][message["data"]["id"]] += 1

    async def _run(self) -> None:
        await asyncio.gather(*(self._session(u) for u in self.users), return_exceptions=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Sender:
    """notify.send in a loop from its own thread, recording what committed (a failed commit did not send)."""

    def __init__(self, url: str, users: list[uuid.UUID]) -> None:
        self.url = url
        self.users = users
        self.committed: dict[str, uuid.UUID] = {}
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rng = random.Random(4)
        while not self._stop.is_set():
            user = rng.choice(self.users)
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=2) as conn:
                    while not self._stop.is_set():
                        row = conn.execute("SELECT notify.send(%s, 'task', 'Build finished')", (user,)).fetchone()
                        assert row is not None
                        self.committed[str(row[0])] = user
                        user = rng.choice(self.users)
                        time.sleep(0.01)
            except psycopg.OperationalError:
                self.failed += 1
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def check_each_once(suite: str, sessions: Sessions, sender: Sender, **faults: Any) -> None:
    def all_arrived() -> bool:
        return all(sessions.received[user][nid] >= 1 for nid, user in sender.committed.items())

    deadline = time.monotonic() + 30
    while not all_arrived() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # a late duplicate would show now
    sessions.stop()
    twice = sum(1 for counts in sessions.received.values() for n in counts.values() if n > 1)
    missing = sum(1 for nid, user in sender.committed.items() if sessions.received[user][nid] == 0)
    report(suite, **faults, notifications_committed=len(sender.committed), lost=missing, duplicates=twice,
           sessions_closed=len(sessions.closed), sends_refused_during_fault=sender.failed)  # fmt: skip
    lost = sorted(nid for nid, user in sender.committed.items() if sessions.received[user][nid] == 0)
    assert missing == 0 and twice == 0, (lost[:5], sessions.server.log()[-3000:])
    assert sessions.closed == [], "the sessions stayed open through the fault"


def test_terminating_every_connection_of_notifyd_loses_nothing_and_duplicates_nothing(
    db: psycopg.Connection[Any], own_server: Any, own_worker: Any, resend_service: ResendService
) -> None:
    server = own_server()
    # The worker too, with e-mails in flight to a slow provider: it resumes (or exits non-zero and is
    # started again, as a supervisor would), and every e-mail goes out once.
    worker = own_worker(**FAST, **resend_env(resend_service))
    email_users = [uuid.uuid4() for _ in range(EMAILS_IN_FLIGHT)]
    db.execute(
        "SELECT notify.upsert_recipient_v2(u, u::text || '@example.com') FROM unnest(%s::uuid[]) AS u", (email_users,)
    )
    resend_service.script(*[Response(delay=0.05)] * EMAILS_IN_FLIGHT)
    users = [uuid.uuid4() for _ in range(20)]
    sessions = Sessions(server, users)
    sender = Sender(database_url(db, login=False), users)
    alert(db, email_users, "email")
    terminated = restarts = 0
    try:
        for _ in range(5):
            time.sleep(0.6)
            rows = db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND usename = 'notifyd_test_login'"
            ).fetchall()
            terminated += len(rows)
            if worker.proc is not None and worker.proc.poll() is not None:
                assert worker.proc.returncode != 0, "a worker that lost its database exits non-zero"
                restarts += 1
                worker = own_worker(**FAST, **resend_env(resend_service))
        time.sleep(1)
    finally:
        sender.stop()
    wait_for(lambda: pending(db) == 0, 60, what="the e-mails to go out after the terminations")
    # Accepted e-mails per address: a delivery sent twice (under a new idempotency key) would show here.
    per_address = Counter(address for e in resend_service.emails for address in e.to)
    row = db.execute(
        "SELECT count(*) FROM notify.notification_deliveries WHERE channel = 'email' AND status = 'sent'"
    ).fetchone()
    assert row is not None
    report("pg_terminate_backend (worker)", emails=EMAILS_IN_FLIGHT, emails_sent=row[0],
           emails_sent_twice=sum(1 for n in per_address.values() if n > 1), worker_restarts=restarts)  # fmt: skip
    assert row[0] == len(per_address) == EMAILS_IN_FLIGHT and set(per_address.values()) == {1}
    check_each_once("pg_terminate_backend", sessions, sender, connections_terminated=terminated)
    assert terminated >= 5


def test_a_postgresql_restart_while_streaming_loses_nothing_and_duplicates_nothing(
    private_cluster: PrivateCluster,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    owner, login = prepared(private_cluster)
    server = ServerProcess(login, tmp_path / "notifyd.log")
    server.start()
    try:
        users = [uuid.uuid4() for _ in range(20)]
        sessions = Sessions(server, users)
        sender = Sender(owner, users)
        try:
            time.sleep(1)
            started = time.monotonic()
            private_cluster.stop(mode="immediate")
            private_cluster.start()
            down = time.monotonic() - started
            time.sleep(3)
        finally:
            sender.stop()
        check_each_once("PostgreSQL restart", sessions, sender, restarts=1, seconds_down=round(down, 1))
    finally:
        server.stop()


# --- providers misbehaving --------------------------------------------------------------------------------


class Receiver:
    """One WebSocket session measuring commit → receipt of the notifications a test sends it."""

    def __init__(self, server: ServerProcess) -> None:
        self.user = uuid.uuid4()
        self.server = server
        self.sent: dict[str, float] = {}
        self.arrived: dict[str, float] = {}
        self._stop = threading.Event()
        self._open = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self._open.wait(10)

    async def _run(self) -> None:
        async with connect(f"{self.server.ws_url}?token={make_token(self.user)}") as ws:
            while json.loads(await ws.recv())["type"] != "unread_count":  # live (see Sessions)
                pass
            self._open.set()
            while not self._stop.is_set():
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                except TimeoutError:
                    continue
                if message["type"] == "notification":
                    self.arrived.setdefault(message["data"]["id"], time.monotonic())

    def send(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute("SELECT notify.send(%s, 'task', 'Ping')", (self.user,)).fetchone()
        assert row is not None
        self.sent[str(row[0])] = time.monotonic()  # autocommit: committed when execute returns

    def received_all(self) -> bool:
        return self.sent.keys() <= self.arrived.keys()

    def p95_ms(self) -> float:
        """Of what was sent since the last clear(); may read slightly low (the commit is timed on return)."""
        ordered = sorted(self.arrived[n] - at for n, at in self.sent.items())
        return round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1)

    def clear(self) -> None:
        self.sent.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


FAULTS = 40  # per kind of fault, e-mail and push each
# The deliveries of the faulted sends only (the receiver's own notifications plan skipped ones too).
FAULTED = "WHERE channel <> 'in_app' AND notification_id IN (SELECT id FROM notify.notifications WHERE type <> 'task')"


def test_slow_failing_limiting_and_resetting_providers_are_retried_and_in_app_keeps_its_latency(
    db: psycopg.Connection[Any],
    own_server: Any,
    own_worker: Any,
    push_service: PushService,
    resend_service: ResendService,
) -> None:
    # A timeout long enough that a loaded machine's normal answers never hit it (3 of them deactivate a device).
    env = {**resend_env(resend_service), "WORKER_CONCURRENCY": "4", "PROVIDER_TIMEOUT": "3"}
    stack = start_stack(db, own_server, own_worker, push_service, **env)
    faults = {
        "slow": Response(delay=5.0),  # beyond PROVIDER_TIMEOUT: a timeout
        "500": Response(500, body="upstream failed"),
        "429": Response(429, headers={"Retry-After": "1"}),
        "reset": Response(reset=True),
    }
    push_users = [uuid.uuid4() for _ in range(FAULTS)]
    for i, user in enumerate(push_users):
        _, endpoint = stack.subscribe(user)
        push_service.script(endpoint, list(faults.values())[i % len(faults)])
    email_users = [uuid.uuid4() for _ in range(FAULTS)]
    db.execute("SELECT notify.upsert_recipient_v2(u, u::text || '@example.com') FROM unnest(%s::uuid[]) AS u",
               (email_users,))  # fmt: skip
    resend_service.script(*[list(faults.values())[i % len(faults)] for i in range(FAULTS)])

    receiver = Receiver(stack.processes[0])
    for _ in range(20):  # the baseline, before any provider fault
        receiver.send(db)
        time.sleep(0.02)
    wait_for(receiver.received_all, 10, what="the baseline notifications")
    baseline = receiver.p95_ms()
    receiver.clear()
    for users, channel in ((email_users, "email"), (push_users, "push")):
        alert(db, users, channel)
    for _ in range(40):  # while the worker fights the providers
        receiver.send(db)
        time.sleep(0.05)
    wait_for(lambda: pending(db) == 0, timeout=90, what="every delivery settled")
    receiver.stop()

    outcomes = dict(db.execute(
        f"SELECT status, count(*) FROM notify.notification_deliveries {FAULTED} GROUP BY status"
    ).fetchall())  # fmt: skip
    attempts = db.execute(f"SELECT sum(attempts) FROM notify.notification_deliveries {FAULTED}").fetchone()
    report(
        "provider faults",
        faults_injected=2 * FAULTS,
        kinds="slow/500/429 Retry-After/reset",
        deliveries_sent=outcomes.get("sent", 0),
        attempts=attempts[0] if attempts else None,
        in_app_p95_ms_before=baseline,
        in_app_p95_ms_during=receiver.p95_ms(),
    )
    failures = db.execute(
        f"SELECT channel, attempts, error_message FROM notify.notification_deliveries {FAULTED} AND status <> 'sent'"
    ).fetchall()
    assert outcomes == {"sent": 2 * FAULTS}, failures
    assert attempts is not None and attempts[0] >= 4 * FAULTS, "each faulted delivery was attempted again"
    assert receiver.received_all()
    assert receiver.p95_ms() < max(250.0, 5 * baseline), "in-app kept its latency while providers failed"


# --- overload -------------------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _drain(ws: Any) -> None:
    async for _ in ws:
        pass


async def _abuse(server: ServerProcess, extra_sockets: int) -> Counter[str]:
    """Floods, huge frames and more sockets than allowed; how each ended (slow readers: test_realtime)."""
    endings: Counter[str] = Counter()

    async def ended(kind: str, action: Any) -> None:
        try:
            async with connect(f"{server.ws_url}?token={make_token(uuid.uuid4())}", max_size=None) as ws:
                drained = asyncio.create_task(_drain(ws))  # a client that does not read never sees the close
                await action(ws)
                await asyncio.wait_for(drained, 15)
        except ConnectionClosed:
            pass
        except TimeoutError:
            endings[f"{kind}: still open"] += 1
            return
        except OSError:
            endings[f"{kind}: refused"] += 1
            return
        endings[f"{kind}: {ws.close_code}"] += 1

    async def flood(ws: Any) -> None:
        for _ in range(400):
            await ws.send('{"type":"ping"}')

    async def huge(ws: Any) -> None:
        await ws.send("x" * 1_000_000)

    async def idle(ws: Any) -> None:
        await asyncio.sleep(1)
        await ws.close()

    kinds = [("flood", flood)] * 10 + [("huge frame", huge)] * 10 + [("extra socket", idle)] * extra_sockets
    await asyncio.gather(*(ended(kind, action) for kind, action in kinds))
    return endings


def test_overload_is_refused_cleanly_memory_stays_bounded_and_others_are_unaffected(
    db: psycopg.Connection[Any], own_server: Any
) -> None:
    limit = 60
    server = own_server(WS_MAX_CONNECTIONS=str(limit))
    assert server.proc is not None
    receiver = Receiver(server)
    for _ in range(20):
        receiver.send(db)
        time.sleep(0.02)
    wait_for(receiver.received_all, 10, what="the baseline notifications")
    baseline, before = receiver.p95_ms(), rss_kb(server.proc.pid)
    receiver.clear()

    extra = 4 * limit
    abuse = ThreadPoolExecutor(1).submit(lambda: asyncio.run(_abuse(server, extra)))
    for _ in range(40):
        receiver.send(db)
        time.sleep(0.05)
    endings = abuse.result(timeout=60)
    wait_for(receiver.received_all, 10, what="the notifications sent during the abuse")
    after = rss_kb(server.proc.pid)
    receiver.stop()
    report("overload", ws_max_connections=limit, sockets_tried=extra + 20, endings=dict(sorted(endings.items())),
           rss_mb_before=before // 1024, rss_mb_after=after // 1024, other_client_p95_ms_before=baseline,
           other_client_p95_ms_during=receiver.p95_ms())  # fmt: skip
    assert endings["flood: 1008"] + endings["flood: 1013"] == 10, endings
    assert endings["huge frame: 1009"] == 10, endings
    assert endings["extra socket: 1013"] >= extra - limit, "the sockets over the limit were refused with 1013"
    assert not any(kind.endswith("still open") for kind in endings), endings
    assert after - before < 64 * 1024, "memory stayed bounded"
    # Bounded, not equal: the handshakes of hundreds of sockets share this process's one event loop
    # (67-304 ms seen in CI runs; the figure is printed).
    assert receiver.p95_ms() < max(1000.0, 5 * baseline)
