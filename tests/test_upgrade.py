"""Upgrading a database of notifyd 0.1.0 (its sql/ tree kept in tests/snapshots as an archive) to the current schema.

The old database is filled through 0.1.0's own SQL API as the roles that use it, then migrated
with the current tree: its catalog must equal a fresh install's, and every row must still be there
and readable by the roles that read it.
"""

from __future__ import annotations

import asyncio
import json
import tarfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notifyd.db.migrate import migrate_url, migrations, status_url
from tests.conftest import create_app_login, database_url
from tests.test_migrate import schema_dump

# The sql/ tree of notifyd 0.1.0 (commit 6ac08bf), kept because CI's clone may be shallow. It is an archive, not
# files: what 0.1.0 installed is test data that never changes, not code to read or keep in step with sql/.
SNAPSHOT_ARCHIVE = Path(__file__).resolve().parent / "snapshots" / "v0.1.0-sql.tar.gz"


def unpack_sql(archive_path: Path, target: Path) -> Path:
    """An archived sql/ tree (tests/snapshots), unpacked below `target`."""
    with tarfile.open(archive_path) as archive:
        archive.extractall(target, filter="data")
    return target / "sql"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """0.1.0's sql/ tree, unpacked."""
    return unpack_sql(SNAPSHOT_ARCHIVE, tmp_path_factory.mktemp("v0.1.0"))


TABLES = ("recipients", "notifications", "notification_deliveries", "notification_preferences",
          "notification_templates",
          "push_subscriptions")  # fmt: skip


@contextmanager
def acting(owner: psycopg.Connection[Any], role: str, claims: dict[str, Any]) -> Iterator[psycopg.Connection[Any]]:
    """A connection of the non-superuser login, acting as one notify role with these claims."""
    with psycopg.connect(database_url(owner, login=True), autocommit=True) as conn:
        conn.execute(f"SET ROLE {role}")
        conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps(claims),))
        yield conn


SERVICE = {"sub": "billing", "role": "service"}


def fill(owner: psycopg.Connection[Any], users: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Recipients, notifications with e-mail deliveries (one of each user's read), preferences, a template,
    push subscriptions; returns each user's read notification."""
    read: dict[uuid.UUID, uuid.UUID] = {}
    with acting(owner, "notify_service", SERVICE) as service:
        for n, user in enumerate(users):
            service.execute("SELECT notify.upsert_recipient(%s, %s, 'en', 'UTC')", (user, f"user{n}@example.com"))
            for i in range(3):
                service.execute(
                    "SELECT notify.send(user_id => %s, type => 'billing', title => %s,"
                    " channels => ARRAY['in_app', 'email'])",
                    (user, f"invoice {i}"),
                )  # fmt: skip
    for user in users:
        with acting(owner, "notify_authenticated", {"sub": str(user)}) as me:
            first = me.execute("SELECT id FROM notify.notifications ORDER BY created_at, id LIMIT 1").fetchone()
            assert first is not None
            me.execute("SELECT notify.mark_read(%s)", first)
            read[user] = first[0]
            me.execute("SELECT notify.set_preference('billing', %s)", (json.dumps({"email_enabled": False}),))
    owner.execute(
        """INSERT INTO notify.notification_templates (name, type, title_template, body_template)
           VALUES ('invoice', 'billing', 'Invoice {{ number }}', 'Due {{ due }}')"""
    )
    for n, user in enumerate(users):
        owner.execute(
            "INSERT INTO notify.push_subscriptions (user_id, kind, fcm_token) VALUES (%s, 'fcm', %s)",
            (user, f"fcm-token-{n}"),
        )
    return read


def counts(owner: psycopg.Connection[Any]) -> dict[str, int]:
    return {t: owner.execute(f"SELECT count(*) FROM notify.{t}").fetchone()[0] for t in TABLES}  # type: ignore[index]


def as_seen_by_users(owner: psycopg.Connection[Any], users: list[uuid.UUID]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for user in users:
        with acting(owner, "notify_authenticated", {"sub": str(user)}) as me:
            seen[str(user)] = {
                "notifications": me.execute(
                    "SELECT id, title, read_at IS NOT NULL FROM notify.notifications ORDER BY id"
                ).fetchall(),
                "unread": me.execute("SELECT notify.unread_count() -> 'count'").fetchone(),
                "billing email": me.execute(
                    "SELECT i -> 'email_enabled' FROM jsonb_array_elements(notify.preferences() -> 'items') AS i"
                    " WHERE i ->> 'notification_type' = 'billing'"
                ).fetchone(),
                "devices": me.execute("SELECT count(*) FROM notify.push_subscriptions").fetchone(),
            }
    with acting(owner, "notify_service", SERVICE) as service:
        seen["templates"] = service.execute("SELECT name, title_template FROM notify.notification_templates").fetchall()
    return seen


@pytest.mark.slow
def test_a_database_of_0_1_0_upgrades_to_a_fresh_installs_catalog_with_every_row_readable(
    empty_database: Callable[[], str], snapshot: Path
) -> None:
    old_url, fresh_url = empty_database(), empty_database()
    assert asyncio.run(migrate_url(old_url, tree=snapshot)) == [m.name for m in migrations(snapshot)]
    users = [uuid.uuid4() for _ in range(3)]
    with psycopg.connect(old_url, autocommit=True) as owner:
        create_app_login(owner)
        read = fill(owner, users)
        before, seen_before = counts(owner), as_seen_by_users(owner, users)
    assert all(before.values()), before
    assert before["notifications"] == 9 and before["notification_deliveries"] >= 9
    for user in users:
        assert seen_before[str(user)]["unread"] == (2,)
        assert seen_before[str(user)]["billing email"] == (False,)
        assert (read[user], "invoice 0", True) in seen_before[str(user)]["notifications"]

    pending = asyncio.run(status_url(old_url)).pending
    assert asyncio.run(migrate_url(old_url)) == pending
    assert asyncio.run(status_url(old_url)).pending == []
    asyncio.run(migrate_url(fresh_url))
    assert schema_dump(old_url) == schema_dump(fresh_url)
    with psycopg.connect(old_url, autocommit=True) as owner:
        assert counts(owner) == before
        assert as_seen_by_users(owner, users) == seen_before
        # The upgraded database keeps working: a new notification arrives beside the old ones.
        with acting(owner, "notify_service", SERVICE) as service:
            service.execute("SELECT notify.send(user_id => %s, type => 'billing', title => 'after')", (users[0],))
        with acting(owner, "notify_authenticated", {"sub": str(users[0])}) as me:
            assert me.execute("SELECT notify.unread_count() -> 'count'").fetchone() == (3,)
