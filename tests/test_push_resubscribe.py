"""POST push/resubscribe: a service worker moves its device to the browser's new subscription.

Its only credential is the subscription token that push/subscribe answered (the service worker holds
no user JWT); it names one live Web Push device of one user at one endpoint. Runs against the
session's server, with the VAPID key the Web Push REST tests put in its database.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pytest

from notifyd.core.crypto import SecretBox, parse_key, seal_token, token_hash
from tests.server import ENCRYPTION_KEY, JWT_SECRET, make_token
from tests.test_webpush import (  # noqa: F401 - client, owner and session_key are fixtures
    SUBSCRIBE,
    UNSUBSCRIBE,
    browser_subscription,
    client,
    device_row,
    new_endpoint,
    ok,
    owner,
    refused,
    rows_for,
    session_key,
    user_headers,
)

RESUBSCRIBE = "/api/v1/notifications/push/resubscribe"


def subscribed(client: httpx.Client, user: uuid.UUID | None = None) -> dict[str, Any]:  # noqa: F811
    """A fresh Web Push device of a fresh (or the given) user, as push/subscribe answered it."""
    body = {"subscription": browser_subscription(new_endpoint()), "device_info": {"platform": "web"}}
    return dict(ok(client.post(SUBSCRIBE, json=body, headers=user_headers(user or uuid.uuid4())), 201))


def test_a_device_moves_to_its_new_endpoint_with_the_subscription_token(
    client: httpx.Client,  # noqa: F811
    owner: psycopg.Connection[Any],  # noqa: F811
    session_key: str,  # noqa: F811
) -> None:
    device = subscribed(client)
    old_endpoint = device_row(owner, device["id"])["endpoint"]
    browser = browser_subscription(new_endpoint())
    body = {"token": device["subscription_token"], "subscription": browser, "vapid_public_key": session_key}
    moved = ok(client.post(RESUBSCRIBE, json=body), 200)
    assert set(moved) == {"id", "subscription_token"} and moved["id"] == device["id"]
    assert moved["subscription_token"] != device["subscription_token"]

    row = device_row(owner, device["id"])
    box = SecretBox(parse_key(ENCRYPTION_KEY))
    assert (row["endpoint"], bytes(row["token_hash"])) == (browser["endpoint"], token_hash(browser["endpoint"]))
    assert box.decrypt(row["p256dh_key"]) == browser["keys"]["p256dh"] and row["is_active"]
    assert (str(row["user_id"]), row["device_info"]) == (device["user_id"], {"platform": "web"})
    assert rows_for(owner, old_endpoint) == 0

    # The old token named the old endpoint: it moves nothing any more; the new one does.
    again = {"token": device["subscription_token"], "subscription": browser_subscription(new_endpoint())}
    assert "no longer registered" in refused(client.post(RESUBSCRIBE, json=again), 404)
    ok(client.post(RESUBSCRIBE, json={**again, "token": moved["subscription_token"]}), 200)


def test_the_new_endpoint_of_another_device_gives_way(
    client: httpx.Client,  # noqa: F811
    owner: psycopg.Connection[Any],  # noqa: F811
) -> None:
    device, other = subscribed(client), subscribed(client)
    taken = device_row(owner, other["id"])["endpoint"]
    body = {"token": device["subscription_token"], "subscription": browser_subscription(taken)}
    assert ok(client.post(RESUBSCRIBE, json=body), 200)["id"] == device["id"]
    assert rows_for(owner, taken) == 1 and device_row(owner, device["id"])["endpoint"] == taken


def test_forged_tokens_and_user_jwts_are_401(
    client: httpx.Client,  # noqa: F811
    owner: psycopg.Connection[Any],  # noqa: F811
) -> None:
    device = subscribed(client)
    endpoint = device_row(owner, device["id"])["endpoint"]
    body, other = device["subscription_token"].partition(".")[0], subscribed(client)
    forged = [
        f"{body}.{other['subscription_token'].partition('.')[2]}",  # another device's signature
        seal_token("not-the-server-secret", "push-subscription", {"d": device["id"], "u": device["user_id"]}),
        seal_token(JWT_SECRET, "receipt", {"d": device["id"], "u": device["user_id"]}),  # another purpose
        make_token(device["user_id"]),  # the user's own JWT is not a subscription token
    ]
    for token in forged:
        answer = client.post(RESUBSCRIBE, json={"token": token, "subscription": browser_subscription(new_endpoint())})
        assert "subscription token is not valid" in refused(answer, 401)
    # A JWT in the Authorization header does not stand in for the token either.
    jwt = {"Authorization": f"Bearer {make_token(device['user_id'])}"}
    answer = client.post(RESUBSCRIBE, json={"token": "x", "subscription": browser_subscription(new_endpoint())},
                         headers=jwt)  # fmt: skip
    refused(answer, 401)
    assert device_row(owner, device["id"])["endpoint"] == endpoint


def test_a_removed_or_deactivated_device_stays_removed(
    client: httpx.Client,  # noqa: F811
    owner: psycopg.Connection[Any],  # noqa: F811
) -> None:
    removed, deactivated = subscribed(client), subscribed(client)
    endpoint = device_row(owner, removed["id"])["endpoint"]
    response = client.request(
        "DELETE", UNSUBSCRIBE, json={"subscription_id": removed["id"]},
        headers=user_headers(uuid.UUID(removed["user_id"])),
    )  # fmt: skip
    assert response.status_code == 204
    owner.execute("UPDATE notify.push_subscriptions SET is_active = false WHERE id = %s", (deactivated["id"],))
    for device in (removed, deactivated):
        browser = browser_subscription(new_endpoint())
        answer = client.post(RESUBSCRIBE, json={"token": device["subscription_token"], "subscription": browser})
        assert "no longer registered" in refused(answer, 404)
        assert rows_for(owner, browser["endpoint"]) == 0
    assert rows_for(owner, endpoint) == 0
    assert device_row(owner, deactivated["id"])["is_active"] is False


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"token": None}, "token"),
        ({"subscription": None}, "subscription"),
        ({"subscription": {"endpoint": "http://127.0.0.1:9/push/x"}}, "keys"),
        ({"keys": {"p256dh": "AAAA", "auth": "AAAA"}}, "keys"),  # the flat form is subscribe's only
        ({"vapid_public_key": "A" * 87}, "vapid_public_key"),
        ({"device_info": {}}, "device_info"),
    ],
)
def test_invalid_bodies_are_422(
    client: httpx.Client,  # noqa: F811
    owner: psycopg.Connection[Any],  # noqa: F811
    change: dict[str, Any],
    says: str,
) -> None:
    device = subscribed(client)
    endpoint = device_row(owner, device["id"])["endpoint"]
    body = {"token": device["subscription_token"], "subscription": browser_subscription(new_endpoint()), **change}
    assert says in refused(client.post(RESUBSCRIBE, json=body), 422)
    assert device_row(owner, device["id"])["endpoint"] == endpoint


@pytest.mark.parametrize("endpoint", ["https://evil.example.com/push/1", "http://127.0.0.1.evil.example/push"])
def test_an_endpoint_off_the_allowlist_is_422(
    client: httpx.Client,  # noqa: F811
    owner: psycopg.Connection[Any],  # noqa: F811
    endpoint: str,
) -> None:
    device = subscribed(client)
    body = {"token": device["subscription_token"], "subscription": browser_subscription(endpoint)}
    assert "PUSH_ENDPOINT_ALLOWLIST" in refused(client.post(RESUBSCRIBE, json=body), 422)
    assert rows_for(owner, endpoint) == 0


def test_fcm_devices_get_no_subscription_token(client: httpx.Client) -> None:  # noqa: F811
    phone = {"fcm_token": f"fcm-{uuid.uuid4()}:APA91b"}
    assert ok(client.post(SUBSCRIBE, json=phone, headers=user_headers(uuid.uuid4())), 201)["subscription_token"] is None


def test_openapi_lists_resubscribe_as_public(client: httpx.Client) -> None:  # noqa: F811
    operation = ok(client.get("/openapi.json"), 200)["paths"][RESUBSCRIBE]["post"]
    assert operation["security"] == []
    assert {"200", "401", "404", "422"} <= set(operation["responses"])
