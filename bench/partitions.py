"""Scenario partitions: the week-partitioned notify.notifications at the scale's table size.

Builds `table_rows` notifications set-based (INSERT … SELECT generate_series as the owner with
session_replication_role = replica, so no row trigger runs; each id a UUIDv7 of its created_at, as the
insert trigger makes them) spread evenly over the last 180 days, one partition a week (pg_partman made
the older ones first), one user holding `user_rows` of them. Then:
  * the notification center's list and unread count over REST for that user, p95, beside the same reads
    as bare SQL (the spec's < 200 ms);
  * retention of everything older than 90 days, twice over the same rows: once as one DELETE, once as
    notify_private.maintain_partitions with a 90-day policy (partition drops, children first): time and
    WAL bytes of that statement alone (EXPLAIN (ANALYZE, WAL): the server is shared) and the table's size
    after (no VACUUM).
The creation figures of the creation scenario are already taken on this partitioned table.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psycopg

from bench.common import Database, Row, Scale, Table
from bench.queries import PER_OTHER_USER, TYPES, center_rows

DAYS = 180
KEPT_DAYS = 90
# Row g of n is made g/n of DAYS ago: the rows of one range of g, set-based.
ROWS = (
    "INSERT INTO notify.notifications (id, user_id, type, title, body, seq, created_at, updated_at, read_at) "
    "SELECT notify_private.uuid_v7_at(t.at), {user}, ({types})[1 + mod(g, 7)], 'Notification ' || g, "
    "'a body of some length for the center', g, t.at, t.at, CASE WHEN mod(g, 2) = 0 THEN t.at END "
    "FROM {source}, LATERAL (SELECT now() - g * %(span)s::interval / %(rows)s AS at) AS t "
    "WHERE g BETWEEN %(first)s AND %(last)s"
)
TABLE_SIZE = "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('notify.notifications')"


def load(owner: psycopg.Connection[Any], user: uuid.UUID, rows: int, user_rows: int, first: float) -> None:
    """The rows whose age is at least `first` of DAYS (0: all of them), the user's and everybody else's."""
    span = f"{DAYS} days"
    for who, source, count in (
        ("%(user)s::uuid", "generate_series(1, %(rows)s) AS g", user_rows),
        ("o.user_id", f"bench_others AS o, generate_series(1, {PER_OTHER_USER}) AS g", PER_OTHER_USER),
    ):
        owner.execute(
            ROWS.format(user=who, types=TYPES, source=source),
            {"user": user, "rows": count, "span": span, "first": int(count * first) + 1, "last": count},
        )


def build(db: Database, user: uuid.UUID, table_rows: int, user_rows: int) -> float:
    """Seconds to make the partitions and load the rows (then VACUUM ANALYZE)."""
    others = max(0, (table_rows - user_rows) // PER_OTHER_USER)
    started = time.monotonic()
    with db.owner() as owner:
        # The partitions are UTC days (migration 0021): pg_partman reads bounds in the session's zone.
        owner.execute("SET TimeZone = 'UTC'")
        owner.execute(
            "SELECT partman.create_partition_time('notify.notifications', array_agg(d)) "
            "FROM generate_series(date_trunc('week', now()) - %s * interval '1 week', date_trunc('week', now()) "
            "- interval '1 week', interval '1 week') AS d",
            (DAYS // 7 + 1,),
        )
        owner.execute("SET session_replication_role = replica")
        owner.execute("CREATE TABLE bench_others AS SELECT gen_random_uuid() AS user_id FROM generate_series(1, %s)",
                      (others,))  # fmt: skip
        owner.execute("INSERT INTO notify.recipients (user_id, last_seq) VALUES (%s, %s)", (user, user_rows))
        owner.execute("INSERT INTO notify.recipients (user_id, last_seq) SELECT user_id, %s FROM bench_others",
                      (PER_OTHER_USER,))  # fmt: skip
        load(owner, user, table_rows, user_rows, 0)
        owner.execute("VACUUM ANALYZE notify.notifications")
    return time.monotonic() - started


def measured(owner: psycopg.Connection[Any], statement: str, *params: Any) -> tuple[float, float]:
    """Seconds and WAL bytes of one statement, by EXPLAIN (ANALYZE, WAL): this backend's own WAL, nested calls
    included, whatever else the server writes meanwhile."""
    row = owner.execute(f"EXPLAIN (ANALYZE, WAL, FORMAT JSON) {statement}", params).fetchone()
    assert row is not None
    plan = row[0][0]
    return plan["Execution Time"] / 1000, float(plan["Plan"].get("WAL Bytes", 0))


def retention(db: Database, user: uuid.UUID, rows: int, user_rows: int) -> tuple[dict[str, float], dict[str, float]]:
    """DELETE of everything past KEPT_DAYS, the same rows loaded again, then the partition drops: the seconds,
    WAL bytes and table size after of each."""
    with db.owner() as owner:
        owner.execute("SET TimeZone = 'UTC'")
        seconds, wal = measured(
            owner, "DELETE FROM notify.notifications WHERE created_at < now() - %s * interval '1 day'", KEPT_DAYS
        )
        size = owner.execute(TABLE_SIZE).fetchone()
        deleted = {"s": seconds, "wal": wal, "size": float(size[0] if size else 0)}
        # The same rows again, in the partitions the DELETE emptied, for the drops to remove; the partitions ahead
        # made first, so that only the drops are measured.
        owner.execute("SET session_replication_role = replica")
        load(owner, user, rows, user_rows, KEPT_DAYS / DAYS)
        owner.execute("RESET session_replication_role")
        owner.execute("SELECT partman.run_maintenance('notify.notifications', p_jobmon => false)")
        owner.execute("UPDATE notify.retention_policies SET max_age = %s * interval '1 day'", (KEPT_DAYS,))
        seconds, wal = measured(owner, "SELECT notify_private.maintain_partitions()")
        size = owner.execute(TABLE_SIZE).fetchone()
        dropped = {"s": seconds, "wal": wal, "size": float(size[0] if size else 0)}
    return deleted, dropped


async def run(db: Database, scale: Scale, table: Table) -> None:
    user = uuid.uuid4()
    loaded = await asyncio.to_thread(build, db, user, scale.table_rows, scale.user_rows)
    with db.owner() as owner:
        row = owner.execute(f"SELECT count(*), ({TABLE_SIZE}) FROM notify.notifications").fetchone()  # noqa: S608
        parts = owner.execute("SELECT count(*) FROM pg_partition_tree('notify.notifications') WHERE isleaf").fetchone()
    assert row is not None and parts is not None
    table.add(
        Row("P", f"build {row[0]:,} rows over {DAYS} days in {parts[0]} partitions ({row[1] / 2**30:.1f} GiB)",
            loaded, None, "s"),
    )  # fmt: skip
    table.add(*await center_rows(db, user, scale, "P", f"user with {scale.user_rows:,} in {row[0]:,}, partitioned"))
    deleted, dropped = await asyncio.to_thread(retention, db, user, scale.table_rows, scale.user_rows)
    what = f"retention of {KEPT_DAYS} of {DAYS} days"
    table.add(
        Row("P", f"{what}: partition drop (floor: one DELETE)", dropped["s"], deleted["s"], "s"),
        Row("P", "  WAL written: drop (floor: DELETE)", dropped["wal"] / 2**20, deleted["wal"] / 2**20, "MiB"),
        Row("P", "  table size after: drop (floor: DELETE, before VACUUM)", dropped["size"] / 2**20,
            deleted["size"] / 2**20, "MiB"),
    )  # fmt: skip
