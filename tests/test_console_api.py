"""The admin routes the operator console reads and acts through, on a real notifyd and PostgreSQL: what a DBA,
an org admin and a user see, and the dead-letter batches (all or none, audit-logged)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import returned_id
from tests.server import ServerProcess, make_token, wait_for
from tests.test_email import send
from tests.test_realtime import recv_until, ws_for

ADMIN = "/api/v1/admin"


@pytest.fixture
def serve(own_server: Any) -> ServerProcess:
    proc: ServerProcess = own_server()
    return proc


def member(service: psycopg.Connection[Any], org: uuid.UUID, email: str | None = None) -> uuid.UUID:
    """A new user of the org, with an e-mail address (theirs at example.com unless given)."""
    user = uuid.uuid4()
    service.execute("SELECT notify.upsert_recipient(%s, %s, org_id => %s)", (user, email or f"{user}@example.com", org))
    return user


def dead_letter(db: psycopg.Connection[Any], notification: uuid.UUID, answer: str) -> uuid.UUID:
    """The notification's e-mail delivery, failed for good with the provider's `answer` (as the worker records it)."""
    return returned_id(
        db,
        "UPDATE notify.notification_deliveries SET status = 'failed', attempts = 5, error_message = %s, "
        "failed_at = now() WHERE notification_id = %s AND channel = 'email' RETURNING id",
        (answer, notification),
    )


def headers(role: str, **claims: Any) -> dict[str, str]:
    sub = str(uuid.uuid4()) if role == "authenticated" else "ops"
    return {"authorization": f"Bearer {make_token(sub, role=role, **claims)}"}


@pytest.fixture
def two_orgs(db: psycopg.Connection[Any], service: psycopg.Connection[Any]) -> dict[str, Any]:
    orgs = {"a": uuid.uuid4(), "b": uuid.uuid4()}
    users = {name: member(service, org) for name, org in orgs.items()}
    sent = {name: send(service, user, title=f"for {name}") for name, user in users.items()}
    dead = {name: dead_letter(db, sent[name], f"503 from the provider of {name}") for name in orgs}
    return {"orgs": orgs, "users": users, "sent": sent, "dead": dead}


def test_a_dba_sees_every_org_an_org_admin_theirs_and_a_user_nothing(
    serve: ServerProcess, two_orgs: dict[str, Any]
) -> None:
    dba = headers("admin")
    org_a = headers("admin", org_id=str(two_orgs["orgs"]["a"]))
    url = serve.url + ADMIN

    every = httpx.get(f"{url}/notifications", headers=dba).json()["notifications"]
    assert {row["id"] for row in every} == {str(n) for n in two_orgs["sent"].values()}
    assert {row["channels"]["email"] for row in every} == {"failed"}
    mine = httpx.get(f"{url}/notifications", headers=org_a).json()["notifications"]
    assert [row["id"] for row in mine] == [str(two_orgs["sent"]["a"])]

    letters = httpx.get(f"{url}/dead-letters", headers=org_a).json()["dead_letters"]
    assert [(d["delivery_id"], d["error_message"]) for d in letters] == [
        (str(two_orgs["dead"]["a"]), "503 from the provider of a")
    ]
    assert len(httpx.get(f"{url}/dead-letters", headers=dba).json()["dead_letters"]) == 2

    figures = httpx.get(f"{url}/figures", headers=org_a).json()
    assert figures["dead_letters"] == 1 and sum(p["count"] for p in figures["sends"]) == 1
    assert 0 <= figures["notification_queue_usage"] < 1
    # Each process's own figures are the service's, no org's: a DBA's only.
    assert figures["processes"] == []
    [serving] = wait_for(lambda: httpx.get(f"{url}/figures", headers=dba).json()["processes"], what="serve's report")
    assert serving["kind"] == "serve" and serving["process"].startswith("serve@")
    reported = {sample["name"] for sample in serving["samples"]}
    assert {
        "notifyd_open_sockets",
        "notifyd_commit_to_socket_seconds_bucket",
        "notifyd_listen_reconnects_total",
    } <= reported

    user = headers("authenticated")
    for path in ("notifications", "dead-letters", "figures"):
        refused = httpx.get(f"{url}/{path}", headers=user)
        assert refused.status_code == 403 and "for admins" in refused.json()["error"]["message"]
    refused = httpx.post(f"{url}/dead-letters/retry", headers=user, json={"delivery_ids": [str(two_orgs["dead"]["a"])]})
    assert refused.status_code == 403


def test_the_activity_filters(serve: ServerProcess, two_orgs: dict[str, Any], db: psycopg.Connection[Any]) -> None:
    url = f"{serve.url}{ADMIN}/notifications"
    dba = headers("admin")

    def ids(**params: str) -> set[str]:
        answer = httpx.get(url, headers=dba, params=params)
        assert answer.status_code == 200, answer.text
        return {row["id"] for row in answer.json()["notifications"]}

    a, b = (str(two_orgs["sent"][name]) for name in ("a", "b"))
    assert ids(user_id=str(two_orgs["users"]["b"])) == {b}
    assert ids(priority="critical") == {a, b} and ids(priority="low") == set()
    assert ids(type="task") == {a, b} and ids(type="nope") == set()
    assert ids(channel="email", status="failed") == {a, b} and ids(channel="email", status="sent") == set()
    assert ids(status="failed") == {a, b}
    # A notification's created_at never changes (its id carries it): the range splits the two sends instead.
    assert ids(**{"from": "2000-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"}) == {a, b}
    between = db.execute(
        "SELECT to_char((min(created_at) + (max(created_at) - min(created_at)) / 2) AT TIME ZONE 'UTC',"
        ' \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\') FROM notify.notifications WHERE id = ANY(%s::uuid[])',
        ([a, b],),
    ).fetchone()
    assert between is not None
    assert ids(**{"from": between[0]}) == {b} and ids(to=between[0]) == {a}
    assert httpx.get(url, headers=dba, params={"limit": "0"}).status_code == 422


def audit_rows(db: psycopg.Connection[Any], action: str) -> list[dict[str, Any]]:
    rows = db.execute("SELECT detail FROM notify.audit_log WHERE action = %s ORDER BY id", (action,)).fetchall()
    return [row[0] for row in rows]


def statuses(db: psycopg.Connection[Any], ids: list[uuid.UUID]) -> list[str]:
    found = db.execute(
        "SELECT status FROM unnest(%s::uuid[]) WITH ORDINALITY AS i(id, n) "
        "JOIN notify.notification_deliveries AS d USING (id) ORDER BY n",
        (ids,),
    )
    return [row[0] for row in found.fetchall()]


def test_retry_and_discard_are_all_or_none_scoped_and_audit_logged(
    serve: ServerProcess, two_orgs: dict[str, Any], db: psycopg.Connection[Any]
) -> None:
    url = serve.url + ADMIN
    a, b = two_orgs["dead"]["a"], two_orgs["dead"]["b"]
    org_a = headers("admin", org_id=str(two_orgs["orgs"]["a"]))

    # Another org's dead letter in the batch: nothing is retried.
    refused = httpx.post(f"{url}/dead-letters/retry", headers=org_a, json={"delivery_ids": [str(a), str(b)]})
    assert refused.status_code == 404 and str(b) in refused.json()["error"]["message"]
    refused = httpx.post(f"{url}/dead-letters/discard", headers=org_a, json={"delivery_ids": [str(a), str(b)]})
    assert refused.status_code == 404
    assert statuses(db, [a, b]) == ["failed", "failed"]
    assert audit_rows(db, "dead_letters.retried") == [] and audit_rows(db, "dead_letters.discarded") == []

    done = httpx.post(f"{url}/dead-letters/retry", headers=org_a, json={"delivery_ids": [str(a), str(a)]})
    assert done.json() == {"count": 1}
    assert statuses(db, [a, b]) == ["pending", "failed"]
    [retried] = audit_rows(db, "dead_letters.retried")
    assert retried["count"] == 1 and len(retried["delivery_ids"]) == 1

    # A retried delivery is no dead letter any more: discarding it is refused.
    again = httpx.post(f"{url}/dead-letters/discard", headers=headers("admin"), json={"delivery_ids": [str(a)]})
    assert again.status_code == 404
    done = httpx.post(f"{url}/dead-letters/discard", headers=headers("admin"), json={"delivery_ids": [str(b)]})
    assert done.json() == {"count": 1}
    assert statuses(db, [b]) == ["cancelled"]
    assert [row["count"] for row in audit_rows(db, "dead_letters.discarded")] == [1]
    assert httpx.get(f"{url}/dead-letters", headers=headers("admin")).json()["dead_letters"] == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.just({"delivery_ids": []}),
        st.fixed_dictionaries({"delivery_ids": st.lists(st.text(max_size=40), min_size=1, max_size=3)}),
        st.fixed_dictionaries({"delivery_ids": st.lists(st.uuids().map(str), min_size=501, max_size=502)}),
        st.dictionaries(st.text(max_size=10), st.integers(), max_size=2),
    )
)
def test_a_bad_batch_is_a_clear_4xx_and_changes_nothing(
    serve: ServerProcess, two_orgs: dict[str, Any], db: psycopg.Connection[Any], body: dict[str, Any]
) -> None:
    for action in ("retry", "discard"):
        answer = httpx.post(
            f"{serve.url}{ADMIN}/dead-letters/{action}", headers=headers("admin"), content=json.dumps(body)
        )
        assert answer.status_code in (404, 422), answer.text
        assert answer.json()["error"]["message"]
    assert statuses(db, list(two_orgs["dead"].values())) == ["failed", "failed"]


def test_a_draft_renders_with_the_checks_of_a_save(serve: ServerProcess) -> None:
    url = f"{serve.url}/api/v1/admin/templates/task_assigned/de/preview"
    draft = {
        "type": "task",
        "title_template": "{{ who }} grüßt",
        "body_template": "Hallo {{ who }}",
        "email_html_template": "<p onclick='x()'>{{ who }}<script>alert(1)</script></p>",
        "variables": {"who": "wer"},
        "sample": {"who": "Ada"},
    }
    org_admin = headers("admin", org_id=str(uuid.uuid4()))
    answer = httpx.post(url, headers=org_admin, json=draft)
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert (shown["title"], shown["body"]) == ("Ada grüßt", "Hallo Ada")
    assert shown["rendered"]["email"]["html"] == "<p>Ada</p>"  # cleaned as a real send would be
    assert shown["rendered"]["email"]["subject"] == "Ada grüßt"

    undeclared = httpx.post(url, headers=org_admin, json={**draft, "body_template": "{{ who }} {{ nope }}"})
    assert undeclared.status_code == 422
    assert "uses undeclared variables: nope" in undeclared.json()["error"]["message"]
    broken = httpx.post(url, headers=org_admin, json={**draft, "title_template": "{{ who "})
    assert broken.status_code == 422 and broken.json()["error"]["message"]
    refused = httpx.post(url, headers=headers("authenticated"), json=draft)
    assert refused.status_code == 403
    assert httpx.put(url, headers=org_admin, json=draft).status_code == 405


def test_settings_and_retention_are_read_by_admins_and_changed_by_dbas_only(
    serve: ServerProcess, db: psycopg.Connection[Any]
) -> None:
    url = serve.url + ADMIN
    dba = headers("admin")
    org_admin = headers("admin", org_id=str(uuid.uuid4()))

    read = httpx.get(f"{url}/policies", headers=org_admin).json()
    limits = {s["key"]: s for s in read["settings"]}
    assert limits["rate_limit.push_per_hour"]["value"] == 10 and limits["rate_limit.push_per_hour"]["kind"] == "integer"
    assert read["retention"][0] == {"notification_type": None, "max_age": "90 days", "max_read_per_user": 1000}

    refused = httpx.put(f"{url}/settings/rate_limit.push_per_hour", headers=org_admin, json={"value": 5})
    assert refused.status_code == 403
    refused = httpx.put(f"{url}/retention", headers=org_admin, json={"max_age": "1 day"})
    assert refused.status_code == 403
    assert httpx.get(f"{url}/policies", headers=dba).json() == read

    changed = httpx.put(f"{url}/settings/rate_limit.push_per_hour", headers=dba, json={"value": 25})
    assert changed.status_code == 200 and changed.json()["value"] == 25
    wrong = httpx.put(f"{url}/settings/rate_limit.push_per_hour", headers=dba, json={"value": "lots"})
    assert wrong.status_code == 422 and wrong.json()["error"]["message"]
    unknown = httpx.put(f"{url}/settings/no.such.key", headers=dba, json={"value": 1})
    assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "no setting no.such.key"

    kept = httpx.put(f"{url}/retention", headers=dba, json={"notification_type": "task", "max_age": "30 days"})
    assert kept.json() == {"notification_type": "task", "max_age": "30 days", "max_read_per_user": None}
    again = httpx.put(f"{url}/retention", headers=dba, json={"max_age": "60 days", "max_read_per_user": 10})
    assert again.json() == {"notification_type": None, "max_age": "60 days", "max_read_per_user": 10}
    for bad in ({"max_age": "soon"}, {"max_age": "-1 day"}, {"max_age": "1 day", "notification_type": "nope"}):
        answer = httpx.put(f"{url}/retention", headers=dba, json=bad)
        assert answer.status_code == 422, (bad, answer.text)
    found = db.execute("SELECT notification_type, max_age::text FROM notify.retention_policies ORDER BY 1 NULLS FIRST")
    assert found.fetchall() == [(None, "60 days"), ("task", "30 days")]
    value = db.execute("SELECT value FROM notify.settings WHERE key = 'rate_limit.push_per_hour'").fetchone()
    assert value == (25,)
    audited = db.execute(
        "SELECT count(*) FROM notify.audit_log WHERE target LIKE '%retention%' OR action LIKE '%retention%'"
    )
    assert audited.fetchone() == (2,)


async def test_a_live_frame_is_timed_from_commit_to_socket_and_reported(
    serve: ServerProcess, service: psycopg.Connection[Any]
) -> None:
    user = member(service, uuid.uuid4())

    def histogram_count() -> float:
        body = httpx.get(f"{serve.url}/metrics").text
        return sum(
            s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
            if s.name == "notifyd_commit_to_socket_seconds_count"
        )

    before = histogram_count()
    async with ws_for(serve, user) as ws:
        sent = send(service, user, title="timed")
        *_, frame = await recv_until(ws, "notification")
        assert frame["data"]["id"] == str(sent)
    # Observed just after the frame was written: by the time the client read it, or a moment later.
    wait_for(lambda: histogram_count() == before + 1, timeout=5, what="the frame in the histogram")

    def reported() -> float:
        [serving] = httpx.get(f"{serve.url}{ADMIN}/figures", headers=headers("admin")).json()["processes"]
        return float(
            sum(s["value"] for s in serving["samples"] if s["name"] == "notifyd_commit_to_socket_seconds_count")
        )

    wait_for(lambda: reported() == before + 1, timeout=15, what="the process's report of the timed frame")
