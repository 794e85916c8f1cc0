"""The README commands' database: with nothing on the probed port, a private cluster is started."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from notifyd.db.localdb import resolve_server, with_database
from notifyd.db.migrate import migrate_url
from tests.server import free_port


@pytest.fixture
def nothing_on_the_usual_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("NOTIFYD_LOCAL_SERVER", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("NOTIFYD_PRIVATE_PORT", str(free_port()))
    # Not under pytest's tmp_path (mode 700): as root, the cluster runs as the postgres user.
    parent = Path(tempfile.mkdtemp(prefix="notifyd-private-"))
    parent.chmod(0o755)
    monkeypatch.setenv("NOTIFYD_PRIVATE_DIR", str(parent / "pgdata"))
    yield parent / "pgdata"
    shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.slow
def test_a_private_cluster_is_started_and_migrated(nothing_on_the_usual_port: Path) -> None:
    url, cluster = resolve_server()
    assert cluster is not None
    try:
        assert url == cluster.url()
        assert (nothing_on_the_usual_port / "PG_VERSION").exists()

        async def check() -> object:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute("CREATE DATABASE fallback")
            finally:
                await conn.close()
            await migrate_url(with_database(url, "fallback"))
            conn = await asyncpg.connect(with_database(url, "fallback"))
            try:
                return await conn.fetchval("SELECT count(*) FROM notify.notification_types")
            finally:
                await conn.close()

        assert asyncio.run(check()) == 7
    finally:
        cluster.stop()


@pytest.mark.slow
def test_dev_migrates_serves_the_demo_and_stops_on_ctrl_c(nothing_on_the_usual_port: Path) -> None:
    port = free_port()
    env = {**os.environ, "NOTIFYD_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "notifyd", "dev"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "database migrated" in first, first
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    assert "<title>Acme Tasks</title>" in httpx.get(f"{base}/").text
    tokens = httpx.get(f"{base}/dev/tokens").json()
    assert set(tokens["users"]) == {"alice", "bob", "carol"}
    # The worker runs in the same process: a test e-mail lands in the local outbox.
    alice = {"Authorization": f"Bearer {tokens['users']['alice']['token']}"}
    assert httpx.post(f"{base}/api/v1/notifications/test", json={"channel": "email"}, headers=alice).status_code == 202
    deadline = time.monotonic() + 20
    while "Test notification" not in (outbox := httpx.get(f"{base}/dev/outbox").text) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "alice@example.com" in outbox and "Test notification" in outbox
    listed = httpx.get(f"{base}/dev/outbox.json").json()["emails"]
    assert listed[0]["to"] == "alice@example.com" and "Test notification" in listed[0]["subject"]
    assert listed[0]["via"] == "resend"
    assert httpx.get(f"{base}/api/v1/notifications/vapid-public-key").json()["public_key"]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped" in out
    assert not (nothing_on_the_usual_port / "postmaster.pid").exists(), "the private cluster was stopped"
