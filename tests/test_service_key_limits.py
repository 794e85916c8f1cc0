"""Wrong service keys from one client address: counted in the database, 429 with Retry-After past the limit.

Each test runs its own `notifyd serve` with a small SERVICE_KEY_MAX_FAILURES. Requests leave from
127.0.0.1 or from 127.0.0.2 (the whole of 127/8 is loopback), so the server sees two client
addresses; with FORWARDED_ALLOW_IPS it sees the addresses a trusted proxy put in X-Forwarded-For.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from notifyd.core.config import Settings
from tests.server import ServerProcess, make_token

INTERNAL = "/api/v1/internal/notifications/send"
PEER_A, PEER_B = "127.0.0.1", "127.0.0.2"
MAX_FAILURES = 3


@pytest.fixture
def service(db: psycopg.Connection[Any]) -> tuple[str, str]:
    """A service with a live key: (name, key)."""
    name = f"svc-{uuid.uuid4().hex[:8]}"
    row = db.execute("SELECT notify.create_service_key(%s)", (name,)).fetchone()
    assert row is not None
    return name, str(row[0])


@pytest.fixture
def clients() -> Iterator[Any]:
    """clients(server) -> (a client from 127.0.0.1, a client from 127.0.0.2)."""
    opened: list[httpx.Client] = []

    def make(server: ServerProcess) -> tuple[httpx.Client, httpx.Client]:
        for peer in (PEER_A, PEER_B):
            transport = httpx.HTTPTransport(local_address=peer)
            opened.append(httpx.Client(base_url=server.url, transport=transport, timeout=30))
        return opened[-2], opened[-1]

    yield make
    for client in opened:
        client.close()


def send(client: httpx.Client, user: uuid.UUID, name: str, key: str, forwarded: str | None = None) -> httpx.Response:
    headers = {"X-Internal-Service-Key": key, "X-Service-Name": name}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    return client.post(INTERNAL, json={"user_id": str(user), "type": "task", "title": "Deploy"}, headers=headers)


def refused_with_429(answer: httpx.Response, window: float) -> int:
    """The 429 of a locked-out address: the JSON error and a Retry-After within the window; returns it."""
    assert answer.status_code == 429, answer.text
    wait = int(answer.headers["retry-after"])
    assert 1 <= wait <= window
    assert answer.json() == {
        "error": {
            "code": "RATE_LIMITED",
            "message": f"too many wrong service keys from this address: try again in {wait} s",
        }
    }
    return wait


def unauthorized(answer: httpx.Response) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.json() == {"error": {"code": "UNAUTHORIZED", "message": "invalid service key"}}


def failures(db: psycopg.Connection[Any]) -> dict[str, int]:
    rows = db.execute("SELECT client, failures FROM notify_private.service_key_failures").fetchall()
    return {client: count for client, count in rows}


def notifications_of(db: psycopg.Connection[Any], user: uuid.UUID) -> int:
    row = db.execute("SELECT count(*) FROM notify.notifications WHERE user_id = %s", (user,)).fetchone()
    assert row is not None
    return int(row[0])


# (name, key) of a live service -> the (name, key) a request sends instead.
WRONG: dict[str, Callable[[str, str], tuple[str, str]]] = {
    "a wrong key for a real name": lambda name, key: (name, key[:-1] + ("0" if key[-1] != "0" else "1")),
    "an unknown service name": lambda name, key: ("no-such-service", key),
    "a key of the right shape never made": lambda name, key: (name, "nsk_" + uuid.uuid4().hex * 2),
    "no key at all": lambda name, key: (name, ""),
}


@pytest.mark.parametrize(
    "attempts",
    [
        ["a wrong key for a real name"] * MAX_FAILURES,
        ["an unknown service name"] * MAX_FAILURES,
        ["a key of the right shape never made", "an unknown service name", "no key at all"],
    ],
    ids=["wrong key", "unknown name", "mixed"],
)
def test_wrong_keys_from_one_address_lock_it_out_with_429(
    db: psycopg.Connection[Any], own_server: Any, clients: Any, service: tuple[str, str], attempts: list[str]
) -> None:
    name, key = service
    server = own_server(SERVICE_KEY_MAX_FAILURES=str(MAX_FAILURES), SERVICE_KEY_FAILURE_WINDOW="60")
    a, b = clients(server)
    user = uuid.uuid4()
    for attempt in attempts:
        unauthorized(send(a, user, *WRONG[attempt](name, key)))
    assert failures(db) == {PEER_A: MAX_FAILURES}
    # Locked out: wrong keys, and the right key too (its answer would tell a right guess from a wrong one).
    refused_with_429(send(a, user, *WRONG[attempts[0]](name, key)), 60)
    refused_with_429(send(a, user, name, key), 60)
    assert a.post("/api/v1/notifications", json={}, headers={"X-Internal-Service-Key": key, "X-Service-Name": name}
                  ).status_code == 429  # fmt: skip
    assert notifications_of(db, user) == 0, "a refused request wrote nothing"
    assert failures(db) == {PEER_A: MAX_FAILURES}, "refused attempts are not counted again"
    # Another address is not affected, nor are bearer tokens from the locked-out one.
    assert send(b, user, name, key).status_code == 202
    assert notifications_of(db, user) == 1
    assert a.get("/api/v1/notifications", headers={"Authorization": f"Bearer {make_token(user)}"}).status_code == 200


def test_x_forwarded_for_is_ignored_without_forwarded_allow_ips(
    db: psycopg.Connection[Any], own_server: Any, clients: Any, service: tuple[str, str]
) -> None:
    name, key = service
    server = own_server(SERVICE_KEY_MAX_FAILURES=str(MAX_FAILURES), SERVICE_KEY_FAILURE_WINDOW="60")
    a, b = clients(server)
    user = uuid.uuid4()
    for n in range(MAX_FAILURES):  # a new "address" each time: a client trying to spread its guesses
        unauthorized(send(a, user, name, "wrong", forwarded=f"203.0.113.{n + 1}"))
    assert failures(db) == {PEER_A: MAX_FAILURES}, "counted on the TCP peer"
    refused_with_429(send(a, user, name, key, forwarded="198.51.100.1"), 60)
    refused_with_429(send(a, user, name, key, forwarded=f"{PEER_B}, 198.51.100.1"), 60)
    assert notifications_of(db, user) == 0
    assert send(b, user, name, key, forwarded=PEER_A).status_code == 202


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(
    db: psycopg.Connection[Any], own_server: Any, clients: Any, service: tuple[str, str]
) -> None:
    name, key = service
    # The proxy is 127.0.0.1; 10.0.0.0/8 are proxies in front of it. 127.0.0.2 is not trusted.
    server = own_server(
        SERVICE_KEY_MAX_FAILURES=str(MAX_FAILURES),
        SERVICE_KEY_FAILURE_WINDOW="60",
        FORWARDED_ALLOW_IPS="10.0.0.0/8,127.0.0.1",
    )
    proxy, direct = clients(server)
    user = uuid.uuid4()
    attacker, other = "203.0.113.7", "198.51.100.9"
    # Each proxy appends the address it saw: the right-most entry that is not a trusted proxy is the client.
    for forwarded in (attacker, f"{attacker}, 10.1.2.3", f"{other}, {attacker}"):
        unauthorized(send(proxy, user, name, "wrong", forwarded=forwarded))
    assert failures(db) == {attacker: MAX_FAILURES}
    refused_with_429(send(proxy, user, name, key, forwarded=attacker), 60)
    # An entry the attacker put in front of the ones the proxies wrote changes nothing.
    refused_with_429(send(proxy, user, name, key, forwarded=f"{other}, {attacker}, 10.9.9.9"), 60)
    assert notifications_of(db, user) == 0
    # Another client behind the same proxy is not affected.
    assert send(proxy, user, name, key, forwarded=f"{attacker}, {other}").status_code == 202
    assert send(proxy, user, name, key, forwarded=other).status_code == 202
    # A peer that is no trusted proxy is counted on itself, whatever it forwards.
    unauthorized(send(direct, user, name, "wrong", forwarded=other))
    assert failures(db) == {attacker: MAX_FAILURES, PEER_B: 1}
    assert notifications_of(db, user) == 2


def test_the_lockout_ends_with_its_window(
    db: psycopg.Connection[Any], own_server: Any, clients: Any, service: tuple[str, str]
) -> None:
    name, key = service
    window = 2
    server = own_server(SERVICE_KEY_MAX_FAILURES="2", SERVICE_KEY_FAILURE_WINDOW=str(window))
    a, b = clients(server)
    user = uuid.uuid4()
    unauthorized(send(a, user, name, "wrong"))
    unauthorized(send(a, user, name, "wrong"))
    wait = refused_with_429(send(a, user, name, key), window)
    time.sleep(wait + 0.2)
    # A wrong key from elsewhere forgets the windows that ended.
    unauthorized(send(b, user, name, "wrong"))
    assert failures(db) == {PEER_B: 1}
    assert send(a, user, name, key).status_code == 202
    unauthorized(send(a, user, name, "wrong"))  # counting starts again
    assert failures(db) == {PEER_B: 1, PEER_A: 1}
    assert notifications_of(db, user) == 1


@pytest.mark.parametrize("value", ["*", "proxy.internal", "10.0.0.1/8", "127.0.0.1 10.0.0.1"])
def test_forwarded_allow_ips_takes_addresses_and_networks_only(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", value)
    with pytest.raises(SystemExit, match="FORWARDED_ALLOW_IPS takes IP addresses and networks"):
        Settings.from_env("postgresql://localhost/x", "secret")


def test_forwarded_allow_ips_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert Settings.from_env("postgresql://localhost/x", "secret").forwarded_allow_ips == ()
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", " 10.0.0.0/8, ::1 ")
    assert Settings.from_env("postgresql://localhost/x", "secret").forwarded_allow_ips == ("10.0.0.0/8", "::1")
