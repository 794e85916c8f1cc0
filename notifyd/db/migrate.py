"""`notifyd migrate`: Procrastinate's schema, then sql/schema once each, then sql/functions and sql/rls.

A small runner rather than a migration library: each file is one multi-statement script
(PL/pgSQL bodies included) that asyncpg runs as it is, the whole migration is one
transaction under an advisory lock, and the re-applied directories (functions, RLS)
are not something the libraries we looked at (yoyo, alembic) model.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import metadata, resources
from importlib.resources.abc import Traversable

import asyncpg

from notifyd.db.queries import query

PROCRASTINATE_SCHEMA = "procrastinate"
_PROCRASTINATE_LEDGER_NAME = "procrastinate"
_VERSION_PREFIX = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


# The extension of the partitioned tables (sql/schema/0021): pg_partman is not in PostgreSQL's own packages,
# so migrate says what to install before anything runs.
PARTITION_EXTENSION = "pg_partman"


class MigrationError(Exception):
    """A migration cannot be applied as the files stand."""


def missing_extension_message(name: str, major: int) -> str:
    """What `notifyd migrate` says when the server cannot create the partition manager."""
    return (
        f"the PostgreSQL server lacks the extension {name}, which the partitioned notifications table needs: "
        f"install it on the database server (Debian/Ubuntu: apt-get install postgresql-{major}-partman; "
        f"elsewhere: the pg_partman package for PostgreSQL {major}; a managed service: enable its pg_partman "
        "extension), then run notifyd migrate again"
    )


async def require_extension(conn: asyncpg.Connection) -> None:
    """Refuses to start a migration the server cannot finish for want of the partition manager."""
    row = await conn.fetchrow(query("extension_available"), PARTITION_EXTENSION)
    if not row["available"]:
        raise MigrationError(missing_extension_message(PARTITION_EXTENSION, row["major"]))


def package_tree() -> Traversable:
    """The installed sql/ tree: the wheel carries it as notifyd._schema (a link to sql/ in a checkout)."""
    return resources.files("notifyd._schema")


@dataclass(frozen=True)
class SqlFile:
    directory: str
    path: Traversable

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def sql_files(directory: str, tree: Traversable | None = None) -> list[SqlFile]:
    """The .sql files of one subdirectory of a sql/ tree (the installed one by default), in the order they apply."""
    folder = (tree or package_tree()) / directory
    if not folder.is_dir():
        return []
    return sorted((SqlFile(directory, p) for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda f: f.name)


def migrations(tree: Traversable | None = None) -> list[SqlFile]:
    """The tree's sql/schema files; none at all means a broken install, never "nothing to do"."""
    found = sql_files("schema", tree)
    if not found:
        raise MigrationError(
            f"no migrations found in {tree or package_tree()}/schema: the installed package lacks its SQL files"
        )
    return found


@dataclass(frozen=True)
class Status:
    """How a database's ledger compares with a sql/ tree."""

    # The tree's migrations the database lacks, in the order they would apply (Procrastinate's as "procrastinate X").
    pending: list[str]
    # Migrations the database ran that the tree does not hold: a newer notifyd migrated it.
    unknown: list[str]
    # Landed migrations whose file differs from what ran.
    changed: list[str]


async def status(conn: asyncpg.Connection, tree: Traversable | None = None) -> Status:
    """Reads the ledger (an unmigrated database has none) without changing anything."""
    files = migrations(tree)
    applied: dict[str, str] = {}
    if await conn.fetchval(query("ledger_exists")):
        applied = {r["name"]: r["checksum"] for r in await conn.fetch(query("applied_migrations"))}
    installed = metadata.version("procrastinate")
    pending = [] if applied.get(_PROCRASTINATE_LEDGER_NAME) == installed else [f"procrastinate {installed}"]
    pending += [f.name for f in files if f.name not in applied]
    known = {f.name for f in files} | {_PROCRASTINATE_LEDGER_NAME}
    return Status(
        pending=pending,
        unknown=sorted(name for name in applied if name not in known),
        changed=[f.name for f in files if f.name in applied and applied[f.name] != f.checksum],
    )


def refusal_of_changed(found: Status) -> str | None:
    """The error of a ledger whose landed migrations differ from the tree's files, or None."""
    if not found.changed:
        return None
    return (
        f"{', '.join('sql/schema/' + n for n in found.changed)} changed after it was applied; "
        "landed migrations never change: add a new file instead"
    )


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


async def migrate(conn: asyncpg.Connection, *, up_to: str | None = None, tree: Traversable | None = None) -> list[str]:
    """Brings the database up to date in one transaction; returns the schema files it applied.

    `up_to` stops after the named sql/schema file and skips the re-applied directories:
    it exists to build an install step by step and compare it with a fresh one. `tree` is
    another sql/ tree than the installed one (an earlier release's, to test upgrades from it).
    """
    files = migrations(tree)
    newly_applied: list[str] = []
    await require_extension(conn)
    async with conn.transaction():
        await conn.execute(query("migration_lock"))
        await conn.execute(query("migration_ledger"))
        applied = {r["name"]: r["checksum"] for r in await conn.fetch(query("applied_migrations"))}
        await _apply_procrastinate(conn, applied)
        for migration in files:
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
            for script in sql_files(directory, tree):
                await _run(conn, script)
    return newly_applied


async def _run(conn: asyncpg.Connection, script: SqlFile) -> None:
    try:
        await conn.execute(script.text)
    except asyncpg.PostgresError as error:
        raise MigrationError(f"{script.directory}/{script.name}: {error}") from error


async def migrate_url(database_url: str, tree: Traversable | None = None) -> list[str]:
    """Connects to `database_url` (as the database owner) and migrates it."""
    conn = await asyncpg.connect(database_url)
    try:
        return await migrate(conn, tree=tree)
    finally:
        await conn.close()


async def status_url(database_url: str, tree: Traversable | None = None) -> Status:
    """Connects to `database_url` and compares its ledger with the tree."""
    conn = await asyncpg.connect(database_url)
    try:
        return await status(conn, tree)
    finally:
        await conn.close()
