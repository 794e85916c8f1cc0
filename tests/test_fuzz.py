"""Schemathesis against /openapi.json of a real notifyd: every operation, positive and negative data,
with the right credentials and without any.

Checks on every answer: no 5xx, invalid input refused with a 4xx, responses and status codes as the
document says, Allow on 405s, and auth never ignored: schemathesis' ignored_auth probe, and every third
example sent again without credentials must be a 401 on every route that has security. The caller is
picked per operation: an admin JWT for admin routes, a service JWT for sender routes, else a user JWT.
The notifyd under test runs on a database of its own, with Web Push and the Resend webhook configured.

FUZZ_EXAMPLES (default 100, CI) sets the generated examples per operation; a longer run by hand:
`FUZZ_EXAMPLES=1000 scripts/test tests/test_fuzz.py`. The session ends with a `fuzz:` line that says
how many requests were made and what they were answered.

The document is notifyd.app.OPENAPI, the one /openapi.json serves (a test checks that they are equal):
schemathesis.pytest.from_fixture, which would load it from the running server, does not run under
pytest 9.2 (it sets Function._nodeid), and a document loaded at import gives one test per operation.
The regression tests at the end pin each finding of the fuzzer.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation

from notifyd.app import OPENAPI
from notifyd.core.crypto import SecretBox, parse_key
from notifyd.domain import vapid
from notifyd.domain.tracking import MAX_TOKEN
from tests.conftest import APP_LOGIN, APP_PASSWORD
from tests.server import ENCRYPTION_KEY, ServerProcess, make_token
from tests.standins.resend import new_webhook_secret

if TYPE_CHECKING:  # schemathesis defines its OpenAPI case type for type checkers only
    from schemathesis.specs.openapi.schemas import OpenApiCase

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
STREAMS = ("/api/v1/notifications/stream", "/api/v1/admin/activity/stream")
ANONYMOUS_EVERY = 3
AUTH_HEADERS = ("authorization", "x-internal-service-key", "x-service-name")

USER = uuid.UUID("5f0c8a52-6a6e-4d3c-9a2e-0d9d3f1b7a10")
TOKENS = {
    "user": make_token(USER),
    "service": make_token("fuzz-service", role="service"),
    "admin": make_token("fuzz-admin", role="admin"),
}

# Operations whose schema-valid requests can still be refused with 422, because validity depends on the
# database or on a rule across fields that the document states in words, not in JSON Schema: an opaque
# cursor of ours, a template that exists and renders, the Idempotency-Key header equal to the field and
# not used before with another request, a P-256 point, an IANA zone PostgreSQL knows, a range whose from
# is before its to, an action the notification offers, a receipt's action only with event "action", an
# org lock only with the channel's value set, quiet hours' start and end together, an unsaved template that
# compiles, a setting's value its kind reads, an interval PostgreSQL reads, an escalation chain's after an
# interval no earlier than the step before it, a phone number that phonenumbers finds valid, a webhook URL the
# SSRF rules allow, a chat URL on its platform's hosts, notification types that exist, a replayed delivery that
# failed, a snooze's end in the future, an admin stream's resume point that PostgreSQL reads as a snapshot. Every
# other operation must accept every request its schema allows.
SEMANTIC_422 = [
    "create_notification", "internal_send", "create_bulk", "list_notifications", "history", "export",
    "subscribe", "resubscribe", "push_unsubscribe", "put_global_preferences", "get_analytics",
    "post_receipt", "put_template", "preview_template", "take_action", "put_org_defaults", "put_org_preference",
    "put_preference", "get_org_stats", "put_topic", "delete_topic", "send_topic", "preview_broadcast",
    "create_broadcast", "preview_draft", "put_setting", "put_retention", "put_escalation", "put_recipient",
    "add_webhook_endpoint", "add_chat_connection", "replay_webhook_delivery", "snooze", "admin_stream",
]  # fmt: skip
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429"]
NEGATIVE_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429"]

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "all", "max-examples": EXAMPLES, "with-security-parameters": False},
        "checks": {
            "positive_data_acceptance": {"expected-statuses": POSITIVE_STATUSES},
            # 413: a body over MAX_BODY_BYTES is refused before it is read, whatever it holds; 431: a path
            # parameter far over its maxLength (percent-encoded) can make the request line over MAX_HEADER_BYTES.
            "negative_data_rejection": {"expected-statuses": [*NEGATIVE_STATUSES, "413", "431"]},
        },
        "operations": [
            {
                "include-operation-id": SEMANTIC_422,
                "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}},
            }
        ],
    }
)


class Tally:
    """Requests made by the fuzz run, per kind; printed once at the end of the session."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.operations: set[str] = set()
        self.examples: Counter[str] = Counter()

    def count(self, response: requests.Response, *_: Any, **__: Any) -> None:
        self.requests["total"] += 1
        self.statuses[response.status_code] += 1

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.requests:
            return
        by_status = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        terminalreporter.write_line(
            f"fuzz: {self.requests['total']} requests over {len(self.operations)} operations "
            f"({self.requests['authenticated']} cases with credentials, {self.requests['anonymous']} without; "
            f"up to {EXAMPLES} generated examples per operation, plus schemathesis' coverage cases and probes); "
            f"statuses {by_status}"
        )


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Tally:
    plugin = Tally()
    request.config.pluginmanager.register(plugin, "notifyd-fuzz-tally")
    return plugin


@pytest.fixture(scope="module")
def fuzz_server(postgresql_noproc: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A notifyd of the module's own on a database of its own: what the fuzzer creates stays there."""
    name = f"notifyd_fuzz_{os.getpid()}"
    pg = postgresql_noproc
    admin = dict(host=pg.host, port=pg.port, user=pg.user, password=pg.password or None, dbname="postgres")
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg.template_dbname}"')
    owner = dict(admin, dbname=name)
    with psycopg.connect(**owner, autocommit=True) as conn:
        # Web Push configured, as the worker would leave it: the VAPID key routes answer 200, not 503.
        public, private = vapid.generate()
        sealed = SecretBox(parse_key(ENCRYPTION_KEY)).encrypt(private)
        conn.execute("SELECT notify.add_vapid_key(%s, %s)", (public, sealed))
        # The fuzzer sends itself test notifications hundreds of times: past the default 5 an hour every
        # one is a 429 (documented and expected), and the route's 202 path would go untried.
        conn.execute("UPDATE notify.settings SET value = '100000' WHERE key = 'rate_limit.test_sends_per_hour'")
    url = f"postgresql://{APP_LOGIN}:{APP_PASSWORD}@{pg.host}:{pg.port}/{name}"
    # The webhooks verify signatures instead of answering 503.
    env = {"RESEND_WEBHOOK_SECRET": new_webhook_secret(), "TWILIO_AUTH_TOKEN": "fuzz-twilio-auth-token"}
    proc = ServerProcess(url, tmp_path_factory.mktemp("fuzz") / "notifyd.log", **env)
    proc.start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as client:
            service = {"Authorization": f"Bearer {TOKENS['service']}"}
            for n in range(3):  # a few notifications, so that lists and counts have rows to describe
                body = {"user_id": str(USER), "type": "task", "title": f"fuzz seed {n}", "body": "seed"}
                assert client.post("/api/v1/notifications", json=body, headers=service).status_code == 202
        yield proc
    finally:
        proc.stop()
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The document notifyd serves (test_the_fuzzed_document_is_the_served_one checks that they are the same).
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)


def test_the_fuzzed_document_is_the_served_one(fuzz_server: ServerProcess) -> None:
    assert httpx.get(f"{fuzz_server.url}/openapi.json").json() == json.loads(json.dumps(OPENAPI))


def credentials(method: str, path: str, security: list[dict[str, Any]]) -> dict[str, str]:
    """The caller each operation is for: an admin for admin routes, a service for sender routes, else a user."""
    if path.startswith("/api/v1/admin/") or path.endswith("/analytics"):
        return {"Authorization": f"Bearer {TOKENS['admin']}"}
    if any("serviceKey" in s for s in security):
        if path.endswith("/explain"):
            return {"Authorization": f"Bearer {TOKENS['user']}"}
        return {"Authorization": f"Bearer {TOKENS['service']}"}
    return {"Authorization": f"Bearer {TOKENS['user']}"}


@pytest.fixture(scope="module")
def session(tally: Tally) -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.hooks["response"].append(tally.count)
        yield s


def stream_once(case: OpenApiCase, base_url: str, session: requests.Session, headers: dict[str, str]) -> None:
    """An SSE route stays open on success: read its status and headers, then hang up."""
    kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
    with session.request(**kwargs, stream=True, timeout=30) as answer:
        documented = {int(code) for code in case.operation.definition.raw["responses"]}
        assert answer.status_code in documented, f"{case.operation.label}: undocumented {answer.status_code}"
        if answer.status_code == 200:
            assert answer.headers["content-type"].startswith("text/event-stream")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz(case: OpenApiCase, fuzz_server: ServerProcess, session: requests.Session, tally: Tally) -> None:
    operation = case.operation
    security = operation.definition.raw.get("security", [])
    tally.operations.add(operation.label)
    tally.examples[operation.label] += 1
    for name in list(case.headers or {}):
        if name.lower() in AUTH_HEADERS:
            del case.headers[name]

    # Without credentials (every ANONYMOUS_EVERY-th example, to keep the run short): a route with security
    # answers 401, whatever else is wrong with the request.
    if tally.examples[operation.label] % ANONYMOUS_EVERY == 1:
        anonymous = case.call(base_url=fuzz_server.url, session=session, timeout=30)
        tally.requests["anonymous"] += 1
        case.validate_response(anonymous, checks=[not_a_server_error])
        path_negative = case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH)
        if security and not path_negative and case.method.upper() == operation.method.upper():
            assert anonymous.status_code == 401, f"{operation.label} without credentials: {anonymous.status_code}"

    headers = credentials(operation.method, operation.path, security)
    if operation.path in STREAMS and case.method.upper() == "GET":
        stream_once(case, fuzz_server.url, session, headers)
    else:
        case.call_and_validate(base_url=fuzz_server.url, session=session, headers=headers, timeout=30)
    tally.requests["authenticated"] += 1


# --- regression tests: one per finding of the fuzzer ----------------------------------------------------

ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}
USER_AUTH = {"Authorization": f"Bearer {TOKENS['user']}"}
SERVICE_AUTH = {"Authorization": f"Bearer {TOKENS['service']}"}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in OPENAPI["paths"].items() for method, op in ops.items()]


def error_code(answer: httpx.Response) -> str:
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", f"/api/v1/notifications/{USER}", {"GET", "DELETE"}),
        ("PUT", "/api/v1/notifications", {"GET", "POST"}),
        ("DELETE", "/unsubscribe/some-token", {"GET", "POST"}),
        ("DELETE", f"/api/v1/admin/orgs/{USER}/preferences", {"GET", "PUT"}),
        ("PUT", "/api/v1/admin/templates/welcome/preview", {"POST"}),
    ],
)
def test_a_405_lists_every_method_of_the_path(
    fuzz_server: ServerProcess, method: str, path: str, allowed: set[str]
) -> None:
    """Finding: one Starlette route per method answered 405 with only that route's method in Allow."""
    answer = httpx.request(method, f"{fuzz_server.url}{path}", headers=ADMIN)
    assert answer.status_code == 405 and error_code(answer) == "METHOD_NOT_ALLOWED"
    assert {m.strip() for m in answer.headers["allow"].split(",")} - {"HEAD"} == allowed


def test_a_template_language_is_a_language_tag(fuzz_server: ServerProcess) -> None:
    """Finding: PUT …/{name}/preview was taken as the language "preview" (422) instead of a 405."""
    body = {"type": "task", "title_template": "Hi", "body_template": "there"}
    bad = httpx.put(f"{fuzz_server.url}/api/v1/admin/templates/welcome/not_a_language", json=body, headers=ADMIN)
    assert bad.status_code == 404 and error_code(bad) == "NOT_FOUND"
    put = httpx.put(f"{fuzz_server.url}/api/v1/admin/templates/fuzz_welcome/de", json=body, headers=ADMIN)
    assert put.status_code == 201, put.text
    assert put.json()["language"] == "de"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (f"/api/v1/admin/orgs/{USER}/stats", {"until": "0.5"}),
        (f"/api/v1/admin/orgs/{USER}/stats", {"since": "1700000000"}),
        ("/api/v1/notifications/export", {"to": "0.5"}),
        ("/api/v1/notifications/history", {"from": "12"}),
        ("/api/v1/notifications/analytics", {"from": "1", "to": "2"}),
    ],
)
def test_a_number_is_not_a_date_time(fuzz_server: ServerProcess, path: str, params: dict[str, str]) -> None:
    """Finding: pydantic took "0.5" as Unix time 1970-01-01T00:00:00.5Z; the document says date-time."""
    headers = ADMIN if "admin" in path or "analytics" in path else USER_AUTH
    answer = httpx.get(f"{fuzz_server.url}{path}", params=params, headers=headers)
    assert answer.status_code == 422 and error_code(answer) == "VALIDATION_ERROR", answer.text
    assert "ISO 8601" in answer.json()["error"]["message"]


def test_a_number_is_not_a_send_at(fuzz_server: ServerProcess) -> None:
    body = {"user_id": str(USER), "type": "task", "title": "later", "send_at": 1_900_000_000}
    answer = httpx.post(f"{fuzz_server.url}/api/v1/notifications", json=body, headers=SERVICE_AUTH)
    assert answer.status_code == 422 and "ISO 8601" in answer.json()["error"]["message"]
    body["send_at"] = "2030-01-01T00:00:00Z"
    assert httpx.post(f"{fuzz_server.url}/api/v1/notifications", json=body, headers=SERVICE_AUTH).status_code == 202


def test_an_empty_stats_bound_is_documented_and_means_none(fuzz_server: ServerProcess) -> None:
    """Finding: ?until= (empty: no bound) was accepted while the document allowed date-times only."""
    params = OPENAPI["paths"]["/api/v1/admin/orgs/{org_id}/stats"]["get"]["parameters"]
    until = next(p for p in params if p["name"] == "until")
    assert {"type": "string", "maxLength": 0} in until["schema"]["anyOf"]
    answer = httpx.get(f"{fuzz_server.url}/api/v1/admin/orgs/{USER}/stats?until=", headers=ADMIN)
    assert answer.status_code in (200, 404), answer.text  # 404: no such org; never a 422 for the empty bound


def test_the_test_send_body_is_optional_in_the_document(fuzz_server: ServerProcess) -> None:
    """Finding: POST …/test works without a body (all defaults) but the document said the body is required."""
    assert OPENAPI["paths"]["/api/v1/notifications/test"]["post"]["requestBody"]["required"] is False
    assert httpx.post(f"{fuzz_server.url}/api/v1/notifications/test", headers=USER_AUTH).status_code == 202


def test_an_open_pixel_token_longer_than_any_token_is_404(fuzz_server: ServerProcess) -> None:
    """Finding: /t/open/{token} answered 200 for a path longer than the document's maxLength."""
    (token,) = (p for p in OPENAPI["paths"]["/t/open/{token}"]["get"]["parameters"] if p["name"] == "token")
    assert token["schema"]["maxLength"] == MAX_TOKEN
    assert httpx.get(f"{fuzz_server.url}/t/open/{'a' * MAX_TOKEN}").headers["content-type"] == "image/gif"
    too_long = httpx.get(f"{fuzz_server.url}/t/open/{'a' * (MAX_TOKEN + 1)}")
    assert too_long.status_code == 404 and error_code(too_long) == "NOT_FOUND"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/notifications/preferences/task", {"push_enabled": None}),
        ("/api/v1/notifications/preferences/task", {"quiet_hours_windows": None}),
        ("/api/v1/notifications/preferences/task", {"in_app_enabled": False}),
        ("/api/v1/notifications/preferences/global", {"all_email_enabled": None}),
        ("/api/v1/notifications/preferences/global", {"timezone": None}),
        (f"/api/v1/admin/orgs/{USER}/preferences", {"push_locked": None}),
    ],
)
def test_null_is_refused_where_the_database_refuses_it(
    fuzz_server: ServerProcess, path: str, body: dict[str, Any]
) -> None:
    """Finding: the document allowed null for keys the database refuses null for (a 422 for schema-valid data)."""
    headers = ADMIN if "admin" in path else USER_AUTH
    answer = httpx.put(f"{fuzz_server.url}{path}", json=body, headers=headers)
    assert answer.status_code == 422 and error_code(answer) == "VALIDATION_ERROR"
    key = next(iter(body))
    template = path.replace(str(USER), "{org_id}").replace("/task", "/{notification_type}")
    model = OPENAPI["paths"][template]["put"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = OPENAPI["components"]["schemas"][model.rsplit("/", 1)[1]]["properties"][key]
    assert "null" not in json.dumps(schema), schema


def test_path_parameters_say_what_the_handlers_accept() -> None:
    """Finding: notification_type and language were any string up to 100 characters; the handlers refuse most."""
    for path, method, op in operations():
        for param in op.get("parameters", []):
            if param["name"] == "notification_type":
                assert param["schema"]["pattern"] == "^[a-z][a-z0-9_]{0,49}$", (method, path)
            if param["name"] == "language":
                assert param["schema"]["maxLength"] == 35 and "pattern" in param["schema"], (method, path)


def test_every_status_notifyd_answers_is_documented() -> None:
    """Findings: 404 for a non-uuid id (no route matches), 413 (MAX_BODY_BYTES) and 429 (full queues) were missing."""
    for path, method, op in operations():
        codes = set(op["responses"])
        if "{" in path and any(p["schema"].get("format") == "uuid" for p in op["parameters"] if p["in"] == "path"):
            assert "404" in codes, (method, path)
        if "requestBody" in op:
            assert "413" in codes, (method, path)
    for path in ("/api/v1/notifications", "/api/v1/notifications/bulk", "/api/v1/internal/notifications/send"):
        assert "429" in OPENAPI["paths"][path]["post"]["responses"]


def test_a_non_uuid_id_is_a_documented_404(fuzz_server: ServerProcess) -> None:
    answer = httpx.delete(f"{fuzz_server.url}/api/v1/admin/users/not-a-uuid", headers=ADMIN)
    assert answer.status_code == 404 and error_code(answer) == "NOT_FOUND"


def test_operation_ids_are_unique() -> None:
    """Finding: DELETE …/push/unsubscribe and POST /unsubscribe/{token} were both "unsubscribe"."""
    ids = [op["operationId"] for _, _, op in operations() if "operationId" in op]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_the_document_says_a_notification_needs_a_title_or_a_template(fuzz_server: ServerProcess) -> None:
    """Finding: {"title": null, "template_id": null} was schema-valid but refused by the table's CHECK."""
    for name in ("NotificationCreate", "BulkCreate"):
        alternatives = OPENAPI["components"]["schemas"][name]["anyOf"]
        assert [a["required"] for a in alternatives] == [["title"], ["template_id"]]
    body = {"user_id": str(USER), "type": "task", "title": " "}
    answer = httpx.post(f"{fuzz_server.url}/api/v1/notifications", json=body, headers=SERVICE_AUTH)
    assert answer.status_code == 422 and "title or a template" in answer.json()["error"]["message"]


def test_every_operation_documents_and_answers_431_for_an_oversized_head(fuzz_server: ServerProcess) -> None:
    """schemathesis' header values stay far below MAX_HEADER_BYTES (16 KiB), so the fuzzer never meets the 431
    that any route may answer: each documented operation is sent a head over the limit here."""
    pad = {"X-Pad": "p" * 20_000}
    for path, method, op in operations():
        assert "431" in op["responses"], (method, path)
        url = "/".join(str(USER) if part.endswith("_id}") else "x" if part.startswith("{") else part
                       for part in path.split("/"))  # fmt: skip
        answer = httpx.request(method.upper(), f"{fuzz_server.url}{url}", headers={**ADMIN, **pad})
        assert answer.status_code == 431 and error_code(answer) == "HEADERS_TOO_LARGE", (method, path)
        assert "MAX_HEADER_BYTES" in answer.json()["error"]["message"]
    assert httpx.get(f"{fuzz_server.url}/healthz", headers=ADMIN).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "other"),
    [
        ("/api/v1/notifications", {"user_id": str(USER), "type": "task", "title": "a"}, {"title": "b"}),
        (
            "/api/v1/internal/notifications/send",
            {"user_id": str(USER), "type": "task", "title": "a"},
            {"data": {"x": 1}},
        ),
        ("/api/v1/notifications/bulk", {"user_ids": [str(USER)], "type": "task", "title": "a"}, {"priority": "low"}),
    ],  # fmt: skip
)
def test_a_key_reused_with_another_body_is_a_documented_422(
    fuzz_server: ServerProcess, path: str, body: dict[str, Any], other: dict[str, Any]
) -> None:
    """The fuzzer sends random Idempotency-Keys: a repeat with another body is an expected 422, never a 500."""
    assert "422" in OPENAPI["paths"][path]["post"]["responses"]
    headers = {**SERVICE_AUTH, "Idempotency-Key": str(uuid.uuid4())}
    assert httpx.post(f"{fuzz_server.url}{path}", json=body, headers=headers).status_code == 202
    answer = httpx.post(f"{fuzz_server.url}{path}", json={**body, **other}, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == {
        "code": "VALIDATION_ERROR", "message": "idempotency key reused with a different request",
        "field": "idempotency_key",
        "hint": "a replay must repeat the first request exactly; a new request needs a new key",
    }  # fmt: skip
