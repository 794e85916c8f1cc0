"""Read-your-writes with read replicas, across serve processes: the client carries its last write's position.

After a caller's successful write (any POST, PUT, PATCH or DELETE of the API), the answer carries a token,
sealed with JWT_SECRET, naming the caller and the primary's WAL position after the commit: in the
X-Notifyd-Read-After header and in a cookie of the same value. A read that tolerates lag and comes back
with it (header first, else the cookie) runs on a replica only once that replica has replayed the position,
else on the primary; whichever serve process gets it. A token that is not ours, not the caller's, or older
than its lifetime sends the read to the primary: never wrong, only slower. Every answer of such a read
names where it ran in X-Notifyd-Read-From (primary or replica).

Without DATABASE_REPLICA_URL none of this runs: no tokens, no extra headers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifyd.core.auth import Caller
from notifyd.core.config import Settings
from notifyd.core.crypto import open_token, seal_token
from notifyd.db.replicas import REPLICA, Databases, valid_lsn

T = TypeVar("T")

HEADER = "X-Notifyd-Read-After"
COOKIE = "notifyd_read_after"
WHERE_HEADER = "X-Notifyd-Read-From"
PURPOSE = "read after write"
# Seconds a token counts (and its cookie lives): longer than any lag a replica should ever have.
LIFETIME = 300
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API = "/api/"


# The request header as the OpenAPI document of each lag-tolerant read describes it.
DOCUMENTED = (
    (
        HEADER,
        "with read replicas: the token the answer to the caller's last write carried (or its cookie, "
        f"{COOKIE}); the read then shows that write. The answer names where it ran in {WHERE_HEADER}",
    ),
)


def seal(settings: Settings, caller: Caller, position: str, now: float) -> str:
    payload = {"lsn": position, "role": caller.role, "sub": caller.sub, "exp": str(int(now) + LIFETIME)}
    return seal_token(settings.jwt_secret, PURPOSE, payload)


def read_after(request: Request, caller: Caller) -> tuple[str | None, bool]:
    """(the WAL position a replica must have replayed for this caller, whether the read must go to the primary)."""
    token = request.headers.get(HEADER) or request.cookies.get(COOKIE)
    if not token:
        return None, False
    settings: Settings = request.app.state.settings
    payload = open_token(settings.jwt_secret, PURPOSE, token) if token.isascii() else None
    position = None if payload is None else _position(payload, caller)
    return position, position is None


def _position(payload: dict[str, str], caller: Caller) -> str | None:
    """The token's WAL position if it is the caller's and still counts."""
    try:
        if time.time() >= int(payload["exp"]) or (payload["role"], payload["sub"]) != (caller.role, caller.sub):
            return None
        position = payload["lsn"]
    except (KeyError, TypeError, ValueError):
        return None
    return position if isinstance(position, str) and valid_lsn(position) else None


def is_none(result: object) -> bool:
    return result is None


async def lag_tolerant(
    request: Request,
    caller: Caller,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
    *,
    again_on_primary: Callable[[T], bool] | None = None,
) -> T:
    """`work` as the caller on a replica that shows the caller's writes, else on the primary (notifyd.db.replicas).

    `again_on_primary`: a replica's result it holds for is asked of the primary again (a lookup by id that a
    replica may not have replayed yet).
    """
    databases: Databases = request.app.state.databases
    position, primary = read_after(request, caller) if databases.replicas else (None, False)
    result, where = await databases.read(caller, work, position, primary=primary)
    if where == REPLICA and again_on_primary is not None and again_on_primary(result):
        result, where = await databases.read(caller, work, None, primary=True)
    request.state.read_from = where
    return result


@asynccontextmanager
async def reading(request: Request, caller: Caller) -> AsyncIterator[asyncpg.Connection]:
    """As `lag_tolerant`, for a read that holds its transaction while it streams (a replica failing midway is not
    retried: the answer has started)."""
    databases: Databases = request.app.state.databases
    position, primary = read_after(request, caller) if databases.replicas else (None, False)
    async with databases.reading(caller, position, primary=primary) as (conn, where):
        request.state.read_from = where
        yield conn


class ReadYourWrites:
    """Adds the token to the answers of successful writes, and names where lag-tolerant reads ran.

    Installed only with replicas. Pure ASGI, so that streamed answers pass through untouched; the write's
    transaction has committed before its answer starts, so the position asked then is past its commit.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.cookie = f"{COOKIE}={{}}; Max-Age={LIFETIME}; Path={API}; HttpOnly; SameSite=Lax" + (
            "; Secure" if settings.public_base_url.startswith("https:") else ""
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API):
            await self.app(scope, receive, send)
            return
        state: dict[str, object] = scope.setdefault("state", {})
        write = scope["method"] in WRITES

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                where = state.get("read_from")  # set by lag_tolerant and reading
                if isinstance(where, str):
                    headers[WHERE_HEADER] = where
                caller = state.get("caller")  # set by notifyd.http.shared.authenticate
                if write and isinstance(caller, Caller) and message["status"] < 400:
                    await self.add_token(scope["app"].state.databases, caller, headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def add_token(self, databases: Databases, caller: Caller, headers: MutableHeaders) -> None:
        try:
            position = await databases.write_position()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return  # the write committed; without a token the caller's next reads may only lag
        token = seal(self.settings, caller, position, time.time())
        headers[HEADER] = token
        headers.append("set-cookie", self.cookie.format(token))
