"""Real PostgreSQL for every test: a migrated template database per session, a fresh copy per test.

The server is the one the README commands use (DATABASE_URL, 127.0.0.1:5432, or a private
cluster started here). RLS is exercised through a login role that is neither superuser nor
owner, as notifyd's own processes are.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import psycopg
import pytest
from pytest_postgresql import factories

from notifyd.db.localdb import resolve_server, with_database
from notifyd.db.migrate import migrate
from tests import figures
from tests.browser import browser, context  # noqa: F401 - fixtures for the browser tests
from tests.server import NotifydProcess, ServerProcess, WorkerProcess
from tests.standins.fixtures import (  # noqa: F401 - fixtures for all tests
    chat_platforms,
    fcm_service,
    push_service,
    resend_service,
    twilio_service,
    webhook_receiver,
)

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
        # Every test copies this database: the dead catalog rows the migrations leave (functions, RLS and grants
        # re-applied) made each copy a quarter slower (0.43 s -> 0.32 s). Only the catalogs: a vacuumed table of
        # notifyd's would lose the planner's "never vacuumed" estimate that the plans of the tests were made with.
        catalogs = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class AS c "
            "WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r' AND NOT c.relisshared"
        ).fetchall()
        conn.execute("VACUUM FULL " + ", ".join(name for (name,) in catalogs))


postgresql_noproc = factories.postgresql_noproc(
    host=_server.hostname,
    port=_server.port or 5432,
    user=_server.username or "postgres",
    password=_server.password,
    # One name per test session: several sessions (developers, CI) may share one server.
    dbname=f"notifyd_test_{os.getpid()}",
    load=[load_database],
)
postgresql = factories.postgresql("postgresql_noproc")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if figures.FIGURES:
        terminalreporter.write_sep("-", "what the fault and fuzz suites showed")
        for line in figures.lines():
            terminalreporter.write_line(line)


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


def service_conn(db: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """A backend service's session (notify_service, claims of the service billing) on the test's database."""
    conn = psycopg.connect(**dsn(db, login=True), autocommit=True)
    conn.execute("SET ROLE notify_service")
    conn.execute("""SELECT set_config('request.jwt.claims', '{"sub": "billing", "role": "service"}', false)""")
    return conn


def user_conn(db: psycopg.Connection[Any], user_id: str) -> psycopg.Connection[Any]:
    """An end user's session (notify_authenticated, claims of user_id) on the test's database."""
    conn = psycopg.connect(**dsn(db, login=True), autocommit=True)
    conn.execute("SET ROLE notify_authenticated")
    conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (f'{{"sub": "{user_id}"}}',))
    return conn


def returned_id(conn: psycopg.Connection[Any], statement: str, params: Any = None) -> uuid.UUID:
    """The id in the one row the statement answers (a RETURNING id, or a function's uuid)."""
    row = conn.execute(statement, params).fetchone()
    assert row is not None, f"no row from {statement}"
    return uuid.UUID(str(row[0]))


@pytest.fixture
def service(db: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A backend service's session: sends notifications and upserts recipients."""
    conn = service_conn(db)
    yield conn
    conn.close()


@pytest.fixture
def quick_retries(db: psycopg.Connection[Any]) -> None:
    """Failed deliveries retried within the test's time: the ledger's backoff starts at 0.2 s instead of 10 s."""
    db.execute("UPDATE notify.settings SET value = '\"0.2 seconds\"' WHERE key = 'delivery.retry_base'")


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


@pytest.fixture
def empty_database(db: psycopg.Connection[Any]) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        name = f"notifyd_migrate_{uuid.uuid4().hex[:10]}"
        db.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return with_database(SERVER_URL, name)

    yield make
    for name in made:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def server_database(postgresql_noproc: Any) -> Iterator[str]:
    """A database of its own for the session's notifyd, copied from the migrated template."""
    name = f"notifyd_server_{os.getpid()}"
    admin = dict(
        host=postgresql_noproc.host,
        port=postgresql_noproc.port,
        user=postgresql_noproc.user,
        password=postgresql_noproc.password or None,
        dbname="postgres",
    )
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgresql_noproc.template_dbname}"')
    yield name
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _url(postgresql_noproc: Any, dbname: str, *, login: bool) -> str:
    if login:
        return f"postgresql://{APP_LOGIN}:{APP_PASSWORD}@{postgresql_noproc.host}:{postgresql_noproc.port}/{dbname}"
    auth = postgresql_noproc.user + (f":{postgresql_noproc.password}" if postgresql_noproc.password else "")
    return f"postgresql://{auth}@{postgresql_noproc.host}:{postgresql_noproc.port}/{dbname}"


@pytest.fixture(scope="session")
def server(
    server_database: str, postgresql_noproc: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One notifyd for the session, logged in as the non-superuser NOINHERIT role."""
    proc = ServerProcess(
        _url(postgresql_noproc, server_database, login=True), tmp_path_factory.mktemp("server") / "notifyd.log"
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def server_owner_url(server_database: str, postgresql_noproc: Any) -> str:
    """The session server's database as its owner: for setting up, never for RLS checks."""
    return _url(postgresql_noproc, server_database, login=False)


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client of the session's notifyd."""
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture
def owner(server: ServerProcess, server_owner_url: str) -> Iterator[psycopg.Connection[Any]]:
    """The session server's database as its owner: to set up rows and to check effects, never for RLS."""
    with psycopg.connect(server_owner_url, autocommit=True) as conn:
        yield conn


def _own_processes(kind: type[NotifydProcess], db: psycopg.Connection[Any], log_dir: Path) -> Iterator[Any]:
    started: list[NotifydProcess] = []

    def start(**env: str) -> NotifydProcess:
        proc = kind(database_url(db, login=True), log_dir / f"{kind.command}-{len(started)}.log", **env)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def own_server(db: psycopg.Connection[Any], tmp_path: Path) -> Iterator[Any]:
    """start(**env) -> a notifyd serve of the test's own on the test's own database (for restarts, kills)."""
    yield from _own_processes(ServerProcess, db, tmp_path)


@pytest.fixture
def own_worker(db: psycopg.Connection[Any], tmp_path: Path) -> Iterator[Any]:
    """start(**env) -> a notifyd worker on the test's own database, logged in as the non-superuser role."""
    yield from _own_processes(WorkerProcess, db, tmp_path)
