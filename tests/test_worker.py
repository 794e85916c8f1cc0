"""The worker as an operator sees it: killed mid-send, database restarted, stopped; what /metrics and /test show."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from notifyd.db.localdb import PrivateCluster, with_database
from notifyd.db.migrate import migrate_url
from tests.conftest import APP_LOGIN, APP_PASSWORD, create_app_login
from tests.server import WorkerProcess, free_port, make_token, wait_for
from tests.standins.http import Response
from tests.standins.resend import ResendService

FAST = {"WORKER_HEARTBEAT_INTERVAL": "1", "WORKER_STALLED_AFTER": "3", "PROVIDER_TIMEOUT": "5"}


def resend_env(resend: ResendService) -> dict[str, str]:
    return {"RESEND_API_KEY": resend.api_key, "RESEND_API_URL": resend.url, "RESEND_FROM_EMAIL": "n@example.com"}


def send_critical_email(db: psycopg.Connection[Any], user: uuid.UUID) -> None:
    db.execute("SELECT notify.upsert_recipient_v2(%s, %s)", (user, f"{user.hex[:8]}@example.com"))
    db.execute(
        "SELECT notify.send(%s, 'security', 'New login', 'from Berlin', 'critical', channels => '{email}')", (user,)
    )


def email_statuses(db: psycopg.Connection[Any]) -> dict[str, tuple[str, int]]:
    return {
        str(r[0]): (r[1], r[2])
        for r in db.execute("SELECT id, status, repeats FROM notify.notification_deliveries WHERE channel = 'email'")
    }


def test_a_worker_killed_mid_send_loses_nothing_and_sends_each_once(
    db: psycopg.Connection[Any], own_worker: Any, resend_service: ResendService
) -> None:
    users = [uuid.uuid4() for _ in range(4)]
    # The first answers are slow: the worker is killed while they are in flight.
    resend_service.script(*[Response(delay=2.0) for _ in users])
    worker = own_worker(**FAST, **resend_env(resend_service), WORKER_CONCURRENCY="4")
    for user in users:
        send_critical_email(db, user)
    wait_for(lambda: len(resend_service.requests) >= 2, what="sends in flight")
    worker.kill()
    assert any(status == "pending" for status, _ in email_statuses(db).values()), "killed before recording"

    own_worker(**FAST, **resend_env(resend_service))
    statuses = wait_for(
        lambda: (s := email_statuses(db)) and all(status == "sent" for status, _ in s.values()) and s,
        timeout=30,
        what="every delivery sent after the restart",
    )
    emails = resend_service.emails
    keys = [e.idempotency_key for e in emails if e.idempotency_key is not None]
    assert len(keys) == len(emails), "every send carries an idempotency key"
    assert sorted(keys) == sorted(statuses), "Resend recorded each delivery once, keyed by its id"
    assert sum(repeats for _, repeats in statuses.values()) >= 1, "the unrecorded attempts are counted"
    assert len(resend_service.requests) > len(users), "the killed attempts were made again"


@pytest.fixture
def private_cluster() -> Iterator[PrivateCluster]:
    """A cluster of the test's own (never the shared server) that the test may restart and stop."""
    parent = Path(tempfile.mkdtemp(prefix="notifyd-worker-"))
    parent.chmod(0o755)  # as root the cluster runs as postgres
    cluster = PrivateCluster(parent / "pgdata", free_port())
    cluster.start()
    yield cluster
    try:
        cluster.stop(mode="immediate")
    except Exception:  # noqa: BLE001 - already stopped by the test
        pass
    shutil.rmtree(parent, ignore_errors=True)


def prepared(cluster: PrivateCluster) -> tuple[str, str]:
    """Migrates a database on the cluster; returns (owner URL, login URL)."""
    owner = with_database(cluster.url(), "postgres")
    asyncio.run(migrate_url(owner))
    with psycopg.connect(owner, autocommit=True) as conn:
        create_app_login(conn)
    return owner, f"postgresql://{APP_LOGIN}:{APP_PASSWORD}@127.0.0.1:{cluster.port}/postgres"


def test_the_worker_survives_a_database_restart_or_says_so(
    private_cluster: PrivateCluster, tmp_path: Path, resend_service: ResendService
) -> None:
    owner, login = prepared(private_cluster)
    worker = WorkerProcess(login, tmp_path / "worker.log", **FAST, **resend_env(resend_service))
    worker.start()
    try:
        private_cluster.stop(mode="immediate")  # a crash: no shutdown checkpoint to wait for
        private_cluster.start()
        with psycopg.connect(owner, autocommit=True) as db:
            send_critical_email(db, uuid.uuid4())
            assert worker.proc is not None

            def settled() -> str | None:
                if worker.proc is not None and worker.proc.poll() is not None:
                    return f"exited {worker.proc.returncode}"
                return "delivered" if resend_service.emails else None

            outcome = wait_for(settled, timeout=40, what="the worker to deliver or exit")
        # Procrastinate stops quietly when its LISTEN connection dies: the worker must not exit 0 then.
        assert outcome in ("delivered", "exited 1", "exited 2"), worker.log()[-2000:]
        if outcome != "delivered":
            assert "exiting" in worker.log()
    finally:
        worker.stop()


def test_the_worker_exits_non_zero_when_the_database_is_gone(private_cluster: PrivateCluster, tmp_path: Path) -> None:
    _, login = prepared(private_cluster)
    worker = WorkerProcess(login, tmp_path / "worker.log", **FAST)
    worker.start()
    private_cluster.stop(mode="immediate")
    assert worker.proc is not None
    # It waits WORKER_STALLED_AFTER (3 s here, shorter than the 15 s default), then exits at once: no graceful stop
    # that would wait on the database (tests/test_worker.py's half-dead case below shows it with a silent server).
    code = worker.proc.wait(timeout=15)
    assert code == 2, worker.log()[-2000:]
    assert "the database has not answered for 3 s" in worker.log()


def cluster_processes(cluster: PrivateCluster) -> list[int]:
    """The postmaster's pid and its children's (the backends and background processes)."""
    postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


def test_the_worker_exits_non_zero_when_the_database_stops_answering(
    private_cluster: PrivateCluster, tmp_path: Path
) -> None:
    """A half-dead server: its sockets accept (the kernel does that) and nothing ever answers. A graceful stop
    waited on it for minutes (psycopg's pool and connect, asyncpg's cancel requests)."""
    _, login = prepared(private_cluster)
    worker = WorkerProcess(login, tmp_path / "worker.log", **FAST)
    worker.start()
    stopped: list[int] = []
    try:
        for pid in cluster_processes(private_cluster):  # the postmaster first: it forks no new backend then
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        assert worker.proc is not None
        code = worker.proc.wait(timeout=15)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        worker.stop()
    assert code == 2, worker.log()[-2000:]
    assert "the database has not answered for 3 s" in worker.log()


def test_sigterm_stops_the_worker_cleanly(db: psycopg.Connection[Any], own_worker: Any) -> None:
    worker = own_worker(**FAST)
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=20) == 0
    assert "worker stopped" in worker.log()


def test_a_channel_without_provider_is_skipped_with_a_reason(db: psycopg.Connection[Any], own_worker: Any) -> None:
    worker = own_worker(**FAST)  # no RESEND_API_KEY
    user = uuid.uuid4()
    send_critical_email(db, user)
    wait_for(lambda: email_statuses(db) and all(s == "skipped" for s, _ in email_statuses(db).values()),
             what="the e-mail delivery skipped")  # fmt: skip
    reason = db.execute("SELECT reason FROM notify.notification_deliveries WHERE channel = 'email'").fetchone()
    assert reason is not None and "RESEND_API_KEY" in reason[0]
    assert worker.proc is not None and worker.proc.poll() is None, "the worker keeps running"
    assert "RESEND_API_KEY" in worker.log()


def test_a_user_tests_every_channel_and_metrics_show_the_ledger(
    db: psycopg.Connection[Any], own_server: Any, own_worker: Any, resend_service: ResendService
) -> None:
    user = uuid.uuid4()
    db.execute("SELECT notify.upsert_recipient_v2(%s, 'tester@example.com')", (user,))
    server = own_server()
    own_worker(**FAST, **resend_env(resend_service))
    token = make_token(user)
    answer = httpx.post(
        f"{server.url}/api/v1/notifications/test", json={"channel": "all"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 202, answer.text
    planned = {(d["channel"], d["status"], d["reason"]) for d in answer.json()["deliveries"]}
    assert planned == {
        ("in_app", "sent", None),
        ("push", "skipped", "no active push subscription"),
        ("email", "pending", None),
    }
    wait_for(lambda: resend_service.emails, what="the test e-mail")
    assert resend_service.emails[0].to == ["tester@example.com"]
    assert resend_service.emails[0].subject == "Test notification"

    bad = httpx.post(
        f"{server.url}/api/v1/notifications/test", json={"channel": "fax"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert bad.status_code == 422
    service = make_token("billing", role="service")
    assert (
        httpx.post(
            f"{server.url}/api/v1/notifications/test", headers={"Authorization": f"Bearer {service}"}
        ).status_code
        == 403
    )

    def sent_metric() -> bool:
        text = httpx.get(f"{server.url}/metrics").text
        return 'notifyd_deliveries{channel="email",provider="email",status="sent"} 1.0' in text

    wait_for(sent_metric, what="the sent e-mail on /metrics")
    text = httpx.get(f"{server.url}/metrics").text
    assert 'notifyd_deliveries{channel="push",provider="push",status="skipped"} 1.0' in text
    assert "# HELP notifyd_queue_jobs Procrastinate jobs" in text
