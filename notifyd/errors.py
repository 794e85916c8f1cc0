"""JSON errors `{"error": {"code", "message"}}` with the statuses of CONTRACT §3; never a 500 on bad input."""

from __future__ import annotations

import logging
import re

import asyncpg
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ExceptionHandler

from notifyd.auth import AuthError
from notifyd.db import as_worker
from notifyd.queries import query

log = logging.getLogger("notifyd")

# notify_private.take_token: a user's queue for a channel is full (CONTRACT §3: 429 with Retry-After).
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
    500: "INTERNAL_ERROR",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An error answer with a status, a stable code and a message for the caller."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "ERROR")
        self.message = message
        self.headers = headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def audit_refusal(request: Request, status: int) -> None:
    """Records a 401/403 answer in the audit log (SEC-004); never turns the answer into a 500."""
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
    return error_response(exc.status, exc.code, exc.message, exc.headers)


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


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, asyncpg.PostgresError)
    sqlstate = exc.sqlstate or ""
    # Class 22/23: the database refused the data with a message meant for the caller.
    if sqlstate[:2] in ("22", "23"):
        return error_response(422, CODES[422], str(exc))
    # Class 28: the database found the caller's claims malformed (notify.current_org_id and
    # current_user_id); notifyd checks the same before, so this is the second line, still a 401.
    if sqlstate[:2] == "28":
        await audit_refusal(request, 401)
        return error_response(401, CODES[401], str(exc), {"WWW-Authenticate": "Bearer"})
    if sqlstate == RATE_LIMITED_SQLSTATE:
        # DETAIL says "retry after N seconds" (notify_private.take_token).
        wait = re.search(r"\d+", getattr(exc, "detail", None) or "")
        return error_response(429, CODES[429], str(exc), {"Retry-After": wait.group() if wait else "60"})
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
