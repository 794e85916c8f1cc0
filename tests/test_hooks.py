"""Webhooks and chat end to end: REST registration, a real worker, and stand-ins that verify what arrives.

The webhook receiver verifies every request with the standardwebhooks library, as a customer's server
does; the chat stand-in checks each platform's documented payload shape. The SSRF and host rules are
tested the way the push allow-list is: a class of URLs at REST, the rule itself as a unit, and the worker
refusing at send time what it is not allowed to reach.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from notifyd.core.config import DEFAULT_CHAT_WEBHOOK_HOSTS
from notifyd.domain.chat import chat_message, post_url
from notifyd.domain.outbound import PublicOnlyResolver, RefusedAddress, url_refused
from notifyd.domain.sensitive import MASK
from notifyd.domain.webhook import signature_header
from notifyd.domain.webpush import endpoint_allowed
from tests.server import QUICK_WORKER_ENV, ServerProcess, WorkerProcess, make_token, wait_for
from tests.standins.chat import ChatPlatforms, check_discord, check_slack, check_teams
from tests.standins.http import Response
from tests.standins.webhook_receiver import WebhookReceiver
from tests.test_sensitive import ACCOUNT, CODE, add_template

API = "/api/v1/notifications"
HOOKS = f"{API}/webhooks"
CHAT = f"{API}/chat-connections"
SERVICE = {"Authorization": f"Bearer {make_token('builds', role='service')}"}
LINK = "https://app.example.com/builds/42"


def user_headers(user: uuid.UUID, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user, **claims)}"}


def ok(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"]["message"])


def rows(conn: psycopg.Connection[Any], sql: str, *args: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(sql, args).fetchall()


class Stack:
    """A server and a worker on the test's database, and what the tests do with them."""

    def __init__(self, db: psycopg.Connection[Any], server: ServerProcess, worker: WorkerProcess) -> None:
        self.db = db
        self.processes = (server, worker)
        self.client = httpx.Client(base_url=server.url, timeout=30)

    def send(self, user: uuid.UUID, **fields: Any) -> str:
        body = {"user_id": str(user), "type": "task", "title": "Build finished", "body": "All green",
                "data": {"url": LINK}, **fields}  # fmt: skip
        return str(ok(self.client.post(API, json=body, headers=SERVICE), 202)["id"])

    def delivery(self, notification_id: str, channel: str) -> dict[str, Any]:
        sql = "SELECT * FROM notify.notification_deliveries WHERE notification_id = %s AND channel = %s"
        found = rows(self.db, sql, notification_id, channel)
        assert len(found) == 1, found
        return found[0]

    def settled(self, notification_id: str, channel: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            row = self.delivery(notification_id, channel)
            return row if row["status"] != "pending" else None

        try:
            settled: dict[str, Any] = wait_for(done, 20, what=f"the {channel} delivery of {notification_id} to settle")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.logs()[-4000:]}") from None
        return settled

    def logs(self) -> str:
        return "".join(p.log() for p in self.processes)


@pytest.fixture
def stack(db: psycopg.Connection[Any], quick_retries: None, own_server: Any, own_worker: Any) -> Iterator[Stack]:
    with ThreadPoolExecutor(2) as pool:
        worker = pool.submit(own_worker, **QUICK_WORKER_ENV)
        server = pool.submit(own_server)
        started = Stack(db, server.result(), worker.result())
    yield started
    started.client.close()


def register(stack: Stack, user: uuid.UUID, url: str, **fields: Any) -> dict[str, Any]:
    created: dict[str, Any] = ok(stack.client.post(HOOKS, json={"url": url, **fields}, headers=user_headers(user)), 201)
    return created


# --- webhooks -------------------------------------------------------------------------------------------


def test_a_webhook_arrives_signed_with_the_delivery_id_and_verifies(
    stack: Stack, webhook_receiver: WebhookReceiver
) -> None:
    user = uuid.uuid4()
    url = webhook_receiver.endpoint()
    endpoint = register(stack, user, url, description="builds")
    assert endpoint["secret"].startswith("whsec_") and endpoint["url"] == url
    webhook_receiver.trust(url, endpoint["secret"])

    sent = stack.send(user, priority="high")
    delivery = stack.settled(sent, "webhook")
    assert (
        delivery["status"] == "sent"
        and delivery["attempts"] == 1
        and delivery["target_id"] == uuid.UUID(endpoint["id"])
    )
    (message,) = webhook_receiver.messages
    assert message.webhook_id == str(delivery["id"]), "webhook-id is the delivery id: the receiver's idempotency key"
    assert message.verified_by == [endpoint["secret"]] and len(message.signatures) == 1
    assert message.json["type"] == "notification.created"
    assert {k: message.json["data"][k] for k in ("id", "user_id", "type", "priority", "title", "body", "url")} == {
        "id": sent, "user_id": str(user), "type": "task", "priority": "high", "title": "Build finished",
        "body": "All green", "url": LINK,
    }  # fmt: skip
    assert endpoint["secret"] not in stack.logs(), "secrets stay out of the logs"
    listed = ok(stack.client.get(HOOKS, headers=user_headers(user)), 200)["items"]
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]
    assert listed[0]["last_success_at"] is not None
    assert ok(stack.client.get(HOOKS, headers=user_headers(uuid.uuid4())), 200)["items"] == [], "others see none"


def test_a_rotated_secret_signs_beside_the_old_one_during_the_overlap(
    stack: Stack, webhook_receiver: WebhookReceiver
) -> None:
    user = uuid.uuid4()
    url = webhook_receiver.endpoint()
    old = register(stack, user, url)["secret"]
    rotated = ok(stack.client.post(f"{HOOKS}/{register_id(stack, user)}/rotate", headers=user_headers(user)), 200)
    new = rotated["secret"]
    assert new != old and new.startswith("whsec_") and rotated["previous_secret_until"]
    webhook_receiver.trust(url, old, new)

    stack.settled(stack.send(user), "webhook")
    (message,) = webhook_receiver.messages
    assert len(message.signatures) == 2 and sorted(message.verified_by) == sorted([old, new])

    # Past the overlap only the new secret signs: a receiver still on the old one refuses it.
    stack.db.execute("UPDATE notify.webhook_endpoints SET previous_secret_until = now() - interval '1 second'")
    webhook_receiver.trust(url, old)
    failed = stack.settled(stack.send(user), "webhook")
    assert failed["status"] == "failed" and failed["error_message"].startswith("401"), failed
    assert len(webhook_receiver.rejected) == 1
    assert len(webhook_receiver.rejected[0].headers["webhook-signature"].split(" ")) == 1


def register_id(stack: Stack, user: uuid.UUID) -> str:
    (endpoint,) = ok(stack.client.get(HOOKS, headers=user_headers(user)), 200)["items"]
    return str(endpoint["id"])


def test_retries_keep_the_webhook_id_and_a_failed_delivery_is_logged_and_replayed(
    stack: Stack, webhook_receiver: WebhookReceiver
) -> None:
    user = uuid.uuid4()
    url = webhook_receiver.endpoint()
    endpoint = register(stack, user, url)
    webhook_receiver.trust(url, endpoint["secret"])

    webhook_receiver.script(url, Response(503, headers={"Retry-After": "0"}))
    retried = stack.settled(stack.send(user), "webhook")
    assert retried["status"] == "sent" and retried["attempts"] == 2
    ids = {r.headers["webhook-id"] for r in webhook_receiver.requests}
    assert ids == {str(retried["id"])}, "every attempt of a delivery carries the same webhook-id"

    webhook_receiver.script(url, Response(400, body="bad"), Response(301, headers={"Location": "http://10.0.0.1/"}))
    failed = stack.settled(stack.send(user), "webhook")
    assert failed["status"] == "failed" and failed["attempts"] == 1 and failed["error_message"].startswith("400")
    log = ok(stack.client.get(f"{HOOKS}/{endpoint['id']}/deliveries", headers=user_headers(user)), 200)["items"]
    assert [(d["id"], d["status"]) for d in log] == [(str(failed["id"]), "failed"), (str(retried["id"]), "sent")]

    # The replay meets the scripted redirect: refused, not followed.
    replay = f"{HOOKS}/{endpoint['id']}/deliveries/{failed['id']}/replay"
    ok(stack.client.post(replay, headers=user_headers(user)), 202)
    redirected = wait_for(lambda: (d := stack.delivery(str(failed["notification_id"]), "webhook"))["attempts"] == 1
                          and d["status"] == "failed" and d["error_message"] != failed["error_message"] and d, 20,
                          what="the replay to settle")  # fmt: skip
    assert "redirect" in redirected["error_message"]
    ok(stack.client.post(replay, headers=user_headers(user)), 202)
    wait_for(lambda: stack.delivery(str(failed["notification_id"]), "webhook")["status"] == "sent", 20, what="replay")
    assert [m.webhook_id for m in webhook_receiver.messages].count(str(failed["id"])) == 1

    # Only the owner replays, and only what failed.
    assert refused(stack.client.post(replay, headers=user_headers(uuid.uuid4())), 404)
    assert "not failed" in refused(stack.client.post(replay, headers=user_headers(user)), 422)


def test_an_endpoint_failing_too_long_is_disabled_and_its_owner_told(
    stack: Stack, webhook_receiver: WebhookReceiver
) -> None:
    stack.db.execute("UPDATE notify.settings SET value = '\"0 seconds\"' WHERE key = 'webhook.disable_after'")
    user = uuid.uuid4()
    url = webhook_receiver.endpoint()
    endpoint = register(stack, user, url)
    webhook_receiver.trust(url, endpoint["secret"])
    webhook_receiver.script(url, Response(400, body="no"))

    stack.settled(stack.send(user), "webhook")
    (listed,) = ok(stack.client.get(HOOKS, headers=user_headers(user)), 200)["items"]
    assert not listed["is_active"] and listed["deactivated_reason"].startswith("every delivery failed since")
    sql = "SELECT title, data, channels FROM notify.notifications WHERE user_id = %s AND type = 'system'"
    notices = rows(stack.db, sql, user)
    assert notices == [{"title": "A webhook endpoint was disabled", "data": {"webhook_endpoint_id": endpoint["id"]},
                        "channels": ["in_app"]}]  # fmt: skip
    later = stack.send(user)
    assert rows(stack.db, "SELECT 1 FROM notify.notification_deliveries WHERE notification_id = %s AND channel = "
                "'webhook'", later) == [], "a disabled endpoint gets no deliveries"  # fmt: skip

    ok(stack.client.post(f"{HOOKS}/{endpoint['id']}/enable", headers=user_headers(user)), 204)
    assert stack.settled(stack.send(user), "webhook")["status"] == "sent"


def test_the_worker_refuses_an_endpoint_it_may_not_reach_at_send_time(
    db: psycopg.Connection[Any], own_server: Any, own_worker: Any, webhook_receiver: WebhookReceiver
) -> None:
    """Registered while loopback was allowed; the worker's own rules (no allow-list) refuse it on send."""
    stack = Stack(db, own_server(), own_worker(**QUICK_WORKER_ENV, WEBHOOK_ENDPOINT_ALLOWLIST=""))
    user = uuid.uuid4()
    url = webhook_receiver.endpoint()
    register(stack, user, url)
    failed = stack.settled(stack.send(user), "webhook")
    assert failed["status"] == "failed" and "https" in failed["error_message"]
    assert webhook_receiver.requests == []
    stack.client.close()


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data",  # the cloud metadata service
        "https://10.0.0.7/hook",
        "https://192.168.1.1/hook",
        "https://[::1]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://localhost/hook",
        "https://metadata.google.internal/computeMetadata",
        "https://0.0.0.0/hook",
        "http://example.com/hook",  # plain http to a host the allow-list does not name
        "https://user:secret@example.com/hook",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "not a url",
    ],
)
def test_a_webhook_url_the_ssrf_rules_refuse_is_422(client: httpx.Client, url: str) -> None:
    message = refused(client.post(HOOKS, json={"url": url}, headers=user_headers(uuid.uuid4())), 422)
    assert message.startswith("url: ")


@pytest.mark.parametrize(
    ("url", "allowlist", "allowed"),
    [
        ("https://hooks.example.com/in", (), True),
        ("https://93.184.216.34:8443/in", (), True),
        ("https://127.0.0.1/in", (), False),
        ("https://127.0.0.1/in", ("https://127.0.0.1",), True),
        ("http://127.0.0.1:9000/in", ("http://127.0.0.1:*",), True),
        ("http://127.0.0.2:9000/in", ("http://127.0.0.1:*",), False),
        ("https://100.64.0.1/in", (), False),  # carrier-grade NAT
        ("https://[2001:db8::1]/in", (), False),  # documentation range
        ("https://224.0.0.1/in", (), False),
        ("https://sub.localhost/in", (), False),
        ("http://hooks.example.com/in", (), False),
        ("https://hooks.example.com@10.0.0.1/in", (), False),
    ],
)
def test_url_refused(url: str, allowlist: tuple[str, ...], allowed: bool) -> None:
    assert (url_refused(url, allowlist) is None) is allowed


def test_the_resolver_refuses_a_name_of_a_private_address_unless_allow_listed() -> None:
    async def resolve(allowlist: tuple[str, ...]) -> list[str]:
        resolver = PublicOnlyResolver(allowlist)
        try:
            return [a["host"] for a in await resolver.resolve("localhost", 8443)]
        finally:
            await resolver.close()

    with pytest.raises(RefusedAddress, match="localhost resolves to 127.0.0.1"):
        asyncio.run(resolve(()))
    assert "127.0.0.1" in asyncio.run(resolve(("https://localhost:*",)))


def test_signature_header_verifies_with_each_secret() -> None:
    secrets = ["whsec_" + "A" * 43 + "=", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    when = datetime.now(UTC)
    header = signature_header(secrets, "msg_1", when, b'{"a":1}')
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": header}
    for secret in secrets:
        assert Webhook(secret).verify(b'{"a":1}', headers) == {"a": 1}


# --- chat -----------------------------------------------------------------------------------------------


def connect(stack: Stack, user: uuid.UUID, platform: str, url: str) -> dict[str, Any]:
    body = {"platform": platform, "url": url, "label": f"#{platform}"}
    created: dict[str, Any] = ok(stack.client.post(CHAT, json=body, headers=user_headers(user)), 201)
    return created


def test_each_platform_gets_its_own_message_with_a_link_button(stack: Stack, chat_platforms: ChatPlatforms) -> None:
    user = uuid.uuid4()
    urls = {p: chat_platforms.webhook(p) for p in ("slack", "teams", "discord")}
    for platform, url in urls.items():
        connect(stack, user, platform, url)
    sent = stack.send(user, body="Deploy <!channel> & more")
    wait_for(lambda: len(chat_platforms.messages) == 3, 20, what="three chat messages")
    by_platform = {m.platform: m.json for m in chat_platforms.messages}

    slack = by_platform["slack"]
    assert slack["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "Build finished"}}
    assert slack["blocks"][1]["text"]["text"] == "Deploy &lt;!channel&gt; &amp; more", "no mention from a body"
    teams = by_platform["teams"]["attachments"][0]["content"]
    assert teams["type"] == "AdaptiveCard" and teams["body"][0]["text"] == "Build finished"
    discord = by_platform["discord"]
    assert discord["embeds"][0]["title"] == "Build finished" and discord["allowed_mentions"] == {"parse": []}

    buttons = [slack["blocks"][2]["elements"][0]["url"], teams["actions"][0]["url"],
               discord["components"][0]["components"][0]["url"]]  # fmt: skip
    for button in buttons:
        # Through notifyd's click redirect (at PUBLIC_BASE_URL, which these processes leave at its default).
        parts = urlsplit(button)
        redirect = stack.client.get(f"{parts.path}?{parts.query}", follow_redirects=False)
        assert redirect.status_code in (302, 303, 307) and redirect.headers["Location"] == LINK, button
    deliveries = rows(stack.db, "SELECT status, clicked_at FROM notify.notification_deliveries "
                      "WHERE notification_id = %s AND channel = 'chat'", sent)  # fmt: skip
    assert len(deliveries) == 3 and all(d["status"] == "sent" and d["clicked_at"] for d in deliveries)
    for url in urls.values():
        assert url.split("/")[-1] not in stack.logs(), "a chat URL is a credential: it stays out of the logs"
    listed = ok(stack.client.get(CHAT, headers=user_headers(user)), 200)["items"]
    assert sorted(c["platform"] for c in listed) == ["discord", "slack", "teams"] and "url" not in listed[0]


def test_a_deleted_chat_webhook_deactivates_the_connection_and_429_is_retried(
    stack: Stack, chat_platforms: ChatPlatforms
) -> None:
    user = uuid.uuid4()
    url = chat_platforms.webhook("discord")
    connection = connect(stack, user, "discord", url)
    chat_platforms.script(url, Response(429, headers={"Retry-After": "0"}, body={"retry_after": 0}))
    retried = stack.settled(stack.send(user), "chat")
    assert retried["status"] == "sent" and retried["attempts"] == 2

    chat_platforms.remove(url)
    gone = stack.settled(stack.send(user), "chat")
    assert gone["status"] == "failed" and gone["reason"] == "the chat webhook is gone"
    (listed,) = ok(stack.client.get(CHAT, headers=user_headers(user)), 200)["items"]
    assert listed["id"] == connection["id"] and not listed["is_active"]
    assert listed["deactivated_reason"].startswith("the platform says the webhook is gone: 404")
    later = stack.send(user)
    assert rows(stack.db, "SELECT 1 FROM notify.notification_deliveries WHERE notification_id = %s AND channel = "
                "'chat'", later) == []  # fmt: skip
    ok(stack.client.delete(f"{CHAT}/{connection['id']}", headers=user_headers(user)), 204)
    assert ok(stack.client.get(CHAT, headers=user_headers(user)), 200)["items"] == []


@pytest.mark.parametrize(
    ("platform", "url"),
    [
        ("slack", "https://hooks.slack.com.evil.example/services/T/B/x"),
        ("slack", "https://discord.com/api/webhooks/1/x"),  # another platform's host
        ("teams", "https://10.0.0.1/webhookb2/x"),
        ("discord", "http://discord.com/api/webhooks/1/x"),
        ("discord", "https://user@discord.com/api/webhooks/1/x"),
    ],
)
def test_a_chat_url_off_its_platforms_hosts_is_refused(platform: str, url: str) -> None:
    assert not endpoint_allowed(url, DEFAULT_CHAT_WEBHOOK_HOSTS[platform])


@pytest.mark.parametrize(
    ("platform", "url"),
    [
        ("slack", "https://hooks.slack.com/services/T0/B0/x"),
        ("teams", "https://contoso.webhook.office.com/webhookb2/x"),
        ("teams", "https://prod-01.westus.logic.azure.com:443/workflows/x"),
        ("discord", "https://discord.com/api/webhooks/1/x"),
        ("discord", "https://discordapp.com/api/webhooks/1/x"),
    ],
)
def test_a_chat_url_on_its_platforms_hosts_is_allowed(platform: str, url: str) -> None:
    assert endpoint_allowed(url, DEFAULT_CHAT_WEBHOOK_HOSTS[platform])


def test_chat_registration_refuses_a_url_off_the_platform_hosts(client: httpx.Client) -> None:
    body = {"platform": "slack", "url": "https://hooks.slack.com.evil.example/services/T/B/x"}
    assert "SLACK_WEBHOOK_HOSTS" in refused(client.post(CHAT, json=body, headers=user_headers(uuid.uuid4())), 422)


@pytest.mark.parametrize("length", [0, 1, 149, 150, 151, 5000])
@pytest.mark.parametrize("platform", ["slack", "teams", "discord"])
def test_long_titles_and_bodies_still_fit_each_platform(platform: str, length: int) -> None:
    notification = {"title": "T" * max(length, 1), "body": "b" * length * 2, "created_at": "2026-12-07T12:00:00Z"}
    message = chat_message(platform, notification, LINK if length % 2 else None)
    check = {"slack": check_slack, "teams": check_teams, "discord": check_discord}[platform]
    check(message, {"with_components": ["true"]} if "with_components=true" in post_url(platform, "https://x/y") else {})


# --- planning: rate limits, types, org targets, explain and the dead letters ---------------------------


def test_webhook_and_chat_spend_their_own_rate_limits_and_follow_the_targets_types(db: psycopg.Connection[Any]) -> None:
    user, org, colleague = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    db.execute("UPDATE notify.settings SET value = '1' WHERE key IN ('rate_limit.webhook_per_hour', "
               "'rate_limit.chat_per_hour')")  # fmt: skip
    for someone in (user, colleague):
        db.execute("SELECT notify.upsert_recipient(%s, NULL, org_id => %s)", (someone, org))
    db.execute("INSERT INTO notify.webhook_endpoints (user_id, url, secret_encrypted, types) "
               "VALUES (%s, 'https://a.example/in', 'x', '{task}')", (user,))  # fmt: skip
    # The colleague's org channel: it gets every user of the org, the user included.
    db.execute("INSERT INTO notify.chat_connections (user_id, org_id, platform, url_encrypted) "
               "VALUES (%s, %s, 'slack', 'x')", (colleague, org))  # fmt: skip
    sent = [db.execute("SELECT notify.send(%s, %s, 'T')", (user, kind)).fetchone() for kind in ("task", "task", "user")]
    planned = rows(db, "SELECT n.type, d.channel, d.reason, d.scheduled_for > now() AS later "
                   "FROM notify.notification_deliveries AS d "
                   "JOIN notify.notifications AS n ON n.id = d.notification_id "
                   "WHERE d.channel IN ('webhook', 'chat') ORDER BY n.seq, d.channel")  # fmt: skip
    waits = {"webhook": "webhook rate limit (1 per hour): waits for a token",
             "chat": "chat rate limit (1 per hour): waits for a token"}  # fmt: skip
    assert planned == [
        {"type": "task", "channel": "chat", "reason": None, "later": None},
        {"type": "task", "channel": "webhook", "reason": None, "later": None},
        {"type": "task", "channel": "chat", "reason": waits["chat"], "later": True},
        {"type": "task", "channel": "webhook", "reason": waits["webhook"], "later": True},
        {"type": "user", "channel": "chat", "reason": waits["chat"], "later": True},  # the endpoint takes task only
    ]
    assert all(s is not None for s in sent)
    explained = db.execute("SELECT notify.explain(%s)", (sent[0][0],)).fetchone()  # type: ignore[index]
    assert explained is not None
    # Push and e-mail skipped (no device, no address), then the webhook and the org's chat channel.
    assert [d["channel"] for d in explained[0]["decisions"]] == ["in_app", "push", "email", "webhook", "chat"]


def test_a_failed_webhook_is_a_dead_letter_naming_its_endpoint(stack: Stack, webhook_receiver: WebhookReceiver) -> None:
    user = uuid.uuid4()
    url = webhook_receiver.endpoint()
    endpoint = register(stack, user, url)
    webhook_receiver.script(url, Response(422, body="no"))
    failed = stack.settled(stack.send(user), "webhook")
    dead = rows(stack.db, "SELECT channel, target_id, error_message FROM notify.dead_letters WHERE delivery_id = %s",
                failed["id"])  # fmt: skip
    assert [(d["channel"], d["target_id"]) for d in dead] == [("webhook", uuid.UUID(endpoint["id"]))]
    assert dead[0]["error_message"].startswith("422") and dead[0]["error_message"].endswith(": no")


def test_sensitive_fields_reach_webhooks_and_chat_masked(
    stack: Stack, webhook_receiver: WebhookReceiver, chat_platforms: ChatPlatforms
) -> None:
    add_template(stack.db)
    user = uuid.uuid4()
    url = webhook_receiver.endpoint()
    webhook_receiver.trust(url, register(stack, user, url)["secret"])
    connect(stack, user, "slack", chat_platforms.webhook("slack"))
    body = {"user_id": str(user), "type": "security", "priority": "critical", "channels": ["webhook", "chat"],
            "template_id": "sign_in_code", "template_vars": {"code": CODE, "who": "Ann"},
            "data": {"iban": ACCOUNT, "url": LINK}}  # fmt: skip
    ok(stack.client.post(API, json=body, headers=SERVICE), 202)
    wait_for(lambda: webhook_receiver.messages and chat_platforms.messages, 20, what="the webhook and the chat message")
    hook, chat = webhook_receiver.messages[0].json, chat_platforms.messages[0].json
    assert hook["data"]["data"]["iban"] == MASK and hook["data"]["body"] == f"Use {MASK} to sign in, Ann."
    assert chat["blocks"][1]["text"]["text"] == f"Use {MASK} to sign in, Ann."
    for arrived in (hook, chat):
        assert CODE not in str(arrived) and ACCOUNT not in str(arrived)
