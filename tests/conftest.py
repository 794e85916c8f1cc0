"""Real PostgreSQL for every test: a migrated template database per session, a fresh copy per test.

The server is the one the README commands use (DATABASE_URL, 127.0.0.1:5432, or a private
cluster started here). RLS is exercised through a login role that is neither superuser nor
owner, as notifyd's own processes are.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import psycopg
import pytest
from pytest_postgresql import factories

from notifyd.localdb import resolve_server
from notifyd.migrate import migrate

SERVER_URL, PRIVATE_CLUSTER = resolve_server()
_server = urlsplit(SERVER_URL)

# The login role of the tests: like notifyd's, it holds the four roles and nothing else, NOINHERIT.
APP_LOGIN = "notifyd_test_login"
APP_PASSWORD = "notifyd-test-password"


def create_app_login(conn: psycopg.Connection[Any]) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_LOGIN,)).fetchone()
    if not exists:
        conn.execute(
            f"CREATE ROLE {APP_LOGIN} LOGIN NOINHERIT PASSWORD '{APP_PASSWORD}'"  # noqa: S608
        )
    conn.execute(f"GRANT notify_service, notify_authenticated, notify_admin, notify_worker TO {APP_LOGIN}")


def load_database(host: str, port: int, user: str, dbname: str, password: str | None, **_: Any) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(host=host, port=port, user=user, database=dbname, password=password)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(run())
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname, password=password, autocommit=True) as conn:
        create_app_login(conn)


postgresql_noproc = factories.postgresql_noproc(
    host=_server.hostname,
    port=_server.port or 5432,
    user=_server.username or "postgres",
    password=_server.password,
    dbname="notifyd_test",
    load=[load_database],
)
postgresql = factories.postgresql("postgresql_noproc")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if PRIVATE_CLUSTER is not None:
        PRIVATE_CLUSTER.stop()


@pytest.fixture
def db(postgresql: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The test's own database, as its owner (superuser): for setting up, never for RLS checks."""
    postgresql.autocommit = True
    return postgresql


def dsn(conn: psycopg.Connection[Any], *, login: bool) -> dict[str, Any]:
    info = conn.info
    if login:
        return dict(host=info.host, port=info.port, dbname=info.dbname, user=APP_LOGIN, password=APP_PASSWORD)
    return dict(host=info.host, port=info.port, dbname=info.dbname, user=info.user, password=info.password or None)


def database_url(conn: psycopg.Connection[Any], *, login: bool) -> str:
    d = dsn(conn, login=login)
    auth = f"{d['user']}:{d['password']}" if d["password"] else d["user"]
    return f"postgresql://{auth}@{d['host']}:{d['port']}/{d['dbname']}"


class Persona:
    """A connection as the test login role acting as one notify role with given claims."""

    def __init__(self, conn: psycopg.Connection[Any], role: str, claims: dict[str, Any] | None):
        self.conn = conn
        self.role = role
        self.claims = claims

    def __enter__(self) -> psycopg.Cursor[Any]:
        cur = self.conn.cursor()
        cur.execute("BEGIN")
        cur.execute(f"SET LOCAL ROLE {self.role}")
        if self.claims is not None:
            cur.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(self.claims),))
        return cur

    def __exit__(self, *exc: object) -> None:
        self.conn.rollback()


@pytest.fixture
def app(db: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A connection as the non-superuser, non-owner, NOINHERIT login role."""
    conn = psycopg.connect(**dsn(db, login=True), autocommit=True)
    yield conn
    conn.close()


@pytest.fixture
def as_role(app: psycopg.Connection[Any]) -> Any:
    """as_role(role, claims) -> a context whose cursor acts as that role; rolled back after."""

    def make(role: str, claims: dict[str, Any] | None = None) -> Persona:
        return Persona(app, role, claims)

    return make
