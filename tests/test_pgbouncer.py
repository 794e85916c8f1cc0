"""notifyd behind a real PgBouncer in transaction pooling (DATABASE_POOL_MODE=transaction), LISTEN on the primary.

One PgBouncer (pool_mode=transaction, default_pool_size=20), three serve processes and a worker for the module,
all with DATABASE_URL through the pooler and DATABASE_DIRECT_URL on the server itself: the realtime, delivery and
export scenarios pass through it, the three serve processes never hold more than the 20 server connections, and
the worker is woken by NOTIFY on its own direct LISTEN connection, not by its poll (set to 30 s here).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect

from notifyd.core.config import Settings
from notifyd.realtime.hub import APPLICATION_NAME as HUB_LISTEN
from notifyd.realtime.hub import READER_NAME as HUB_READER
from notifyd.worker.tasks import LISTEN_APPLICATION_NAME as WORKER_LISTEN
from tests.conftest import APP_LOGIN, APP_PASSWORD
from tests.pgbouncer import PGBOUNCER, PgBouncer, installed
from tests.server import ServerProcess, WorkerProcess, make_token, wait_for
from tests.standins.resend import ResendService
from tests.tools import missing

API = "/api/v1/notifications"
SERVICE = {"Authorization": f"Bearer {make_token('billing', role='service')}"}
POOL_SIZE = 20
SERVES = 3
POLL_INTERVAL = 30.0  # the worker's poll: a delivery well within it was woken by NOTIFY
WOKEN_WITHIN = 5.0
EXPORT_ROWS = 1_234  # over two export batches of 500


@pytest.fixture(scope="module")
def bouncer(postgresql_noproc: Any) -> Iterator[PgBouncer]:
    if not installed():
        missing(
            f"CI needs Debian's pgbouncer at {PGBOUNCER}: run scripts/setup.sh as root",
            "Debian's pgbouncer is not installed (scripts/setup.sh installs it when run as root)",
        )
    bouncer = PgBouncer(postgresql_noproc.host, postgresql_noproc.port, {APP_LOGIN: APP_PASSWORD}, pool_size=POOL_SIZE)
    bouncer.start()
    yield bouncer
    bouncer.stop()


def _admin(postgresql_noproc: Any, dbname: str) -> dict[str, Any]:
    return dict(
        host=postgresql_noproc.host,
        port=postgresql_noproc.port,
        user=postgresql_noproc.user,
        password=postgresql_noproc.password or None,
        dbname=dbname,
    )


@pytest.fixture(scope="module")
def database(postgresql_noproc: Any) -> Iterator[str]:
    """A copy of the migrated template for this module's processes."""
    name = f"notifyd_pgbouncer_{os.getpid()}"
    with psycopg.connect(**_admin(postgresql_noproc, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgresql_noproc.template_dbname}"')
    yield name
    with psycopg.connect(**_admin(postgresql_noproc, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def owner(postgresql_noproc: Any, database: str) -> Iterator[psycopg.Connection[Any]]:
    """The module's database as its owner, directly: for setting up and for pg_stat_activity."""
    with psycopg.connect(**_admin(postgresql_noproc, database), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def pooled_env(bouncer: PgBouncer, database: str, postgresql_noproc: Any) -> dict[str, str]:
    """DATABASE_URL through the pooler, DATABASE_DIRECT_URL the server itself, for serve and the worker."""
    direct = f"postgresql://{APP_LOGIN}:{APP_PASSWORD}@{postgresql_noproc.host}:{postgresql_noproc.port}/{database}"
    return {
        "DATABASE_URL": bouncer.url(APP_LOGIN, database),
        "DATABASE_DIRECT_URL": direct,
        "DATABASE_POOL_MODE": "transaction",
    }


@pytest.fixture(scope="module")
def servers(pooled_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    logs = tmp_path_factory.mktemp("pgbouncer-serve")
    started = []
    try:
        for n in range(SERVES):
            server = ServerProcess(pooled_env["DATABASE_URL"], logs / f"serve-{n}.log", **pooled_env)
            server.start()
            started.append(server)
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def resend() -> Iterator[ResendService]:
    with ResendService() as service:
        yield service
    assert not service.errors, "\n".join(service.errors)


@pytest.fixture(scope="module")
def worker(
    pooled_env: dict[str, str], resend: ResendService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("pgbouncer-worker") / "worker.log"
    proc = WorkerProcess(
        pooled_env["DATABASE_URL"],
        log,
        **pooled_env,
        WORKER_POLL_INTERVAL=str(POLL_INTERVAL),
        RESEND_API_KEY=resend.api_key,
        RESEND_API_URL=resend.url,
        RESEND_FROM_EMAIL="n@example.com",
    )
    proc.start()
    yield proc
    proc.stop()


def pooled_pids(bouncer: PgBouncer, database: str) -> set[int]:
    """The backends of PgBouncer's server connections to the module's database."""
    return {s["remote_pid"] for s in bouncer.show("SERVERS") if s["database"] == database}


def backends(owner: psycopg.Connection[Any], application_name: str) -> list[int]:
    rows = owner.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
        (application_name,),
    ).fetchall()
    return [r[0] for r in rows]


def post_notification(server: ServerProcess, user: uuid.UUID, **fields: Any) -> str:
    body = {"user_id": str(user), "type": "task", "title": "Through the pooler", **fields}
    answer = httpx.post(f"{server.url}{API}", json=body, headers=SERVICE, timeout=10)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_transaction_pooling_without_a_direct_url_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://notifyd@pgbouncer:6432/notifyd")
    monkeypatch.setenv("JWT_SECRET", "x" * 32)
    monkeypatch.setenv("DATABASE_POOL_MODE", "transaction")
    monkeypatch.delenv("DATABASE_DIRECT_URL", raising=False)
    with pytest.raises(SystemExit, match="DATABASE_DIRECT_URL"):
        Settings.from_env()
    monkeypatch.setenv("DATABASE_DIRECT_URL", "postgresql://notifyd@db:5432/notifyd")
    settings = Settings.from_env()
    assert settings.transaction_pooling and settings.direct_url == "postgresql://notifyd@db:5432/notifyd"
    monkeypatch.setenv("DATABASE_POOL_MODE", "statement")
    with pytest.raises(SystemExit, match="session or transaction"):
        Settings.from_env()


async def test_a_websocket_gets_a_notification_sent_through_the_pooler_on_another_serve(
    servers: list[ServerProcess], bouncer: PgBouncer, owner: psycopg.Connection[Any], database: str
) -> None:
    user = uuid.uuid4()
    async with connect(f"{servers[0].ws_url}?token={make_token(user)}", compression=None) as ws:

        async def next_of(kind: str) -> dict[str, Any]:
            while True:
                event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WOKEN_WITHIN))
                if event["type"] == kind:
                    return event

        await next_of("unread_count")  # every new session's first count
        sent = await asyncio.to_thread(post_notification, servers[1], user, title="Live through PgBouncer")
        event = await next_of("notification")
        assert event["data"]["id"] == sent and event["data"]["title"] == "Live through PgBouncer"
    # Each serve's LISTEN and fan-out reader are on the server itself, none of them a pooled connection.
    pooled = pooled_pids(bouncer, database)
    for name in (HUB_LISTEN, HUB_READER):
        direct = backends(owner, name)
        assert len(direct) == SERVES, f"{name}: {direct}"
        assert not set(direct) & pooled, f"{name} runs through PgBouncer"


def test_the_worker_is_woken_by_notify_on_its_direct_listen_and_delivers_through_the_pooler(
    servers: list[ServerProcess],
    worker: WorkerProcess,
    resend: ResendService,
    bouncer: PgBouncer,
    owner: psycopg.Connection[Any],
    database: str,
) -> None:
    # Procrastinate LISTENs on a connection of its own to the server itself, not through the pooler.
    [listening] = wait_for(lambda: backends(owner, WORKER_LISTEN), what="the worker's LISTEN connection")
    assert listening not in pooled_pids(bouncer, database)
    user = uuid.uuid4()
    owner.execute("SELECT notify.upsert_recipient_v2(%s, 'pooled@example.com')", (user,))
    started = time.monotonic()
    sent = post_notification(servers[2], user, type="security", title="New login", priority="critical",
                             channels=["email"])  # fmt: skip
    # Two wake-ups by NOTIFY (the dispatcher's job, then the e-mail job it defers), each well within the poll.
    [email] = wait_for(lambda: resend.emails, timeout=WOKEN_WITHIN, what="the e-mail, woken by NOTIFY")
    took = time.monotonic() - started
    assert email.to == ["pooled@example.com"] and email.subject == "New login"
    assert took < POLL_INTERVAL / 2, f"delivered after {took:.1f} s: by the {POLL_INTERVAL:.0f} s poll, not NOTIFY"
    status = wait_for(
        lambda: owner.execute(
            "SELECT status FROM notify.notification_deliveries WHERE notification_id = %s AND channel = 'email'"
            " AND status <> 'pending'",
            (sent,),
        ).fetchone(),
        what="the ledger's answer",
    )
    assert status == ("sent",)
    assert "Traceback" not in worker.log(), worker.log()[-3000:]


def user_with_history(owner: psycopg.Connection[Any], rows: int, body_bytes: int) -> uuid.UUID:
    """A new user with `rows` notifications, "Notification 1" the newest, made as planned (the triggers are off
    inside this one transaction: they would take long)."""
    user = uuid.uuid4()
    owner.execute("SELECT notify.upsert_recipient_v2(%s, NULL, 'en', 'UTC', NULL)", (user,))
    with owner.transaction():
        owner.execute("ALTER TABLE notify.notifications DISABLE TRIGGER USER")
        owner.execute(
            # Each id carries its row's created_at, as the insert trigger would have made it.
            """INSERT INTO notify.notifications (id, user_id, type, title, body, data, seq, created_at)
               SELECT notify_private.uuid_v7_at(t.at), %(user)s, 'task', 'Notification ' || g,
                      repeat('x', %(body_bytes)s), jsonb_build_object('g', g), g, t.at
               FROM generate_series(1, %(rows)s) AS g,
                    LATERAL (SELECT %(base)s - g * interval '1 second' AS at) AS t""",
            {"user": user, "rows": rows, "body_bytes": body_bytes, "base": datetime(2025, 3, 1, tzinfo=UTC)},
        )
        owner.execute("ALTER TABLE notify.notifications ENABLE TRIGGER USER")
    return user


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_the_export_streams_every_batch_through_the_pooler(
    servers: list[ServerProcess], owner: psycopg.Connection[Any], fmt: str
) -> None:
    user = user_with_history(owner, EXPORT_ROWS, 10)
    response = httpx.get(
        f"{servers[0].url}{API}/export",
        params={"format": fmt},
        headers={"Authorization": f"Bearer {make_token(user)}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    expected = [f"Notification {g}" for g in range(1, EXPORT_ROWS + 1)]  # newest first, none twice
    if fmt == "json":
        assert [item["title"] for item in response.json()] == expected
    else:
        header, *lines = response.text.splitlines()
        assert header.startswith('"id","type"')
        assert [line.split('","')[4] for line in lines] == expected


def test_a_paused_download_holds_no_transaction_open(
    servers: list[ServerProcess], owner: psycopg.Connection[Any]
) -> None:
    # ~12 MB of JSON: more than the socket buffers hold, so the server waits for the reader part-way.
    user = user_with_history(owner, 6_000, 2_000)

    def export_transactions() -> int:
        """Transactions of the export's reads still open (a cursor's shows as active between its fetches)."""
        [(count,)] = owner.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = %s"
            " AND xact_start IS NOT NULL AND query LIKE '%%notify.history(%%'",
            (APP_LOGIN,),
        ).fetchall()
        return int(count)

    # A small receive buffer, set before connecting (on loopback the kernel would otherwise grow it to tens of MB):
    # the server is soon left waiting for the reader.
    with socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        reader.connect(("127.0.0.1", servers[0].port))
        reader.sendall(
            f"GET {API}/export?format=json HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {make_token(user)}\r\n\r\n".encode()
        )
        assert reader.recv(65536).startswith(b"HTTP/1.1 200 ")
        # The reader stops; each batch was one statement, so no transaction waits for it.
        wait_for(lambda: export_transactions() == 0, what="no transaction left open by the paused download")


def test_three_serve_processes_share_the_twenty_server_connections(
    servers: list[ServerProcess], worker: WorkerProcess, bouncer: PgBouncer, owner: psycopg.Connection[Any],
    database: str,
) -> None:  # fmt: skip
    clients, server_conns, login_backends = [0], [0], [0]
    done = threading.Event()

    def watch() -> None:
        # Direct connections (each serve's LISTEN and reader, the worker's LISTEN) come on top of the pool.
        direct = SERVES * 2 + 1
        with psycopg.connect(owner.info.dsn, password=owner.info.password, autocommit=True) as conn:
            while not done.is_set():
                clients[0] = max(clients[0], sum(1 for c in bouncer.show("CLIENTS") if c["database"] == database))
                server_conns[0] = max(server_conns[0], len(pooled_pids(bouncer, database)))
                [(count,)] = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = %s",
                    (APP_LOGIN,),
                ).fetchall()
                login_backends[0] = max(login_backends[0], count - direct)
                time.sleep(0.02)

    async def load(server: ServerProcess) -> None:
        headers = {"Authorization": f"Bearer {make_token(uuid.uuid4())}"}
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            for _ in range(5):
                answers = await asyncio.gather(*(client.get(f"{API}/unread-count", headers=headers) for _ in range(30)))
                assert {a.status_code for a in answers} == {200}

    async def all_three() -> None:
        await asyncio.gather(*(load(s) for s in servers))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        asyncio.run(all_three())
    finally:
        done.set()
        watcher.join()
    assert clients[0] > POOL_SIZE, f"only {clients[0]} client connections: the pooler was never asked for more"
    assert 0 < server_conns[0] <= POOL_SIZE, f"{server_conns[0]} server connections"
    assert login_backends[0] <= POOL_SIZE, f"{login_backends[0]} backends beside the direct ones"
    print(f"{clients[0]} client connections of {SERVES} serve and a worker on {server_conns[0]} server connections")


def test_the_logs_show_no_prepared_statement_or_startup_parameter_error(
    servers: list[ServerProcess], worker: WorkerProcess, bouncer: PgBouncer
) -> None:
    for proc in [*servers, worker]:
        assert "prepared statement" not in proc.log() and "Traceback" not in proc.log(), proc.log()[-3000:]
    assert "unsupported startup parameter" not in bouncer.log()
