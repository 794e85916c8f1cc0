"""`notifyd migrate`: Procrastinate's schema, then sql/schema once each, then sql/functions and sql/rls.

A small runner rather than a migration library: each file is one multi-statement script
(PL/pgSQL bodies included) that asyncpg runs as it is, the whole migration is one
transaction under an advisory lock, and the re-applied directories (functions, RLS)
are not something the libraries we looked at (yoyo, alembic) model.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import asyncpg

from notifyd.queries import query

PROCRASTINATE_SCHEMA = "procrastinate"
_PROCRASTINATE_LEDGER_NAME = "procrastinate"
_VERSION_PREFIX = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


class MigrationError(Exception):
    """A migration cannot be applied as the files stand."""


def sql_dir() -> Path:
    """The project's sql/ directory (NOTIFYD_SQL_DIR overrides it)."""
    return Path(os.environ.get("NOTIFYD_SQL_DIR", Path(__file__).resolve().parent.parent / "sql"))


@dataclass(frozen=True)
class SqlFile:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def sql_files(directory: str) -> list[SqlFile]:
    """The .sql files of one sql/ subdirectory, in the order they apply."""
    return [SqlFile(p) for p in sorted((sql_dir() / directory).glob("*.sql"))]


def _version(text: str) -> tuple[int, int, int]:
    match = _VERSION_PREFIX.match(text)
    if match is None:
        raise MigrationError(f"cannot read a version from {text!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch)


async def _apply_procrastinate(conn: asyncpg.Connection, applied: dict[str, str]) -> None:
    installed = metadata.version("procrastinate")
    package_sql = resources.files("procrastinate.sql")
    await conn.execute(query("create_procrastinate_schema"))
    # Procrastinate's SQL uses unqualified names: point them at its schema for this transaction.
    await conn.fetchval(query("set_local_search_path"), f"{PROCRASTINATE_SCHEMA}, pg_catalog")
    recorded = applied.get(_PROCRASTINATE_LEDGER_NAME)
    if recorded is None:
        await conn.execute(package_sql.joinpath("schema.sql").read_text(encoding="utf-8"))
    elif _version(recorded) < _version(installed):
        steps = sorted(
            (entry.name, entry)
            for entry in package_sql.joinpath("migrations").iterdir()
            if entry.name.endswith(".sql") and _version(recorded) < _version(entry.name) <= _version(installed)
        )
        for _, entry in steps:
            await conn.execute(entry.read_text(encoding="utf-8"))
    elif _version(recorded) > _version(installed):
        raise MigrationError(f"the database has Procrastinate {recorded}, newer than the installed {installed}")
    await conn.fetchval(query("set_local_search_path"), "")
    if recorded != installed:
        await conn.execute(query("record_migration"), _PROCRASTINATE_LEDGER_NAME, installed)


async def migrate(conn: asyncpg.Connection, *, up_to: str | None = None) -> list[str]:
    """Brings the database up to date in one transaction; returns the schema files it applied.

    `up_to` stops after the named sql/schema file and skips the re-applied directories:
    it exists to build an install step by step and compare it with a fresh one.
    """
    newly_applied: list[str] = []
    async with conn.transaction():
        await conn.execute(query("migration_lock"))
        await conn.execute(query("migration_ledger"))
        applied = {r["name"]: r["checksum"] for r in await conn.fetch(query("applied_migrations"))}
        await _apply_procrastinate(conn, applied)
        for migration in sql_files("schema"):
            if migration.name in applied:
                if applied[migration.name] != migration.checksum:
                    raise MigrationError(
                        f"sql/schema/{migration.name} changed after it was applied; "
                        "landed migrations never change: add a new file instead"
                    )
            else:
                await _run(conn, migration)
                await conn.execute(query("record_migration"), migration.name, migration.checksum)
                newly_applied.append(migration.name)
            if migration.name == up_to:
                return newly_applied
        if up_to is not None:
            raise MigrationError(f"no migration named {up_to!r} in sql/schema")
        for directory in ("functions", "rls"):
            for script in sql_files(directory):
                await _run(conn, script)
    return newly_applied


async def _run(conn: asyncpg.Connection, script: SqlFile) -> None:
    try:
        await conn.execute(script.text)
    except asyncpg.PostgresError as error:
        raise MigrationError(f"{script.path.parent.name}/{script.name}: {error}") from error


async def migrate_url(database_url: str) -> list[str]:
    """Connects to `database_url` (as the database owner) and migrates it."""
    conn = await asyncpg.connect(database_url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
