"""The database's refusals through REST: a clean message, the field and the hint apart, never PostgreSQL's raw text.

Class 22/23 errors answer {"error": {"code", "message", "field"?, "hint"?}}: a constraint named as a
sentence gives that sentence, RAISE gives its message with its HINT as `hint`, PostgreSQL's own words
for unnamed constraints (which name the relation, and whose DETAIL holds row values) become a short
sentence, and nothing of DETAIL or CONTEXT is ever shown.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import psycopg
import pytest

from notifyd.db.pool import as_role, create_pool
from notifyd.http.errors import Problem, database_problem
from tests.conftest import database_url
from tests.server import make_token

API = "/api/v1/notifications"
SERVICE = {"Authorization": f"Bearer {make_token('billing', role='service')}"}
ADMIN = {"Authorization": f"Bearer {make_token('dba', role='admin')}"}
USER = uuid.uuid4()
USER_AUTH = {"Authorization": f"Bearer {make_token(USER)}"}
RAW = ("relation", "CONTEXT", "DETAIL", "HINT", "violates", "\n")
TYPE_HINT = "the types are the rows of notify.notification_types; a DBA adds new ones there"
ORG = uuid.uuid4()


def one(**fields: Any) -> dict[str, Any]:
    return {"user_id": str(USER), "type": "task", "title": "Review PR #123", **fields}


def bulk(**fields: Any) -> dict[str, Any]:
    return {"user_ids": [str(USER), str(uuid.uuid4())], "type": "task", "title": "Release", **fields}


def template(**fields: Any) -> dict[str, Any]:
    return {"type": "task", "title_template": "Hi", "body_template": "there", **fields}


def error(code: str, message: str, field: str | None = None, hint: str | None = None) -> dict[str, Any]:
    detail = {"code": code, "message": message, "field": field, "hint": hint}
    return {"error": {k: v for k, v in detail.items() if v is not None}}


def invalid(message: str, field: str | None = None, hint: str | None = None) -> dict[str, Any]:
    return error("VALIDATION_ERROR", message, field, hint)


CASES = [
    # CHECK constraints named as sentences, their field the first column they cover.
    ("POST", API, SERVICE, one(title=""), 422, invalid("a notification needs a title or a template", "title")),
    ("POST", API, SERVICE, one(title="   "), 422, invalid("a notification needs a title or a template", "title")),
    ("POST", API, SERVICE, one(data={"x": "y" * 20_000}), 422,
     invalid("data must be a JSON object of at most 16 KB", "data")),
    ("POST", f"{API}/bulk", SERVICE, bulk(title=""), 422,
     invalid("a notification needs a title or a template", "title")),
    # RAISE with a HINT: the hint on its own, the column RAISE names as the field.
    ("POST", API, SERVICE, one(type="nope"), 422, invalid('unknown notification type "nope"', "type", TYPE_HINT)),
    ("POST", f"{API}/bulk", SERVICE, bulk(type="nope"), 422,
     invalid('unknown notification type "nope"', "type", TYPE_HINT)),
    ("POST", API, SERVICE, one(group_key="g", data={"group_title": 5}), 422,
     invalid("data.group_title must be a string of 1 to 255 characters, got 5", "data",
             'for example "{count} tickets assigned"')),
    ("POST", f"{API}/bulk", SERVICE, bulk(user_ids=[str(uuid.uuid4()) for _ in range(10_001)]), 400,
     error("BAD_REQUEST", "send_bulk takes at most 10000 recipients, got 10001",
           hint="split the list, or raise batch.max_recipients in notify.settings")),
    ("PUT", f"{API}/preferences/nope", USER_AUTH, {"push_enabled": False}, 422,
     invalid('unknown notification type "nope"', "type", TYPE_HINT)),
    ("PUT", f"{API}/preferences/global", USER_AUTH, {"timezone": "Mars/Base"}, 422,
     invalid('unknown time zone "Mars/Base"', "timezone", "use an IANA name such as Europe/Berlin")),
    ("PUT", f"{API}/preferences/global", USER_AUTH, {"quiet_hours_start": "22:00"}, 422,
     invalid("quiet_hours_start and quiet_hours_end are set together: both or neither")),
    # Encoding and escapes (class 22): PostgreSQL's message without its DETAIL.
    ("POST", API, SERVICE, one(title="a\u0000b"), 422, invalid('invalid byte sequence for encoding "UTF8": 0x00')),
    ("POST", API, SERVICE, one(data={"a": "\u0000"}), 422, invalid("unsupported Unicode escape sequence")),
    # Admin routes: an unnamed foreign key and an unnamed CHECK, in PostgreSQL's words a relation and a DETAIL.
    ("PUT", "/api/v1/admin/templates/errors_fk/en", ADMIN, template(type="nope"), 422,
     invalid("type must be a row of notify.notification_types", "type")),
    ("PUT", "/api/v1/admin/templates/Bad Name/en", ADMIN, template(), 422, invalid("name is not valid", "name")),
    ("PUT", f"/api/v1/admin/orgs/{ORG}/preferences", ADMIN, {"push_locked": True}, 422,
     invalid("push_locked needs push_enabled: lock the channel on (true) or off (false)")),
    ("PUT", f"/api/v1/admin/orgs/{ORG}/preferences/nope", ADMIN, {"push_enabled": True}, 422,
     invalid('unknown notification type "nope"', "type", TYPE_HINT)),
]  # fmt: skip


def written(owner: psycopg.Connection[Any]) -> tuple[int, int, int]:
    row = owner.execute(
        "SELECT (SELECT count(*) FROM notify.notifications WHERE user_id = %s),"
        " (SELECT count(*) FROM notify.notification_templates WHERE name IN ('errors_fk', 'Bad Name')),"
        " (SELECT count(*) FROM notify.notification_preferences WHERE user_id = %s)",
        (USER, USER),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "expected"),
    CASES,
    ids=[f"{c[0]} {c[1][:40]} {i}" for i, c in enumerate(CASES)],
)
def test_database_refusals_answer_a_clean_message_with_field_and_hint(
    client: httpx.Client, owner: psycopg.Connection[Any], method: str, path: str, headers: dict[str, str],
    body: dict[str, Any], status: int, expected: dict[str, Any],
) -> None:  # fmt: skip
    before = written(owner)
    answer = client.request(method, path, json=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.json() == expected
    for part in RAW:
        assert part not in answer.json()["error"]["message"], part
    assert written(owner) == before, "a refused request wrote nothing"


def test_the_error_fields_are_in_the_document() -> None:
    from notifyd.app import OPENAPI

    detail = OPENAPI["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]) == {"code", "message", "field", "hint"}
    assert detail["required"] == ["code", "message"]


async def test_unique_and_not_null_violations_name_the_field_never_the_row(db: psycopg.Connection[Any]) -> None:
    """PostgreSQL's DETAIL of a unique violation holds the row's values: the answer names the column only."""
    pool = await create_pool(database_url(db, login=True), min_size=1, max_size=2)
    try:
        async with as_role(pool, "notify_admin", {"sub": "dba", "role": "admin"}) as conn:
            insert = "INSERT INTO notify.notification_types (name, description) VALUES ($1, $2)"
            errors = []
            for name, description in (("task", "a second task type"), ("new_type", None), ("Bad Type", "x")):
                try:
                    async with conn.transaction():
                        await conn.execute(insert, name, description)
                except asyncpg.PostgresError as refused:
                    errors.append(refused)
        assert [e.sqlstate for e in errors] == ["23505", "23502", "23514"]
        assert all("violates" in e.message for e in errors)
        problems = [await database_problem(pool, e) for e in errors]
    finally:
        await pool.close()
    assert problems == [
        Problem("name must be unique: that value is taken already", "name"),
        Problem("description is required", "description"),
        Problem("type names are lowercase words", "name"),
    ]
