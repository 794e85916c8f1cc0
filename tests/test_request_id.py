"""One request's id from REST through SQL to the worker's delivery line; JSON log lines; hostile ids replaced."""

from __future__ import annotations

import json
import re
import threading
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.server import ServerProcess, make_token, wait_for

SERVICE = {"Authorization": f"Bearer {make_token('billing', role='service')}"}
FIELDS = {"time", "level", "logger", "message", "request_id"}


def json_lines(log: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all(set(line) == FIELDS for line in lines), "every line is an object with the documented fields"
    return lines


def test_a_request_id_follows_the_send_to_the_workers_delivery_line(
    db: psycopg.Connection[Any], own_server: Any, own_worker: Any
) -> None:
    server: ServerProcess = own_server(LOG_FORMAT="json")
    user = uuid.uuid4()
    db.execute("SELECT notify.upsert_recipient_v2(%s, 'trace@example.com', NULL, NULL, NULL)", (user,))
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    body = {"user_id": str(user), "type": "system", "title": "Traced", "priority": "critical", "channels": ["email"]}
    response = httpx.post(f"{server.url}/api/v1/notifications", json=body,
                          headers={**SERVICE, "X-Request-ID": request_id}, timeout=10)  # fmt: skip
    assert response.status_code == 202 and response.headers["x-request-id"] == request_id
    notification_id = response.json()["id"]

    served = wait_for(lambda: [x for x in json_lines(server.log()) if x["request_id"] == request_id], what="serve")
    assert any("POST /api/v1/notifications" in x["message"] for x in served), served

    job = db.execute("SELECT args FROM procrastinate.procrastinate_jobs WHERE args->>'request_id' = %s",
                     (request_id,)).fetchone()  # fmt: skip
    assert job is not None, "the deferred job carries the request id"

    worker = own_worker(LOG_FORMAT="json")

    def delivery_lines() -> list[dict[str, Any]]:
        lines = json_lines(worker.log())
        return [x for x in lines if x["request_id"] == request_id and notification_id in x["message"]]

    delivered = wait_for(delivery_lines, what="the worker's line for the delivery")
    assert delivered[0]["message"].startswith(f"email: notification(s) {notification_id}: "), delivered


def test_the_sql_of_a_request_runs_under_its_id(server: ServerProcess, server_owner_url: str) -> None:
    """application_name names the request while its transaction runs: seen from pg_stat_activity."""
    request_id = f"slow-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_owner_url, autocommit=True) as owner:
        # A lock the request's SQL waits on, so that it is still running when we look.
        owner.execute("BEGIN")
        owner.execute("LOCK TABLE notify.notification_types IN ACCESS EXCLUSIVE MODE")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answer: dict[str, Any] = {}
            body = {"user_id": str(uuid.uuid4()), "type": "system", "title": "waits"}
            thread = threading.Thread(target=lambda: answer.update(r=client.post(
                "/api/v1/notifications", json=body, headers={**SERVICE, "X-Request-ID": request_id})))  # fmt: skip
            thread.start()
            with psycopg.connect(server_owner_url, autocommit=True) as watcher:
                seen = wait_for(lambda: watcher.execute(
                    "SELECT application_name FROM pg_stat_activity WHERE application_name = %s",
                    (f"notifyd {request_id}",)).fetchone(), what="the request in pg_stat_activity")  # fmt: skip
            assert seen == (f"notifyd {request_id}",)
            owner.execute("ROLLBACK")
            thread.join(30)
    assert answer["r"].status_code == 202


@pytest.mark.parametrize(
    "hostile",
    ["", "a b", "x" * 37, "<script>alert(1)</script>", "id;DROP TABLE", "ünïcode", "../../etc", "a\tb", "%0d%0a"],
)
def test_a_hostile_request_id_is_replaced(server: ServerProcess, hostile: str) -> None:
    response = httpx.get(f"{server.url}/healthz", headers={b"X-Request-ID": hostile.encode("utf-8")}, timeout=10)
    answered = response.headers["x-request-id"]
    assert answered != hostile and re.fullmatch(r"[0-9a-f]{32}", answered)


def test_a_request_without_an_id_gets_one_and_a_safe_one_is_kept(server: ServerProcess) -> None:
    made = httpx.get(f"{server.url}/healthz", timeout=10).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    for safe in ("abc", "A.b_c-1", "x" * 36, str(uuid.uuid4())):
        assert httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": safe}, timeout=10).headers[
            "x-request-id"] == safe  # fmt: skip


def test_text_lines_carry_the_id_and_stay_redacted(server: ServerProcess) -> None:
    request_id = f"text-{uuid.uuid4().hex[:8]}"
    token = make_token(uuid.uuid4())
    httpx.get(f"{server.url}/api/v1/notifications?token={token}", headers={"X-Request-ID": request_id}, timeout=10)
    line = wait_for(lambda: next((x for x in server.log().splitlines() if f"[{request_id}]" in x), None), what="line")
    assert token not in server.log() and "[redacted]" in line
