"""`notifyd dev`: the whole service on an embedded default database, with a demo page and demo tokens.

Dev mode only: it mints tokens for a few demo users, which no other mode does.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import jwt
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import BaseRoute, Route

from notifyd import server
from notifyd.config import Settings
from notifyd.localdb import owner_database
from notifyd.migrate import migrate_url
from notifyd.queries import query

DEV_DATABASE = "notifyd"
DEV_LOGIN = "notifyd_dev"
DEV_PASSWORD = "notifyd-dev"
DEMO_USERS = {
    "alice": uuid.UUID("a11ce000-0000-4000-8000-000000000001"),
    "bob": uuid.UUID("b0b00000-0000-4000-8000-000000000002"),
    "carol": uuid.UUID("ca201000-0000-4000-8000-000000000003"),
}


def _as_login(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{DEV_LOGIN}:{DEV_PASSWORD}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def prepare_database(owner_url: str) -> str:
    """Migrates the database and returns the URL notifyd logs in with (never the owner)."""
    await migrate_url(owner_url)
    conn = await asyncpg.connect(owner_url)
    try:
        if not await conn.fetchval(query("dev_login_exists")):
            try:
                await conn.execute(query("create_dev_login"))
            except asyncpg.DuplicateObjectError:
                pass  # made meanwhile by another dev process
        await conn.execute(query("grant_dev_login"))
    finally:
        await conn.close()
    return _as_login(owner_url)


def _token(secret: str, sub: str, role: str) -> str:
    return jwt.encode({"sub": sub, "role": role, "exp": int(time.time()) + 12 * 3600}, secret, algorithm="HS256")


def routes(settings: Settings) -> list[BaseRoute]:
    page = resources.files("notifyd").joinpath("static/demo.html").read_text(encoding="utf-8")

    async def demo(_: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def tokens(_: Request) -> JSONResponse:
        users = {
            name: {"user_id": str(uid), "token": _token(settings.jwt_secret, str(uid), "authenticated")}
            for name, uid in DEMO_USERS.items()
        }
        return JSONResponse({"users": users, "service_token": _token(settings.jwt_secret, "demo-service", "service")})

    return [Route("/", demo, methods=["GET"]), Route("/dev/tokens", tokens, methods=["GET"])]


def run() -> int:
    owner_url, cluster = owner_database(DEV_DATABASE)
    try:
        login_url = asyncio.run(prepare_database(owner_url))
        settings = Settings.from_env(
            database_url=login_url, jwt_secret=os.environ.get("JWT_SECRET") or secrets.token_urlsafe(32)
        )
        print(
            f"notifyd dev: database migrated; demo on http://{settings.host}:{settings.port}/ (Ctrl-C stops)",
            flush=True,
        )
        server.run(settings, extra_routes=routes(settings))
    finally:
        if cluster is not None:
            cluster.stop()
    print("notifyd dev: stopped", flush=True)
    return 0
