"""JSON errors `{"error": {"code", "message", "field"?, "hint"?}}` with the statuses the REST API documents; never a
500 on bad input."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ExceptionHandler

from notifyd.core.auth import AuthError
from notifyd.db.pool import as_worker
from notifyd.db.queries import query

log = logging.getLogger("notifyd")

# notify_private.take_token: a user's queue for a channel is full, answered 429 with Retry-After.
RATE_LIMITED_SQLSTATE = "NT429"

CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    431: "HEADERS_TOO_LARGE",
    500: "INTERNAL_ERROR",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An error answer with a status, a stable code and a message for the caller."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None,
        problem: Problem | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "ERROR")
        self.message = message
        self.headers = headers
        self.problem = problem or Problem(message)


@dataclass(frozen=True)
class Problem:
    """What an error answer says: a message, the request field it concerns and a hint when they are known."""

    message: str
    field: str | None = None
    hint: str | None = None

    def body(self, code: str) -> dict[str, Any]:
        error = {"code": code, "message": self.message, "field": self.field, "hint": self.hint}
        return {"error": {k: v for k, v in error.items() if v is not None}}


def error_response(
    status: int, code: str, message: str | Problem, headers: dict[str, str] | None = None
) -> JSONResponse:
    problem = message if isinstance(message, Problem) else Problem(message)
    return JSONResponse(problem.body(code), status_code=status, headers=headers)


async def audit_refusal(request: Request, status: int) -> None:
    """Records a 401/403 answer in the audit log, so refused attempts can be reviewed; never makes it a 500."""
    if status not in (401, 403):
        return
    detail = {"method": request.method, "path": request.url.path, "status": status,
              "bearer": bool(request.headers.get("authorization"))}  # fmt: skip
    try:
        async with as_worker(request.app.state.pool) as conn:
            await conn.execute(
                query("audit_refusal"), f"rest.{'unauthorized' if status == 401 else 'forbidden'}", detail
            )  # the pool's codec encodes jsonb
    except (asyncpg.PostgresError, OSError) as error:
        log.warning("could not audit a %d answer: %s", status, error)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    await audit_refusal(request, exc.status)
    return error_response(exc.status, exc.code, exc.problem, exc.headers)


async def _auth_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    await audit_refusal(request, 401)
    return error_response(401, CODES[401], exc.message, {"WWW-Authenticate": "Bearer"})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    await audit_refusal(request, exc.status_code)
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, CODES.get(exc.status_code, "ERROR"), str(exc.detail), headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors(include_url=False)
    )
    return error_response(422, CODES[422], problems)


# (schema, table, constraint) -> (the columns it covers in table order, the table a foreign key refers to)
_CONSTRAINTS: dict[tuple[str, str, str], tuple[tuple[str, ...], str | None]] = {}


async def _constraint(pool: asyncpg.Pool, error: asyncpg.PostgresError) -> tuple[tuple[str, ...], str | None]:
    schema, table, name = (getattr(error, f, None) for f in ("schema_name", "table_name", "constraint_name"))
    if not (schema and table and name):
        return (), None
    if (schema, table, name) not in _CONSTRAINTS:  # constraints do not change while notifyd runs
        async with as_worker(pool) as conn:
            row = await conn.fetchrow(query("constraint_columns"), schema, table, name)
        _CONSTRAINTS[schema, table, name] = (tuple(row["columns"] or ()), row["refers_to"]) if row else ((), None)
    return _CONSTRAINTS[schema, table, name]


async def database_problem(pool: asyncpg.Pool, error: asyncpg.PostgresError) -> Problem:
    """The caller's view of a class 22/23 error: never PostgreSQL's relation names, DETAIL (row values) or CONTEXT.

    Constraints are named as sentences: that sentence is the message. PostgreSQL's own words for an unnamed
    constraint become a short one. The field is the column the error names (RAISE ... USING COLUMN, not-null),
    else the first column the constraint covers; the hint is RAISE's HINT.
    """
    message = str(getattr(error, "message", None) or "the database refused the request")
    name = getattr(error, "constraint_name", None)
    columns, refers_to = await _constraint(pool, error)
    field = getattr(error, "column_name", None) or (columns[0] if columns else None)
    if name and " " in name:
        message = name
    elif getattr(error, "table_name", None):  # PostgreSQL's own words: they name the relation
        subject = field or "a value"
        message = {
            "23502": f"{subject} is required",
            "23503": f"{subject} must be a row of {refers_to}" if refers_to else f"{subject} names no existing row",
            "23505": f"{' and '.join(columns) or subject} must be unique: that value is taken already",
        }.get(error.sqlstate or "", f"{subject} is not valid")
    return Problem(message, field, getattr(error, "hint", None))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, asyncpg.PostgresError)
    sqlstate = exc.sqlstate or ""
    # Class 22/23: the database refused the data with a message meant for the caller.
    if sqlstate[:2] in ("22", "23"):
        return error_response(422, CODES[422], await database_problem(request.app.state.pool, exc))
    # Class 28: the database found the caller's claims malformed (notify.current_org_id and
    # current_user_id); notifyd checks the same before, so this is the second line, still a 401.
    if sqlstate[:2] == "28":
        await audit_refusal(request, 401)
        return error_response(401, CODES[401], str(exc), {"WWW-Authenticate": "Bearer"})
    if sqlstate == RATE_LIMITED_SQLSTATE:
        # DETAIL says "retry after N seconds" (notify_private.take_token).
        wait = re.search(r"\d+", getattr(exc, "detail", None) or "")
        problem = Problem(exc.message, hint=getattr(exc, "hint", None))
        return error_response(429, CODES[429], problem, {"Retry-After": wait.group() if wait else "60"})
    if sqlstate == "42501":
        await audit_refusal(request, 403)
        return error_response(403, CODES[403], "not allowed")
    log.error("database error %s: %s", sqlstate, exc)
    return error_response(500, CODES[500], "internal error")


HANDLERS: dict[type[Exception] | int, ExceptionHandler] = {
    ApiError: _api_error,
    AuthError: _auth_error,
    HTTPException: _http_error,
    ValidationError: _validation_error,
    asyncpg.PostgresError: _database_error,
}
