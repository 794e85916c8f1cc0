"""The partitioned notifications table: an install at 0020 with data, migrated; lookups by id on one partition;
retention by dropping partitions past the largest age beside the bounded DELETE; migrate without pg_partman.

The install at 0020 is made with that release's sql/ tree (tests/snapshots/v0020-sql.tar.gz) and filled
through its own triggers with the clock pinned to days in the past, each notification given a UUIDv7 of its
own millisecond, as a real install's rows have (their ids were taken a moment after their created_at).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notifyd.core.auth import Caller
from notifyd.db import migrate as migrate_module
from notifyd.db.migrate import MigrationError, migrate_url
from notifyd.db.pool import as_caller, create_pool
from notifyd.db.queries import query
from notifyd.domain.retention import maintain_partitions
from tests.conftest import create_app_login, database_url
from tests.test_upgrade import unpack_sql

SNAPSHOT_ARCHIVE = Path(__file__).resolve().parent / "snapshots" / "v0020-sql.tar.gz"
NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)
ADA = uuid.UUID("ada00000-0000-4000-8000-000000000001")
BOB = uuid.UUID("b0b00000-0000-4000-8000-000000000002")
SERVICE = {"sub": "billing", "role": "service"}


def uuid7(at: datetime) -> uuid.UUID:
    """A version 7 uuid carrying the millisecond of `at`."""
    millis = int(at.timestamp() * 1000)
    raw = bytearray(millis.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(raw))


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack_sql(SNAPSHOT_ARCHIVE, tmp_path_factory.mktemp("v0020"))


@contextmanager
def owner(url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


def week_of(at: datetime) -> str:
    """The partition of notify.notifications that holds `at` (pg_partman's weekly names: ISO year and week)."""
    year, week, _ = at.isocalendar()
    return f"notify.notifications_p{year}w{week:02d}"


def send_at(
    conn: psycopg.Connection[Any],
    at: datetime,
    user: uuid.UUID,
    title: str,
    *,
    type_: str = "task",
    key: str | None = None,
    group: str | None = None,
) -> uuid.UUID:
    """One notification made through the insert trigger with the clock at `at` and an id of that millisecond."""
    conn.execute("SELECT set_config('notify.clock', %s, false)", (at.isoformat(),))
    row = conn.execute(
        """INSERT INTO notify.notifications (id, user_id, type, title, idempotency_key, group_key, channels)
           VALUES (%s, %s, %s, %s, %s, %s, ARRAY['in_app', 'email']) RETURNING id""",
        (uuid7(at), user, type_, title, key, group),
    ).fetchone()
    conn.execute("SELECT set_config('notify.clock', '', false)")
    return uuid.UUID(str(row[0])) if row else uuid.UUID(int=0)


def counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    tables = ("notifications", "notification_deliveries", "notification_folds", "notification_analytics")
    return {t: conn.execute(f"SELECT count(*) FROM notify.{t}").fetchone()[0] for t in tables}  # type: ignore[index]


def unread(conn: psycopg.Connection[Any], user: uuid.UUID) -> Any:
    with conn.transaction():
        conn.execute("SET LOCAL ROLE notify_authenticated")
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": str(user)}),))
        result = conn.execute("SELECT notify.unread_count()").fetchone()
        conn.execute("RESET ROLE")
    assert result is not None
    return result[0]


@pytest.fixture
def upgraded(empty_database: Callable[[], str], snapshot: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """An install at 0020 with notifications of 200, 100 and 1 days ago and of today (deliveries, a fold, an
    analytics row, idempotency keys on both sides of a day boundary, one id from before 0016), migrated."""
    url = empty_database()
    asyncio.run(migrate_url(url, tree=snapshot))
    made: dict[str, Any] = {}
    with owner(url) as conn:
        conn.execute("UPDATE notify.settings SET value = 'true' WHERE key = 'clock.pinnable'")
        for user in (ADA, BOB):
            conn.execute("SELECT notify.upsert_recipient(%s, %s, 'en', 'UTC')", (user, f"{user.hex}@example.com"))
        made["old"] = send_at(conn, NOW - 200 * DAY, ADA, "two hundred days old")
        made["security"] = send_at(conn, NOW - 200 * DAY, ADA, "kept a year", type_="security")
        made["hundred"] = send_at(conn, NOW - 100 * DAY, ADA, "a hundred days old")
        midnight = NOW.replace(hour=0, minute=0, second=0)
        made["keyed"] = send_at(conn, midnight - timedelta(seconds=1), ADA, "keyed", key="k-boundary")
        # What notify.send binds the key to (a plain INSERT binds it to nothing).
        conn.execute(
            "UPDATE notify.notifications SET request_digest = notify.request_digest('task', 'keyed', NULL, 'normal',"
            " '{}', ARRAY['in_app', 'email'], NULL, '{}', NULL, NULL, NULL, NULL) WHERE id = %s",
            (made["keyed"],),
        )
        made["grouped"] = send_at(conn, NOW - timedelta(minutes=5), ADA, "first of a group", group="g")
        send_at(conn, NOW - timedelta(minutes=4), ADA, "second of the group", group="g")
        made["bob"] = send_at(conn, NOW - timedelta(minutes=3), BOB, "bob's")
        # A row of a random id, as every row made before 0016 has.
        made["legacy"] = uuid.uuid4()
        conn.execute(
            "INSERT INTO notify.notifications (id, user_id, type, title) VALUES (%s, %s, 'task', 'legacy')",
            (made["legacy"], ADA),
        )
        conn.execute(
            """INSERT INTO notify.notification_analytics (notification_id, notification_type, channel, event, user_id)
               VALUES (%s, 'task', 'email', 'opened', %s)""",
            (made["hundred"], ADA),
        )
        made["counts"] = counts(conn)
        made["unread"] = unread(conn, ADA)
        create_app_login(conn)
    asyncio.run(migrate_url(url))
    yield url, made


def as_user(conn: psycopg.Connection[Any], user: uuid.UUID) -> None:
    conn.execute("SET ROLE notify_authenticated")
    conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": str(user)}),))


def test_the_migration_carries_every_row_and_what_users_see(upgraded: tuple[str, dict[str, Any]]) -> None:
    url, made = upgraded
    with owner(url) as conn:
        kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = 'notify.notifications'::regclass").fetchone()
        assert kind == ("p",)
        assert counts(conn) == made["counts"]
        assert unread(conn, ADA) == made["unread"]
        # Every v7 id carries its row's created_at; the old rows sit in partitions of their own days.
        where = conn.execute(
            "SELECT tableoid::regclass::text FROM notify.notifications WHERE id = %s", (made["old"],)
        ).fetchone()
        assert where == (week_of(NOW - 200 * DAY),)
        keys = conn.execute("SELECT notification_id FROM notify_private.notification_keys").fetchall()
        assert keys == [(made["keyed"],)]
        # The deliveries planned at 0020 are still their notifications'.
        planned = conn.execute(
            "SELECT count(*) FROM notify.notification_deliveries WHERE notification_id = %s", (made["hundred"],)
        ).fetchone()
        assert planned == (1,)


def test_an_idempotent_replay_finds_the_first_send_across_a_partition_boundary(
    upgraded: tuple[str, dict[str, Any]],
) -> None:
    url, made = upgraded
    with owner(url) as conn:
        before = counts(conn)["notifications"]
        replay = conn.execute(
            "SELECT notify.send(%s, 'task', 'keyed', channels => ARRAY['in_app', 'email'],"
            " idempotency_key => 'k-boundary')",
            (ADA,),
        ).fetchone()
        assert replay == (made["keyed"],)
        with pytest.raises(psycopg.errors.UniqueViolation, match="idempotency key reused with a different request"):
            conn.execute("SELECT notify.send(%s, 'task', 'another', idempotency_key => 'k-boundary')", (ADA,))
        assert counts(conn)["notifications"] == before
        # The key is per user: Bob's first use of it makes a notification of his own, recorded beside Ada's.
        bobs = conn.execute(
            "SELECT notify.send(%s, 'task', 'keyed', idempotency_key => 'k-boundary')", (BOB,)
        ).fetchone()
        assert bobs is not None and bobs[0] != made["keyed"]
        assert conn.execute("SELECT count(*) FROM notify_private.notification_keys").fetchone() == (2,)


def test_a_lookup_by_id_reaches_one_partition(upgraded: tuple[str, dict[str, Any]]) -> None:
    url, made = upgraded
    with owner(url) as conn:
        partitions = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'notify.notifications'::regclass"
        ).fetchone()
        assert partitions is not None and partitions[0] > 25
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE get_one(uuid) AS {query('get_notification')}")
        for name in ("old", "hundred", "keyed"):
            with conn.transaction():
                as_user(conn, ADA)
                plan = "\n".join(
                    r[0]
                    for r in conn.execute(
                        f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE get_one('{made[name]}')"
                    )
                )
                conn.execute("RESET ROLE")
            scanned = [line for line in plan.splitlines() if "Scan" in line and "notifications_p" in line]
            assert len(scanned) == 1, plan
        # A random id from before 0016 carries no time: its lookup probes every partition, and still finds it.
        with conn.transaction():
            as_user(conn, ADA)
            found = conn.execute(f"EXECUTE get_one('{made['legacy']}')").fetchone()
            conn.execute("RESET ROLE")
        assert found is not None and found[0] == made["legacy"]


def test_a_delivery_status_reads_one_partition(upgraded: tuple[str, dict[str, Any]]) -> None:
    """The center asks it per listed row: past the session's custom plans into its generic one, each call must
    still prune to the partition of its notification's day (this backend's scans in this transaction tell)."""
    url, made = upgraded
    for name in ("old", "hundred"):
        # A connection each: a backend's scan counts since it last reported are all it can tell apart.
        with owner(url) as conn, conn.transaction():
            as_user(conn, ADA)
            statuses = [conn.execute("SELECT notify.delivery_status(%s)", (made[name],)).fetchone() for _ in range(8)]
            conn.execute("RESET ROLE")
            scanned = conn.execute(
                "SELECT relid::regclass::text FROM pg_stat_xact_user_tables WHERE relname LIKE 'notifications%%'"
                " AND schemaname = 'notify' AND idx_scan + seq_scan > 0"
            ).fetchall()
        assert scanned == [(week_of(NOW - (200 if name == "old" else 100) * DAY),)], scanned
        # The same answer every time: in-app went with the notification, e-mail has its planned delivery.
        assert len({json.dumps(s[0], sort_keys=True) for s in statuses if s}) == 1, statuses
        status = statuses[0][0] if statuses[0] else {}
        assert status["in_app"] == "sent" and "email" in status, status


def test_a_pages_delivery_statuses_are_each_ones_status_and_only_the_callers(
    upgraded: tuple[str, dict[str, Any]],
) -> None:
    """The center's page asks for its statuses in one statement: the same answers as one by one, ids from
    before UUIDv7 included, another user's left out, and nothing for an empty page."""
    url, made = upgraded
    ids = [made[name] for name in ("old", "hundred", "keyed", "grouped", "legacy", "bob")]
    with owner(url) as conn, conn.transaction():
        as_user(conn, ADA)
        together = dict(conn.execute("SELECT * FROM notify.delivery_statuses(%s)", (ids,)).fetchall())
        one_by_one = {i: conn.execute("SELECT notify.delivery_status(%s)", (i,)).fetchone()[0] for i in ids}  # type: ignore[index]
        empty = conn.execute("SELECT count(*) FROM notify.delivery_statuses('{}')").fetchone()
    assert set(together) == set(ids) - {made["bob"]}, together
    assert all(together[i] == one_by_one[i] for i in together), (together, one_by_one)
    assert one_by_one[made["bob"]] == {} and empty == (0,)


def test_created_at_never_moves_away_from_the_id(upgraded: tuple[str, dict[str, Any]]) -> None:
    url, made = upgraded
    with owner(url) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="created_at never changes: its id carries it"):
            conn.execute(
                "UPDATE notify.notifications SET created_at = created_at - interval '1 day' WHERE id = %s",
                (made["hundred"],),
            )
        # An id of another millisecond is made again on insert (RETURNING gives the stored one).
        stale = uuid7(NOW - 3 * DAY)
        (stored,) = conn.execute(
            "INSERT INTO notify.notifications (id, user_id, type, title) VALUES (%s, %s, 'task', 'x') RETURNING id",
            (stale, BOB),
        ).fetchone()  # type: ignore[misc]
        assert stored != stale
        carries = conn.execute(
            "SELECT notify_private.uuid_v7_time(id) = date_trunc('milliseconds', created_at, 'UTC')"
            " FROM notify.notifications WHERE id = %s",
            (stored,),
        ).fetchone()
        assert carries == (True,)


def test_erasure_removes_a_users_rows_in_every_partition(upgraded: tuple[str, dict[str, Any]]) -> None:
    url, made = upgraded
    with owner(url) as conn:
        conn.execute("SET ROLE notify_admin")
        conn.execute(
            "SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": "dba", "role": "admin"}),)
        )
        conn.execute("SELECT notify.erase_user(%s)", (ADA,))
        conn.execute("RESET ROLE")
        left = conn.execute(
            """SELECT (SELECT count(*) FROM notify.notifications WHERE user_id = %(u)s),
                      (SELECT count(*) FROM notify.notification_deliveries WHERE user_id = %(u)s),
                      (SELECT count(*) FROM notify.notification_folds WHERE user_id = %(u)s),
                      (SELECT count(*) FROM notify_private.notification_keys WHERE user_id = %(u)s)""",
            {"u": ADA},
        ).fetchone()
        assert left == (0, 0, 0, 0)
        assert conn.execute("SELECT count(*) FROM notify.notifications WHERE user_id = %s", (BOB,)).fetchone() == (1,)


def test_partitions_go_only_past_the_largest_age_and_shorter_ages_stay_deletes(
    upgraded: tuple[str, dict[str, Any]],
) -> None:
    url, made = upgraded
    with owner(url) as conn:
        conn.execute(
            "INSERT INTO notify.retention_policies (notification_type, max_age) VALUES ('security', '400 days')"
        )
        kept = conn.execute("SELECT notify_private.maintain_partitions()").fetchone()
        assert kept is not None and kept[0]["dropped"] == []
        # The 90 days of the default policy: a bounded DELETE removes the task rows of 100 and 200 days ago.
        conn.execute("SET ROLE notify_worker")
        conn.execute("SELECT notify.apply_retention(1000)")
        conn.execute("RESET ROLE")
        alive = {r[0] for r in conn.execute("SELECT id FROM notify.notifications")}
        assert made["old"] not in alive and made["hundred"] not in alive and made["security"] in alive
        # With the security type kept 150 days, every row of 200 days ago is past every age: its partition goes,
        # the security row's deliveries first; the partitions of the last 150 days stay.
        conn.execute("UPDATE notify.retention_policies SET max_age = '150 days' WHERE notification_type = 'security'")
        result = conn.execute("SELECT notify_private.maintain_partitions()").fetchone()
        assert result is not None
        old_partition = week_of(NOW - 200 * DAY)
        assert old_partition in result[0]["dropped"]
        assert week_of(NOW - 100 * DAY) not in result[0]["dropped"]
        assert result[0]["children"]["deliveries"] >= 1
        assert conn.execute("SELECT to_regclass(%s)", (old_partition,)).fetchone() == (None,)
        gone = conn.execute(
            "SELECT count(*) FROM notify.notification_deliveries WHERE notification_id = %s", (made["security"],)
        ).fetchone()
        assert gone == (0,)
        # Partitions are made four weeks ahead.
        ahead = week_of(NOW + 28 * DAY)
        assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", (ahead,)).fetchone() == (True,)


def test_migrate_without_pg_partman_says_what_to_install(
    empty_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = empty_database()
    monkeypatch.setattr(migrate_module, "PARTITION_EXTENSION", "pg_partman_not_here")
    with pytest.raises(MigrationError) as refused:
        asyncio.run(migrate_url(url))
    with psycopg.connect(url) as conn:
        major = conn.info.server_version // 10000
        assert conn.execute("SELECT to_regclass('notify_private.migrations')").fetchone() == (None,)
    assert str(refused.value) == (
        "the PostgreSQL server lacks the extension pg_partman_not_here, which the partitioned notifications table "
        f"needs: install it on the database server (Debian/Ubuntu: apt-get install postgresql-{major}-partman; "
        f"elsewhere: the pg_partman package for PostgreSQL {major}; a managed service: enable its pg_partman "
        "extension), then run notifyd migrate again"
    )


async def test_the_workers_hourly_job_maintains_partitions_as_a_role_that_owns_nothing(
    db: psycopg.Connection[Any],
) -> None:
    """The worker's login holds the notify roles only: it makes and drops partitions through the owner's function."""
    db.execute("SET TimeZone = 'UTC'")
    db.execute(
        "SELECT partman.create_partition_time('notify.notifications',"
        " ARRAY[date_trunc('week', now()) - interval '30 weeks'])"
    )
    stale = week_of(NOW - 30 * 7 * DAY)
    assert db.execute("SELECT to_regclass(%s) IS NOT NULL", (stale,)).fetchone() == (True,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with psycopg.connect(database_url(db, login=True), autocommit=True) as login:
            login.execute(f"DROP TABLE {stale}")
    pool = await create_pool(database_url(db, login=True), min_size=1, max_size=2)
    try:
        done = await maintain_partitions(pool)
    finally:
        await pool.close()
    assert stale in done["dropped"]
    assert db.execute("SELECT to_regclass(%s)", (stale,)).fetchone() == (None,)
    audited = db.execute("SELECT count(*) FROM notify.audit_log WHERE action = 'partitions.dropped'").fetchone()
    assert audited == (1,)


async def test_notifyds_transactions_run_without_jit_and_leave_the_session_as_it_was(
    db: psycopg.Connection[Any],
) -> None:
    """A per-user read over every partition passes jit_above_cost; notifyd's transactions turn JIT off for
    themselves only (through a transaction pooler a session setting would reach other clients)."""
    pool = await create_pool(database_url(db, login=True), min_size=1, max_size=1)
    caller = Caller(role="authenticated", sub=str(ADA), claims={"sub": str(ADA), "role": "authenticated"})
    try:
        session_default = await pool.fetchval("SHOW jit")
        async with as_caller(pool, caller) as conn:
            assert await conn.fetchval("SHOW jit") == "off"
            assert await conn.fetchval("SELECT current_user") == "notify_authenticated"
        assert await pool.fetchval("SHOW jit") == session_default == "on"
    finally:
        await pool.close()
    # The counts a service may call from its own connections carry the setting themselves.
    for counter in ("notify.unread_count", "notify.seen_state"):
        config = db.execute("SELECT proconfig FROM pg_proc WHERE oid = %s::regproc", (counter,)).fetchone()
        assert config is not None and "jit=off" in config[0], (counter, config)
