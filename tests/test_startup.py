"""serve and worker check the database before they start; migrate --check/--dry-run; the environment registry."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notifyd.core.config import REGISTRY, variables_of
from notifyd.db.migrate import migrate_url, sql_files
from tests.conftest import create_app_login, database_url
from tests.server import TEST_ENV, ServerProcess, WorkerProcess

ROOT = Path(__file__).resolve().parent.parent
EXIT_NOT_MIGRATED = 3


def notifyd(*args: str, url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifyd", *args],
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": url, **TEST_ENV},
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def ledger(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('notify_private.migrations')").fetchone() == (None,):
            return []
        return conn.execute("SELECT name, checksum, applied_at FROM notify_private.migrations ORDER BY name").fetchall()


def login_url(owner_url: str) -> str:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        create_app_login(conn)
        return database_url(conn, login=True)


SCHEMA = [m.name for m in sql_files("schema")]


def test_check_and_dry_run_say_what_is_pending_and_change_nothing(empty_database: Callable[[], str]) -> None:
    url = empty_database()
    check = notifyd("migrate", "--check", url=url)
    assert check.returncode == 1, check.stderr
    assert [line.removeprefix("would apply: ") for line in check.stdout.splitlines() if "would apply" in line] == [
        f"procrastinate {metadata.version('procrastinate')}",
        *SCHEMA,
    ]
    dry = notifyd("migrate", "--dry-run", url=url)
    assert dry.returncode == 0 and dry.stdout == check.stdout
    assert ledger(url) == []
    asyncio.run(migrate_url(url))
    before = ledger(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM notify_private.migrations WHERE name = %s", (SCHEMA[-1],))
    partly = ledger(url)
    dropped = next(row for row in before if row[0] == SCHEMA[-1])
    dry = notifyd("migrate", "--dry-run", url=url)
    assert f"would apply: {SCHEMA[-1]}" in dry.stdout and dry.returncode == 0
    assert ledger(url) == partly
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO notify_private.migrations (name, checksum, applied_at) VALUES (%s, %s, %s)", dropped)
    up = notifyd("migrate", "--check", url=url)
    assert (up.returncode, up.stdout.strip()) == (0, "notifyd migrate: up to date (nothing to apply)")
    assert ledger(url) == before


def test_check_of_an_unreachable_database_exits_2() -> None:
    result = notifyd("migrate", "--check", url="postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 2 and "notifyd migrate:" in result.stderr


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_refuse_an_unmigrated_database(empty_database: Callable[[], str], command: str) -> None:
    url = empty_database()
    result = notifyd(command, url=url)
    assert result.returncode == EXIT_NOT_MIGRATED
    assert "the database lacks migrations procrastinate" in result.stderr and SCHEMA[-1] in result.stderr
    assert "run notifyd migrate" in result.stderr


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_name_the_missing_migrations(db: psycopg.Connection[Any], command: str) -> None:
    db.execute("DELETE FROM notify_private.migrations WHERE name = ANY(%s)", (SCHEMA[-2:],))
    result = notifyd(command, url=database_url(db, login=True))
    assert result.returncode == EXIT_NOT_MIGRATED
    assert f"the database lacks migrations {SCHEMA[-2]}, {SCHEMA[-1]}: run notifyd migrate" in result.stderr


def test_a_changed_landed_migration_is_refused(db: psycopg.Connection[Any]) -> None:
    db.execute("UPDATE notify_private.migrations SET checksum = 'edited' WHERE name = '0001_core.sql'")
    result = notifyd("serve", url=database_url(db, login=True))
    assert result.returncode == EXIT_NOT_MIGRATED and "sql/schema/0001_core.sql changed" in result.stderr
    check = notifyd("migrate", "--check", url=database_url(db, login=False))
    assert check.returncode == 2 and "0001_core.sql changed" in check.stderr


def test_a_database_newer_than_the_process_is_served_with_a_warning(
    db: psycopg.Connection[Any], own_server: Any, own_worker: Any
) -> None:
    """Rolling upgrade: the new release migrated; the old processes keep running, as migrations only add."""
    db.execute("INSERT INTO notify_private.migrations (name, checksum) VALUES ('9999_from_the_future.sql', 'x')")
    server: ServerProcess = own_server()
    worker: WorkerProcess = own_worker()
    for proc in (server, worker):
        assert "migrations this notifyd does not know (9999_from_the_future.sql)" in proc.log()
        assert "bypasses row-level security" not in proc.log()
    check = notifyd("migrate", "--check", url=database_url(db, login=False))
    assert check.returncode == 0
    assert "newer than this notifyd (already applied): 9999_from_the_future.sql" in check.stdout


def test_a_superuser_login_is_warned_about(db: psycopg.Connection[Any], tmp_path: Path) -> None:
    proc = ServerProcess(database_url(db, login=False), tmp_path / "serve.log")
    proc.start()
    try:
        warning = "logged in as a role that bypasses row-level security (superuser, the database owner, BYPASSRLS)"
        assert warning in proc.log()
    finally:
        proc.stop()


def test_a_bypassrls_login_is_warned_about(db: psycopg.Connection[Any], tmp_path: Path) -> None:
    db.execute("CREATE ROLE notifyd_bypass_login LOGIN BYPASSRLS NOINHERIT PASSWORD 'pw'")
    try:
        db.execute("GRANT notify_worker TO notifyd_bypass_login")
        info = db.info
        url = f"postgresql://notifyd_bypass_login:pw@{info.host}:{info.port}/{info.dbname}"
        result = subprocess.run(
            [sys.executable, "-c", "import asyncio, sys; from notifyd.core.requestid import configure_logging; "
             "from notifyd.db.startup import check; configure_logging(); asyncio.run(check(sys.argv[1]))", url],
            cwd=ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "bypasses row-level security (BYPASSRLS)" in result.stderr
    finally:
        db.execute("DROP OWNED BY notifyd_bypass_login")
        db.execute("DROP ROLE notifyd_bypass_login")


# --- the environment registry -----------------------------------------------------------------------

READERS = {
    "env",
    "_int",
    "_float",
    "_text",
    "_origins",
    "_positive",
    "_seconds",
    "_networks",
    "_database_urls",
    "_patterns",
}


def _calls() -> list[tuple[Path, ast.AST]]:
    return [(path, node) for path in sorted((ROOT / "notifyd").rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))]  # fmt: skip


def test_notifyd_reads_the_environment_only_through_the_registry() -> None:
    # `{**os.environ, ...}` hands the whole environment to a child process: that reads no variable.
    calls = _calls()
    copied = {id(node.values[i]) for _, node in calls if isinstance(node, ast.Dict)
              for i, key in enumerate(node.keys) if key is None}  # fmt: skip
    direct = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path, node in calls
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"}
        and id(node) not in copied
        and not (path.name == "config.py" and node.lineno == _env_function_line())
    ]  # fmt: skip
    assert direct == []


def _env_function_line() -> int:
    tree = ast.parse((ROOT / "notifyd" / "core" / "config.py").read_text())
    env = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "env")
    return next(n.lineno for n in ast.walk(env) if isinstance(n, ast.Attribute) and n.attr == "environ")


def test_every_name_read_is_registered_and_every_registered_name_is_read() -> None:
    read: set[str] = set()
    constants = {}
    for _, node in _calls():
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.endswith("_ENV"):
                    constants[target.id] = node.value.value
    for _, node in _calls():
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in READERS and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant):
                assert isinstance(arg.value, str), f"{node.func.id} reads a setting by a name that is not a string"
                read.add(arg.value)
            elif isinstance(arg, ast.Name) and arg.id in constants:
                read.add(constants[arg.id])
    assert read - set(REGISTRY) == set()
    assert set(REGISTRY) - read == set()


@pytest.mark.parametrize("command", ["serve", "worker", "migrate", "dev"])
def test_every_command_help_lists_its_environment(command: str) -> None:
    result = subprocess.run([sys.executable, "-m", "notifyd", command, "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.split("environment variables:\n")[1].splitlines() if line]
    assert names == [v.name for v in variables_of(command)] and "DATABASE_URL" in names


def test_version_is_the_package_metadata() -> None:
    result = subprocess.run([sys.executable, "-m", "notifyd", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == f"notifyd {metadata.version('notifyd')}"
