"""Read replicas: a real streaming replica (pg_basebackup -R) two seconds behind its primary, two serve processes.

Reads that tolerate lag run on the replica, unless the caller's last write (carried by the signed
X-Notifyd-Read-After header or its cookie, to any serve process) is not replayed there yet; a replica that
stops leaves the reads to the primary, with one log line and no error.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psycopg
import pytest

from notifyd.core.auth import Caller
from notifyd.core.config import Settings
from notifyd.core.metrics import Metrics
from notifyd.db.localdb import PrivateCluster
from notifyd.db.migrate import migrate_url
from notifyd.db.pool import create_pool
from notifyd.db.replicas import Databases
from notifyd.http.readafter import COOKIE, HEADER, WHERE_HEADER, seal
from tests.conftest import APP_LOGIN, APP_PASSWORD, create_app_login
from tests.server import JWT_SECRET, ServerProcess, free_port, make_token, wait_for

API = "/api/v1/notifications"
APPLY_DELAY = "2s"
# Each statement with the application_name it ran under ('notifyd <request id>' inside a request).
LOGGING = "ALTER SYSTEM SET log_line_prefix = 'app=%a ' ; ALTER SYSTEM SET log_min_duration_statement = 0"


@dataclass
class Streaming:
    primary: PrivateCluster
    replica: PrivateCluster
    owner: str  # the primary as its owner
    replica_owner: str
    servers: tuple[ServerProcess, ServerProcess]

    def replica_has(self, notification_id: str, column: str = "id") -> bool:
        with psycopg.connect(self.replica_owner, autocommit=True) as conn:
            row = conn.execute(
                f"SELECT {column} IS NOT NULL FROM notify.notifications WHERE id = %s",  # noqa: S608 - fixed names
                (notification_id,),
            ).fetchone()
        return bool(row and row[0])


def login_url(cluster: PrivateCluster) -> str:
    return f"postgresql://{APP_LOGIN}:{APP_PASSWORD}@127.0.0.1:{cluster.port}/postgres"


@pytest.fixture(scope="module")
def streaming() -> Iterator[Streaming]:
    parent = Path(tempfile.mkdtemp(prefix="notifyd-replicas-"))
    parent.chmod(0o755)  # as root the clusters run as postgres
    primary = PrivateCluster(parent / "primary", free_port())
    primary.start()
    replica: PrivateCluster | None = None
    servers: list[ServerProcess] = []
    try:
        owner = primary.url()
        asyncio.run(migrate_url(owner))
        with psycopg.connect(owner, autocommit=True) as conn:
            create_app_login(conn)
            for statement in LOGGING.split(";"):
                conn.execute(statement)
            conn.execute("SELECT pg_reload_conf()")
        replica = primary.replica(parent / "replica", free_port(), apply_delay=APPLY_DELAY)
        replica.start()
        for number in (1, 2):
            server = ServerProcess(login_url(primary), parent / f"serve-{number}.log",
                                   DATABASE_REPLICA_URL=login_url(replica))  # fmt: skip
            servers.append(server)
            server.start()
        yield Streaming(primary, replica, owner, replica.url(), (servers[0], servers[1]))
    finally:
        for server in servers:
            server.stop()
        for cluster in (replica, primary):
            try:
                if cluster is not None:
                    cluster.stop(mode="immediate")
            except Exception:  # noqa: BLE001 - a test stopped it already
                pass
        shutil.rmtree(parent, ignore_errors=True)


def user_headers(user: uuid.UUID, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}", **extra}


def send(streaming: Streaming, user: uuid.UUID, title: str = "Review PR #123") -> str:
    with psycopg.connect(streaming.owner, autocommit=True) as conn:
        row = conn.execute("SELECT notify.send(%s, 'task', %s)", (user, title)).fetchone()
    assert row is not None
    return str(row[0])


def read_flags(response: httpx.Response) -> dict[str, bool]:
    assert response.status_code == 200, response.text
    return {item["id"]: item["read_at"] is not None for item in response.json()["items"]}


def log_of(cluster: PrivateCluster) -> str:
    return (cluster.data_dir / "server.log").read_text(errors="replace")


def test_a_read_right_after_a_write_sees_it_on_either_serve_process(streaming: Streaming) -> None:
    user = uuid.uuid4()
    notification_id = send(streaming, user)
    wait_for(lambda: streaming.replica_has(notification_id), what="the replica to replay the send")
    first, second = (s.url for s in streaming.servers)

    written = httpx.patch(f"{first}{API}/{notification_id}/read", headers=user_headers(user), timeout=10)
    assert written.status_code == 200, written.text
    token = written.headers[HEADER]
    assert f"{COOKIE}={token}" in written.headers["set-cookie"]
    assert "HttpOnly" in written.headers["set-cookie"]

    # The other serve process, with the header: the replica is two seconds behind, so the primary answers.
    after = httpx.get(f"{second}{API}", headers=user_headers(user, **{HEADER: token}), timeout=10)
    assert read_flags(after) == {notification_id: True}
    assert after.headers[WHERE_HEADER] == "primary"
    # With the cookie alone, too.
    by_cookie = httpx.get(f"{second}{API}/unread-count", headers=user_headers(user), cookies={COOKIE: token},
                          timeout=10)  # fmt: skip
    assert by_cookie.json()["count"] == 0 and by_cookie.headers[WHERE_HEADER] == "primary"
    # Without it, the replica answers, and has not replayed the read yet: the lag is real.
    stale = httpx.get(f"{second}{API}", headers=user_headers(user), timeout=10)
    if not streaming.replica_has(notification_id, "read_at"):
        assert stale.headers[WHERE_HEADER] == "replica" and read_flags(stale) == {notification_id: False}

    # Once the replica has replayed the write, the same token reads there.
    def on_replica() -> httpx.Response | None:
        answer = httpx.get(f"{first}{API}", headers=user_headers(user, **{HEADER: token}), timeout=10)
        return answer if answer.headers[WHERE_HEADER] == "replica" else None

    caught_up = wait_for(on_replica, timeout=20, interval=0.2, what="the replica to replay the read")
    assert read_flags(caught_up) == {notification_id: True}


def test_every_write_hands_out_a_token_and_a_failed_one_does_not(streaming: Streaming) -> None:
    server = streaming.servers[0].url
    user = uuid.uuid4()
    changed = httpx.put(f"{server}{API}/preferences/task", json={"email_enabled": False}, headers=user_headers(user),
                        timeout=10)  # fmt: skip
    assert changed.status_code == 200 and HEADER in changed.headers
    service = {"Authorization": f"Bearer {make_token('billing', role='service')}"}
    sent = httpx.post(f"{server}{API}", json={"user_id": str(user), "type": "task", "title": "t"}, headers=service,
                      timeout=10)  # fmt: skip
    assert sent.status_code == 202 and HEADER in sent.headers
    missing = httpx.patch(f"{server}{API}/{uuid.uuid4()}/read", headers=user_headers(user), timeout=10)
    assert missing.status_code == 404 and HEADER not in missing.headers and "set-cookie" not in missing.headers
    # Reads hand out none.
    listed = httpx.get(f"{server}{API}", headers=user_headers(user), timeout=10)
    assert listed.status_code == 200 and HEADER not in listed.headers


def test_reads_of_other_users_run_on_the_replica(streaming: Streaming) -> None:
    server = streaming.servers[1].url
    user = uuid.uuid4()
    notification_id = send(streaming, user)
    wait_for(lambda: streaming.replica_has(notification_id), what="the replica to replay the send")
    admin = {"Authorization": f"Bearer {make_token('dba', role='admin')}"}
    now = time.time()
    window = {"from": time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(now - 86400)),
              "to": time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(now + 86400))}  # fmt: skip
    reads = {
        "list": (API, user_headers(user), {}),
        "unread": (f"{API}/unread-count", user_headers(user), {}),
        "history": (f"{API}/history", user_headers(user), {}),
        "export": (f"{API}/export", user_headers(user), {"format": "csv"}),
        "explain": (f"{API}/{notification_id}/explain", user_headers(user), {}),
        "analytics": (f"{API}/analytics", admin, window),
    }
    for name, (path, headers, params) in reads.items():
        request_id = f"replica-{name}-{uuid.uuid4().hex[:8]}"
        answer = httpx.get(f"{server}{path}", headers={**headers, "X-Request-ID": request_id}, params=params,
                           timeout=10)  # fmt: skip
        assert answer.status_code == 200, (name, answer.text)
        assert answer.headers[WHERE_HEADER] == "replica", name
        # Where the SQL ran, as the servers saw it: the request's application_name in their statement logs.
        assert f"app=notifyd {request_id} " in log_of(streaming.replica), name
        assert request_id not in log_of(streaming.primary), name
    assert notification_id in httpx.get(f"{server}{API}/export", headers=user_headers(user), timeout=10).text


def test_explain_of_a_notification_the_replica_has_not_replayed_asks_the_primary(streaming: Streaming) -> None:
    user = uuid.uuid4()
    notification_id = send(streaming, user)
    answer = httpx.get(f"{streaming.servers[0].url}{API}/{notification_id}/explain", headers=user_headers(user),
                       timeout=10)  # fmt: skip
    assert answer.status_code == 200 and answer.json()["notification_id"] == notification_id
    assert answer.headers[WHERE_HEADER] == "primary"


def test_a_token_that_is_not_the_callers_reads_from_the_primary(streaming: Streaming) -> None:
    server = streaming.servers[0].url
    user, other = uuid.uuid4(), uuid.uuid4()
    settings = Settings(database_url="unused", jwt_secret=JWT_SECRET)
    mine = seal(settings, Caller("authenticated", str(user), {}), "0/1", time.time())
    expired = seal(settings, Caller("authenticated", str(user), {}), "0/1", time.time() - 3600)
    forged = seal(Settings(database_url="unused", jwt_secret="another secret"), Caller("authenticated", str(user), {}),
                  "0/1", time.time())  # fmt: skip
    assert (
        httpx.get(f"{server}{API}", headers=user_headers(user, **{HEADER: mine}), timeout=10).headers[WHERE_HEADER]
        == "replica"
    )
    for token in (expired, forged, "garbage", "a.b.c", mine.replace(".", ""), "é".encode("latin-1")):
        raw = token if isinstance(token, bytes) else token.encode()
        headers = [(k.encode(), v.encode()) for k, v in user_headers(user).items()] + [(HEADER.encode(), raw)]
        answer = httpx.get(f"{server}{API}", headers=headers, timeout=10)
        assert answer.status_code == 200 and answer.headers[WHERE_HEADER] == "primary", token
    # Another user's token: that user's write is no reason to trust the replica with this one's reads.
    foreign = httpx.get(f"{server}{API}", headers=user_headers(other, **{HEADER: mine}), timeout=10)
    assert foreign.status_code == 200 and foreign.headers[WHERE_HEADER] == "primary"
    as_cookie = httpx.get(f"{server}{API}/history", headers=user_headers(user), cookies={COOKIE: "forged.token"},
                          timeout=10)  # fmt: skip
    assert as_cookie.status_code == 200 and as_cookie.headers[WHERE_HEADER] == "primary"


def test_a_replica_lost_in_the_middle_of_a_read_has_the_read_run_again_on_the_primary(streaming: Streaming) -> None:
    user = uuid.uuid4()
    caller = Caller("authenticated", str(user), {"sub": str(user), "role": "authenticated"})
    ran: list[str] = []

    async def run() -> tuple[int, str]:
        primary = await create_pool(login_url(streaming.primary), min_size=1)
        databases = await Databases.open(primary, (login_url(streaming.replica),), Metrics())
        try:

            async def count(conn: asyncpg.Connection) -> int:
                on_standby = await conn.fetchval("SELECT pg_is_in_recovery()")
                ran.append("replica" if on_standby else "primary")
                if on_standby:
                    conn.terminate()  # the connection is lost after the read started
                return int(await conn.fetchval("SELECT count(*) FROM notify.notifications"))

            return await databases.read(caller, count, None)
        finally:
            await databases.close()
            await primary.close()

    assert asyncio.run(run()) == (0, "primary")
    assert ran == ["replica", "primary"]


def replica_up(server: ServerProcess) -> str:
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    return next(line.split()[-1] for line in metrics.splitlines() if line.startswith('notifyd_replica_up{replica="0"}'))


def test_a_stopped_replica_leaves_the_reads_to_the_primary_with_one_log_line(streaming: Streaming) -> None:
    server = streaming.servers[0]
    user = uuid.uuid4()
    notification_id = send(streaming, user)
    streaming.replica.stop(mode="immediate")
    try:
        for _ in range(5):
            answer = httpx.get(f"{server.url}{API}", headers=user_headers(user), timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.headers[WHERE_HEADER] == "primary" and notification_id in read_flags(answer)
        assert server.log().count("read replica 0 failed") == 1, server.log()[-3000:]
        assert replica_up(server) == "0.0"
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
    finally:
        streaming.replica.start()
    wait_for(lambda: replica_up(server) == "1.0", timeout=30, interval=0.2, what="the replica to answer again")
    assert "read replica 0 answers again" in server.log()
    answer = httpx.get(f"{server.url}{API}", headers=user_headers(user), timeout=10)
    assert answer.status_code == 200 and answer.headers[WHERE_HEADER] == "replica"


def test_replica_urls_are_split_at_each_scheme_and_anything_else_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@primary/notifyd")
    monkeypatch.setenv("JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("DATABASE_REPLICA_URL", "postgresql://app@r1:5433,r2:5433/notifyd, postgres://app@r3/notifyd")
    assert Settings.from_env().database_replica_urls == (
        "postgresql://app@r1:5433,r2:5433/notifyd",
        "postgres://app@r3/notifyd",
    )
    monkeypatch.setenv("DATABASE_REPLICA_URL", "postgresql://app@r1/notifyd,r2:5433")
    with pytest.raises(SystemExit, match="DATABASE_REPLICA_URL takes comma-separated postgresql:// URLs"):
        Settings.from_env()
    monkeypatch.setenv("DATABASE_REPLICA_URL", "")
    assert Settings.from_env().database_replica_urls == ()
