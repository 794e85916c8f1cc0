"""The wheel as a deployment gets it: built from the checkout, installed into a clean venv outside it.

Nothing here imports the checkout: the venv's own `notifyd` migrates an empty database, its serve and
worker start with their working directory elsewhere, and one notification arrives on a WebSocket and
at the e-mail stand-in.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import create_app_login, database_url
from tests.server import TEST_ENV, ServerProcess, WorkerProcess, wait_for
from tests.standins.resend import ResendService
from tests.test_email import instant_email, mail_env
from tests.test_realtime import notifications, recv_until, ws_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


class Venv:
    def __init__(self, path: Path, install_seconds: float) -> None:
        self.path = path
        self.python = str(path / "bin" / "python")
        self.install_seconds = install_seconds

    def notifyd(self, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.path / "bin" / "notifyd"), *args],
            env={"PATH": "/usr/bin:/bin", **TEST_ENV, **env}, cwd=cwd, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def package_dir(self) -> Path:
        out = subprocess.run([self.python, "-c", "import notifyd, os; print(os.path.dirname(notifyd.__file__))"],
                             env={"PATH": "/usr/bin:/bin"}, cwd=self.path, capture_output=True, text=True,
                             check=True)  # fmt: skip
        return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    """The wheel built and installed (with its dependencies, from the pip cache or index) in a clean venv."""
    where = tmp_path_factory.mktemp("wheel")
    assert ROOT not in where.parents
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(where / "dist"), str(ROOT)],
                   check=True, capture_output=True)  # fmt: skip
    [wheel] = (where / "dist").glob("notifyd-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True)
    subprocess.run([str(where / "venv" / "bin" / "pip"), "install", "--quiet", str(wheel)], check=True,
                   capture_output=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})  # fmt: skip
    yield Venv(where / "venv", time.monotonic() - started)


def test_the_installed_wheel_migrates_serves_and_delivers(
    venv: Venv, empty_database: Callable[[], str], resend_service: ResendService,
    tmp_path: Path,
) -> None:  # fmt: skip
    print(f"wheel built and installed in {venv.install_seconds:.1f} s")
    # Measured: ~30 s on an idle machine, ~65 s with the suite's load beside it.
    assert venv.install_seconds < 180
    assert ROOT not in venv.package_dir().parents
    assert venv.notifyd("--version", cwd=tmp_path).stdout.strip() == "notifyd 0.2.0"

    owner_url = empty_database()
    migrated = venv.notifyd("migrate", cwd=tmp_path, DATABASE_URL=owner_url)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.endswith("new migration(s) applied)\n") and "(0 new" not in migrated.stdout
    assert venv.notifyd("migrate", "--check", cwd=tmp_path, DATABASE_URL=owner_url).returncode == 0
    with psycopg.connect(owner_url, autocommit=True) as owner:
        create_app_login(owner)
        login_url = database_url(owner, login=True)
        user = uuid.uuid4()
        owner.execute("SELECT notify.upsert_recipient_v2(%s, 'wheel@example.com')", (user,))
        instant_email(owner, user, "billing")

    server = ServerProcess(login_url, tmp_path / "serve.log")
    worker = WorkerProcess(login_url, tmp_path / "worker.log", **mail_env(resend_service))
    for proc in (server, worker):
        proc.python, proc.cwd = venv.python, tmp_path
    server.start()
    worker.start()
    try:
        asyncio.run(_send_and_receive(server, owner_url, user))
        [email] = wait_for(lambda: resend_service.emails, timeout=30, what="the e-mail at the stand-in")
        assert email.to == ["wheel@example.com"] and "From the wheel" in email.subject
    finally:
        server.stop()
        worker.stop()
    assert "bypasses row-level security" not in server.log() + worker.log()


async def _send_and_receive(server: ServerProcess, owner_url: str, user: uuid.UUID) -> None:
    async with ws_for(server, user) as ws:
        with psycopg.connect(owner_url, autocommit=True) as owner:
            owner.execute("SET ROLE notify_service")
            owner.execute("""SELECT set_config('request.jwt.claims', '{"sub": "billing", "role": "service"}', false)""")
            sent = owner.execute(
                "SELECT notify.send(user_id => %s, type => 'billing', title => 'From the wheel', priority => 'high')",
                (user,),
            ).fetchone()
        assert sent is not None
        assert [n["id"] for n in notifications(await recv_until(ws, "notification", timeout=15))] == [str(sent[0])]


def test_the_installed_wheel_carries_every_browser_module(venv: Venv) -> None:
    """notifyd-elements.js imports the element modules from static/elements/: a glob of "*" would miss them."""
    static = ROOT / "notifyd" / "static"
    installed = venv.package_dir() / "static"
    wanted = sorted(p.relative_to(static).as_posix() for p in static.rglob("*") if p.is_file())
    assert "elements/base.js" in wanted
    assert sorted(p.relative_to(installed).as_posix() for p in installed.rglob("*") if p.is_file()) == wanted


def test_the_installed_wheel_refuses_to_serve_an_unmigrated_database(
    venv: Venv, empty_database: Callable[[], str], tmp_path: Path
) -> None:
    result = venv.notifyd("serve", cwd=tmp_path, DATABASE_URL=empty_database())
    assert result.returncode == 3
    assert "the database lacks migrations procrastinate" in result.stderr and "run notifyd migrate" in result.stderr


def test_an_install_without_its_migrations_fails_loudly(
    venv: Venv, empty_database: Callable[[], str], tmp_path: Path
) -> None:
    schema = venv.package_dir() / "_schema" / "schema"
    aside = schema.with_name("schema-aside")
    schema.rename(aside)
    try:
        url = empty_database()
        for args in (("migrate",), ("migrate", "--check"), ("serve",)):
            result = venv.notifyd(*args, cwd=tmp_path, DATABASE_URL=url)
            assert result.returncode != 0, args
            assert "no migrations found in" in result.stderr and "lacks its SQL files" in result.stderr, result.stderr
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regnamespace('notify')").fetchone() == (None,)
    finally:
        aside.rename(schema)
    assert shutil.which("notifyd", path=str(venv.path / "bin"))
