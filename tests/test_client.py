"""notifyd.client against a real notifyd: both clients, both kinds of credentials, errors, retries that send once."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from notifyd.client import AsyncClient, Bearer, Client, NotifydError, Retry, ServiceKey
from tests.server import ServerProcess, make_token

LATER = datetime.now(UTC) + timedelta(days=30)
FAST = Retry(attempts=4, backoff=0.05, max_delay=2.0)


@pytest.fixture
def service_key(owner: psycopg.Connection[Any]) -> ServiceKey:
    name = f"client-{uuid.uuid4().hex[:8]}"
    row = owner.execute("SELECT notify.create_service_key(%s)", (name,)).fetchone()
    assert row is not None
    return ServiceKey(name, row[0])


BEARER = Bearer(make_token("billing", role="service"))


def notifications_with_key(owner: psycopg.Connection[Any], key: str) -> int:
    row = owner.execute("SELECT count(*) FROM notify.notifications WHERE idempotency_key = %s", (key,)).fetchone()
    assert row is not None
    return int(row[0])


def test_both_create_routes_answer_both_id_fields(server: ServerProcess) -> None:
    body = {"user_id": str(uuid.uuid4()), "type": "task", "title": "Both"}
    headers = BEARER.headers()
    for route in ("/api/v1/notifications", "/api/v1/internal/notifications/send"):
        answer = httpx.post(f"{server.url}{route}", json=body, headers=headers, timeout=10).json()
        assert answer["id"] == answer["notification_id"], (route, answer)
        uuid.UUID(answer["id"])


@pytest.mark.parametrize("auth_kind", ["service_key", "jwt"])
def test_sync_client_sends_explains_cancels_and_reads_a_batch(
    server: ServerProcess, owner: psycopg.Connection[Any], service_key: ServiceKey, auth_kind: str
) -> None:
    auth = service_key if auth_kind == "service_key" else BEARER
    user = uuid.uuid4()
    with Client(server.url, auth) as notifyd:
        sent = notifyd.send(user, "task", "Review PR #1", "body", data={"pr": 1}, channels=["in_app"])
        assert sent.id == sent.notification_id and sent.channels == ["in_app"]
        row = owner.execute("SELECT user_id, title, data FROM notify.notifications WHERE id = %s", (sent.id,))
        assert row.fetchone() == (user, "Review PR #1", {"pr": 1})

        explained = notifyd.explain(sent.id)
        assert explained.notification_id == sent.id and explained.user_id == user
        assert [d.channel for d in explained.decisions] == ["in_app"]

        scheduled = notifyd.send(user, "task", "Later", send_at=LATER)
        assert notifyd.cancel(scheduled.id).cancelled is True
        with pytest.raises(NotifydError) as twice:
            notifyd.cancel(scheduled.id)
        assert (twice.value.status, twice.value.code) == (404, "NOT_FOUND")

        users = [uuid.uuid4() for _ in range(3)]
        batch = notifyd.send_bulk(users, "system", "Hello all", channels=["in_app"])
        assert batch.recipient_count == 3
        status = notifyd.batch_status(batch.batch_id)
        assert status.batch_id == batch.batch_id and status.counts.total == 3 and status.counts.created == 3


async def test_async_client_does_the_same(
    server: ServerProcess, owner: psycopg.Connection[Any], service_key: ServiceKey
) -> None:
    user = uuid.uuid4()
    for auth in (service_key, BEARER):
        async with AsyncClient(server.url, auth) as notifyd:
            sent = await notifyd.send(user, "task", "Async", priority="high", idempotency_key=f"a-{uuid.uuid4()}")
            assert (await notifyd.explain(sent.id)).priority == "high"
            scheduled = await notifyd.send(user, "task", "Later", send_at=LATER)
            assert (await notifyd.cancel(scheduled.id)).cancelled
            batch = await notifyd.send_bulk([user, uuid.uuid4()], "system", "Both")
            assert (await notifyd.batch_status(batch.batch_id)).counts.total == 2
            with pytest.raises(NotifydError) as refused:
                await notifyd.send(user, "", "no type")
            assert (refused.value.status, refused.value.code) == (422, "VALIDATION_ERROR")
    row = owner.execute("SELECT count(*) FROM notify.notifications WHERE user_id = %s AND title = 'Async'", (user,))
    assert row.fetchone() == (2,)


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        (lambda c: c.send(uuid.uuid4(), "task", None), 422, "VALIDATION_ERROR"),  # no title, no template
        (lambda c: c.send(uuid.uuid4(), "x" * 51, "long type"), 422, "VALIDATION_ERROR"),
        (lambda c: c.send(uuid.uuid4(), "task", "t", channels=["pigeon"]), 422, "VALIDATION_ERROR"),
        (lambda c: c.send_bulk([], "task", "nobody"), 422, "VALIDATION_ERROR"),
        (lambda c: c.explain(uuid.uuid4()), 404, "NOT_FOUND"),
        (lambda c: c.cancel(uuid.uuid4()), 404, "NOT_FOUND"),
        (lambda c: c.batch_status(uuid.uuid4()), 404, "NOT_FOUND"),
    ],
)
def test_api_errors_are_exceptions_with_status_and_code(
    server: ServerProcess, call: Any, status: int, code: str
) -> None:
    with Client(server.url, BEARER, retry=FAST) as notifyd, pytest.raises(NotifydError) as raised:
        call(notifyd)
    assert (raised.value.status, raised.value.code) == (status, code)
    assert raised.value.message and code in str(raised.value)


@pytest.mark.parametrize(
    "auth",
    [ServiceKey("nobody", "nsk_" + "0" * 64), Bearer("not-a-jwt"), Bearer(make_token(uuid.uuid4()))],
    ids=["unknown-key", "garbage-token", "user-token"],
)
def test_bad_credentials_raise_without_retrying(server: ServerProcess, auth: ServiceKey | Bearer) -> None:
    started = time.monotonic()
    with Client(server.url, auth, retry=Retry(attempts=4, backoff=1.0)) as notifyd, pytest.raises(NotifydError) as e:
        notifyd.send(uuid.uuid4(), "task", "t")
    assert e.value.status in (401, 403) and e.value.code in ("UNAUTHORIZED", "FORBIDDEN")
    assert time.monotonic() - started < 1.0, "a 4xx other than 429 is not retried"


# --- retries ------------------------------------------------------------------------------------------


class FlakyProxy:
    """A TCP proxy in front of notifyd that spoils the first `failures` connections, then forwards.

    mode "drop": the request reaches notifyd (which acts on it), the answer is thrown away and the
    connection closed, as when a load balancer or the network fails after the work is done.
    mode "503": answers 503 with Retry-After itself, without forwarding.
    """

    def __init__(self, upstream_port: int, mode: str, failures: int = 1, retry_after: str = "1") -> None:
        self.upstream_port = upstream_port
        self.mode = mode
        self.failures = failures
        self.retry_after = retry_after
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            spoil = self.connections <= self.failures
            threading.Thread(target=self._serve, args=(client, spoil), daemon=True).start()

    def _serve(self, client: socket.socket, spoil: bool) -> None:
        if spoil and self.mode == "503":
            read_request(client)
            body = b'{"error": {"code": "SERVICE_UNAVAILABLE", "message": "try again"}}'
            client.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Retry-After: {self.retry_after}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        if spoil:
            upstream.sendall(read_request(client))
            upstream.recv(65536)  # notifyd has answered: the work is done
            upstream.close()
            client.close()
            return
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    def close(self) -> None:
        self.listener.close()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(body) < length:
        body += conn.recv(65536)
    return data[: len(head) + 4] + body


def pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (source, target):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def dropping_proxy(server: ServerProcess) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(server.port, "drop")
    yield proxy
    proxy.close()


def test_a_lost_answer_is_retried_with_the_same_key_and_sends_once(
    dropping_proxy: FlakyProxy, owner: psycopg.Connection[Any]
) -> None:
    user = uuid.uuid4()
    with Client(dropping_proxy.url, BEARER, retry=FAST) as notifyd:
        sent = notifyd.send(user, "task", "Exactly once")
    assert dropping_proxy.connections >= 2, "the first answer was lost, so the client asked again"
    rows = owner.execute("SELECT id, idempotency_key FROM notify.notifications WHERE user_id = %s", (user,)).fetchall()
    assert len(rows) == 1 and rows[0][0] == sent.id, "the retry replayed the key: one notification"
    assert rows[0][1] is not None, "the client made a key for the send"


async def test_async_retry_of_a_bulk_send_with_the_callers_key(
    dropping_proxy: FlakyProxy, owner: psycopg.Connection[Any]
) -> None:
    key = f"bulk-{uuid.uuid4()}"
    users = [uuid.uuid4(), uuid.uuid4()]
    async with AsyncClient(dropping_proxy.url, BEARER, retry=FAST) as notifyd:
        batch = await notifyd.send_bulk(users, "system", "Once each", idempotency_key=key)
    assert batch.recipient_count == 2
    row = owner.execute("SELECT count(*) FROM notify.notifications WHERE user_id = ANY(%s)", (users,)).fetchone()
    assert row == (2,), "one notification per recipient, not two"


def test_503_is_retried_after_retry_after(server: ServerProcess, owner: psycopg.Connection[Any]) -> None:
    proxy = FlakyProxy(server.port, "503", failures=2, retry_after="0.5")
    user = uuid.uuid4()
    try:
        started = time.monotonic()
        with Client(proxy.url, BEARER, retry=Retry(attempts=3, backoff=0.01, max_delay=5)) as notifyd:
            notifyd.send(user, "task", "After the wait")
        assert time.monotonic() - started >= 1.0, "waited Retry-After (0.5 s) twice, not the 0.01-s backoff"
    finally:
        proxy.close()
    row = owner.execute("SELECT count(*) FROM notify.notifications WHERE user_id = %s", (user,)).fetchone()
    assert row == (1,)


def test_retries_give_up_with_the_last_answer(server: ServerProcess) -> None:
    proxy = FlakyProxy(server.port, "503", failures=10, retry_after="0")
    try:
        with Client(proxy.url, BEARER, retry=Retry(attempts=3, backoff=0.01)) as notifyd:
            with pytest.raises(NotifydError) as raised:
                notifyd.send(uuid.uuid4(), "task", "never")
        assert (raised.value.status, raised.value.code) == (503, "SERVICE_UNAVAILABLE")
        assert proxy.connections == 3, "exactly `attempts` tries"
    finally:
        proxy.close()


def test_connection_refused_is_retried_then_raised() -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    started = time.monotonic()
    with Client(f"http://127.0.0.1:{port}", BEARER, retry=Retry(attempts=3, backoff=0.2)) as notifyd:
        with pytest.raises(httpx.ConnectError):
            notifyd.send(uuid.uuid4(), "task", "nobody home")
    assert time.monotonic() - started >= 0.6, "backed off 0.2 s, then 0.4 s, between the three attempts"
