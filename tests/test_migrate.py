"""`notifyd migrate`: fresh equals step by step, idempotent, safe when run twice at once."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from importlib import metadata
from typing import Any

import asyncpg
import psycopg
import pytest

from notifyd.db.localdb import pg_binary
from notifyd.db.migrate import MigrationError, migrate, migrate_url, sql_files


def schema_dump(url: str) -> str:
    out = subprocess.run(
        [pg_binary("pg_dump"), "--schema-only", "--dbname", url], check=True, capture_output=True, text=True
    ).stdout
    # \restrict lines carry a random key per dump.
    return "\n".join(
        line for line in out.splitlines() if not line.startswith(("-- Dumped", "\\restrict", "\\unrestrict"))
    )


async def migrate_step_by_step(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for migration in sql_files("schema"):
            assert await migrate(conn, up_to=migration.name) == [migration.name]
        assert await migrate(conn) == []
    finally:
        await conn.close()


def test_a_fresh_install_equals_one_migrated_step_by_step(empty_database: Callable[[], str]) -> None:
    fresh, stepped = empty_database(), empty_database()
    assert asyncio.run(migrate_url(fresh)) == [m.name for m in sql_files("schema")]
    asyncio.run(migrate_step_by_step(stepped))
    dump = schema_dump(fresh)
    assert "CREATE TABLE notify.notifications" in dump
    assert dump == schema_dump(stepped)


def test_migrating_again_changes_nothing(empty_database: Callable[[], str]) -> None:
    url = empty_database()
    asyncio.run(migrate_url(url))
    before = schema_dump(url)
    assert asyncio.run(migrate_url(url)) == []
    assert schema_dump(url) == before


def test_two_migrations_at_once_both_succeed(empty_database: Callable[[], str]) -> None:
    url = empty_database()

    async def both() -> list[list[str]]:
        return list(await asyncio.gather(migrate_url(url), migrate_url(url)))

    results = asyncio.run(both())
    assert sorted(results, key=len) == [[], [m.name for m in sql_files("schema")]]


def test_a_landed_migration_that_changed_is_refused(empty_database: Callable[[], str]) -> None:
    url = empty_database()
    asyncio.run(migrate_url(url))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE notify_private.migrations SET checksum = 'edited' WHERE name = '0001_core.sql'")
    with pytest.raises(MigrationError, match="0001_core.sql changed after it was applied"):
        asyncio.run(migrate_url(url))


def test_procrastinate_lives_in_its_own_schema(db: psycopg.Connection[Any]) -> None:
    assert db.execute("""SELECT to_regclass('procrastinate.procrastinate_jobs') IS NOT NULL,
                                to_regclass('public.procrastinate_jobs') IS NULL,
                                to_regprocedure('procrastinate.procrastinate_defer_jobs_v1('
                                                'procrastinate.procrastinate_job_to_defer_v1[])') IS NOT NULL
                      """).fetchone() == (True, True, True)
    recorded = db.execute("SELECT checksum FROM notify_private.migrations WHERE name = 'procrastinate'").fetchone()
    assert recorded == (metadata.version("procrastinate"),)
