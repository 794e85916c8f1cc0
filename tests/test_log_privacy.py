"""A full run of notifyd serve and worker, with their logs captured: no token, e-mail address or push key in them."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import psycopg
from websockets.asyncio.client import connect

from tests.figures import report
from tests.server import make_token, wait_for
from tests.standins.http import Response
from tests.standins.push_service import PushService
from tests.standins.resend import ResendService, application_error
from tests.test_webpush import API, start_stack
from tests.test_worker import resend_env


def test_logs_of_a_full_run_hold_no_token_address_or_push_key(
    db: psycopg.Connection[Any],
    own_server: Any,
    own_worker: Any,
    push_service: PushService,
    resend_service: ResendService,
) -> None:
    stack = start_stack(db, own_server, own_worker, push_service, **resend_env(resend_service))
    user, address = uuid.uuid4(), "ada.lovelace@example.com"
    token = make_token(user)
    db.execute("SELECT notify.upsert_recipient_v2(%s, %s)", (user, address))
    _, endpoint = stack.subscribe(user)
    subscription = stack.browsers[endpoint]
    # Failures are where addresses and keys tend to leak: the provider refuses once, then accepts.
    push_service.script(endpoint, Response(500, body=f"no such subscription {endpoint}"))
    resend_service.script(application_error())

    async def live() -> None:
        async with connect(f"{stack.processes[0].ws_url}?token={token}") as ws:
            await ws.recv()
            stack.send(user, priority="critical", title="New sign-in", body="from Berlin")
            while json.loads(await ws.recv())["type"] != "notification":
                pass

    asyncio.run(live())
    stream = f"{stack.processes[0].url}{API}/stream?token={token}"
    with httpx.stream("GET", stream, timeout=5) as response:
        assert response.status_code == 200
    bad = httpx.get(f"{stack.processes[0].url}{API}", headers={"Authorization": f"Bearer {token}x"})
    assert bad.status_code == 401
    wait_for(lambda: resend_service.emails and push_service.messages, 30, what="the e-mail and the push, retried")

    logs = stack.logs()
    secrets = {
        "user JWT": token,
        "e-mail address": address,
        "push p256dh": subscription["keys"]["p256dh"],
        "push auth": subscription["keys"]["auth"],
        "push endpoint path": endpoint.rsplit("/", 1)[1],
        "Resend API key": resend_service.api_key,
    }
    leaked = sorted(name for name, value in secrets.items() if value in logs)
    report("log privacy", log_lines=len(logs.splitlines()), secrets_checked=len(secrets), leaked=len(leaked))
    assert len(logs.splitlines()) > 10, "the run logged"
    assert leaked == []
