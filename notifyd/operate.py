"""The operators' commands `notifyd send`, `notifyd explain` and `notifyd status`, straight over SQL.

They log in with DATABASE_URL, as serve and worker do, and act through notify's roles: a send runs as
notify_service (the same notify.send and the same request model as the REST routes), the figures as
notify_worker. No service key to mint and no running `serve` needed: an operator on the host has what
the units have.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import pydantic

from notifyd.core.config import env, transaction_pooling
from notifyd.core.models import NotificationCreate
from notifyd.db.pool import as_role, as_worker, create_pool
from notifyd.db.queries import query
from notifyd.domain.sending import send_one_args

# The service name the operators' commands act as (the sub of their claims).
CLI_SERVICE = "notifyd-cli"
CLI_CLAIMS = {"sub": CLI_SERVICE, "role": "service"}


class OperatorError(Exception):
    """Bad input or a refusal of the database: printed as one line, exit status 1, nothing written."""


def _database_url() -> str:
    url = env("DATABASE_URL")
    if not url:
        raise OperatorError("DATABASE_URL is not set")
    return url


def _run(work: Callable[[asyncpg.Pool], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        pool = await create_pool(_database_url(), min_size=1, max_size=1, transaction_pooling=transaction_pooling())
        try:
            return await work(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(go())
    except asyncpg.PostgresError as error:
        raise OperatorError(f"the database refused: {error} (SQLSTATE {error.sqlstate})") from None
    except OSError as error:
        raise OperatorError(f"cannot reach the database: {error}") from None


def _json_object(raw: str | None, option: str) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise OperatorError(f"{option} is not valid JSON: {error.msg} (at character {error.pos})") from None
    if not isinstance(value, dict):
        raise OperatorError(f"{option} must be a JSON object, got {type(value).__name__}")
    return value


def notification_of(
    to: str, type: str, title: str, body: str | None, priority: str, data: str | None, channels: str | None
) -> NotificationCreate:
    """The command line as the REST routes' request model: the same rules, the same messages."""
    fields: dict[str, Any] = {"user_id": to, "type": type, "title": title, "priority": priority,
                              "data": _json_object(data, "--data")}  # fmt: skip
    if body is not None:
        fields["body"] = body
    if channels is not None:
        fields["channels"] = [c.strip() for c in channels.split(",") if c.strip()]
    try:
        return NotificationCreate.model_validate(fields)
    except pydantic.ValidationError as error:
        raise OperatorError("; ".join(f"{_option(e['loc'])}: {e['msg']}" for e in error.errors())) from None


def _option(loc: tuple[int | str, ...]) -> str:
    """The command-line option a field of the request model came from."""
    field = str(loc[0]) if loc else "input"
    return {"user_id": "--to", "input": "input"}.get(field, f"--{field}")


def send(notification: NotificationCreate, idempotency_key: str | None) -> dict[str, Any]:
    async def work(pool: asyncpg.Pool) -> dict[str, Any]:
        channels = list(notification.channels) if notification.channels is not None else None
        async with as_role(pool, "notify_service", CLI_CLAIMS) as conn:
            args = send_one_args(notification, channels, idempotency_key)
            notification_id = await conn.fetchval(query("send_notification"), notification.user_id, *args)
            row = await conn.fetchrow(query("sent_notification"), notification_id)
        assert row is not None, "a service sees every notification"
        return {"id": str(row["id"]), "notification_id": str(row["id"]), "created": row["created"],
                "channels": list(row["channels"]), "created_at": row["created_at"].isoformat()}  # fmt: skip

    result: dict[str, Any] = _run(work)
    return result


def explain(notification_id: str) -> dict[str, Any]:
    try:
        key = uuid.UUID(notification_id)
    except ValueError:
        raise OperatorError(f"not a notification id (a uuid): {notification_id!r}") from None

    async def work(pool: asyncpg.Pool) -> dict[str, Any] | None:
        async with as_role(pool, "notify_service", CLI_CLAIMS) as conn:
            found: dict[str, Any] | None = await conn.fetchval(query("explain"), key)
        return found

    found = _run(work)
    if found is None:
        raise OperatorError(f"no notification {key}")
    result: dict[str, Any] = found
    return result


def status() -> dict[str, Any]:
    async def work(pool: asyncpg.Pool) -> dict[str, Any]:
        async with as_worker(pool) as conn:
            queues = await conn.fetch(query("queue_depth"))
            dead = await conn.fetchval(query("dead_letter_count"))
            waiting = await conn.fetchrow(query("waiting_deliveries"))
        assert waiting is not None
        return {
            "queues": [{"queue": q["queue"], "status": q["status"], "jobs": q["jobs"],
                        "oldest_age_seconds": round(q["oldest_age"] or 0.0, 1)} for q in queues],
            "dead_letters": dead,
            "pending_deliveries": waiting["pending"],
            "oldest_pending_delivery": _iso(waiting["oldest_pending"]),
            "held_deliveries": waiting["held"],
            "oldest_held_delivery": _iso(waiting["oldest_held"]),
        }  # fmt: skip

    result: dict[str, Any] = _run(work)
    return result


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def fail(command: str, error: OperatorError) -> int:
    print(f"notifyd {command}: {error}", file=sys.stderr)
    return 1
