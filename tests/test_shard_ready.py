"""The schema stays ready to be sharded by user, checked over the catalogs of a migrated database.

Sharding by user (Citus, docs/scale.md) distributes each user-data table by `user_id` and co-locates the
tables, so one user's rows live on one node. It keeps a unique key only if the key includes `user_id`, and a
foreign key between distributed tables only if both sides include it; the rest become reference tables,
copied to every node. A user-data table is one with a `user_id` column or a foreign key into a user-data
table. Today's deviations are listed below with what would change, and docs/scale.md repeats each by name:
a new table, key or foreign key that breaks the rule fails here until it is fixed or listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

SCALE_DOC = Path(__file__).resolve().parent.parent / "docs" / "scale.md"

# Surrogate keys are ids made without the user (UUIDv7 or random): unique across users by construction.
# On Citus each becomes (user_id, id), and whoever finds a row by id alone must also carry its user.
SURROGATE = "surrogate id; on Citus (user_id, id), and a look-up by id carries the user too"

UNIQUE_KEY_EXCEPTIONS = {
    "notifications_pkey": SURROGATE,
    "notification_deliveries_pkey": SURROGATE,
    "notification_actions_pkey": SURROGATE,
    "notification_folds_pkey": SURROGATE,
    "notification_analytics_pkey": SURROGATE,
    "notification_preferences_pkey": SURROGATE,
    "email_digests_pkey": SURROGATE,
    "push_subscriptions_pkey": SURROGATE,
    "webhook_endpoints_pkey": SURROGATE,
    "chat_connections_pkey": SURROGATE,
    "push_subscriptions_token_hash_idx": "a device is one row whoever subscribed last: the same token moves "
    "between users, so on Citus a token_hash look-up table distributed by token_hash decides the owner",
    "push_subscriptions_endpoint_idx": "as the token: a Web Push endpoint is one device, whichever user it moves to",
    "notification_deliveries_once_idx": "one delivery per notification, channel and device or target: add user_id "
    "in front "
    "(the notification's user is the delivery's)",
    "notification_analytics_tracked_once_idx": "one tracked event per delivery: add user_id in front, once "
    "analytics keeps its user (see the nullable user_id)",
}

# Foreign keys between user-data tables that do not pair user_id with user_id.
FOREIGN_KEY_EXCEPTIONS = {
    "notification_analytics_delivery_id_fkey": "becomes (user_id, delivery_id), or no foreign key",
    "notification_deliveries_subscription_id_fkey": "becomes (user_id, subscription_id); a device that moves "
    "to another user leaves its old deliveries pointing at nothing, as ON DELETE SET NULL does today",
    "notification_deliveries_digest_id_fkey": "becomes (user_id, digest_id)",
    "notification_analytics_user_id_fkey": "ON DELETE SET NULL empties the distribution column, which Citus "
    "refuses: analytics of an erased user would be deleted with the user or keep a pseudonymous user_id",
}

# User-data tables whose user_id may be NULL (a distribution column may not be).
NULLABLE_USER_ID_EXCEPTIONS = {
    "notification_analytics": "an erased user's analytics keep their counts without the user (ON DELETE SET NULL)",
}

# Every other table of notify, and what it is on Citus: a reference table is copied to every node (small,
# read by every send, written rarely); a coordinator table stays on the coordinator alone.
NOT_USER_DATA = {
    "notification_types": "reference",
    "notification_templates": "reference",
    "escalation_chains": "reference",
    "settings": "reference",
    "retention_policies": "reference",
    "org_notification_preferences": "reference",
    "service_keys": "reference",
    "vapid_keys": "reference",
    "email_suppressions": "reference",
    "notification_batches": "reference: one row per bulk send, its recipients' notifications point at it",
    "global_rate_bucket": "per node: one row every send updates cannot be a reference table (a write to "
    "every node per send); each node keeps its own bucket with its share of the limit",
    "audit_log": "coordinator: DBA and admin actions, not per user",
    "webhook_events": "coordinator: provider callbacks deduplicated by their event id",
    "process_figures": "coordinator: each serve and worker process's own samples, for the operator console",
}


def tables(db: psycopg.Connection[Any]) -> dict[str, bool | None]:
    """Each table of notify (partitions are their parent's): whether its user_id may be NULL, or None without one."""
    found = db.execute("""
        SELECT c.relname, NOT a.attnotnull
        FROM pg_class c LEFT JOIN pg_attribute a
          ON a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped
        WHERE c.relnamespace = 'notify'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition""")
    return {name: nullable for name, nullable in found.fetchall()}


def foreign_keys(db: psycopg.Connection[Any]) -> list[tuple[str, str, str, list[tuple[str, str]], str]]:
    """(name, table, referenced table, [(column, referenced column)], ON DELETE action) of notify's tables."""
    found = db.execute("""
        SELECT k.conname, k.conrelid::regclass::text, k.confrelid::regclass::text,
               array_agg(a.attname ORDER BY n.i), array_agg(f.attname ORDER BY n.i), k.confdeltype::text
        FROM pg_constraint k
        CROSS JOIN LATERAL unnest(k.conkey, k.confkey) WITH ORDINALITY AS n(col, fcol, i)
        JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = n.col
        JOIN pg_attribute f ON f.attrelid = k.confrelid AND f.attnum = n.fcol
        JOIN pg_class c ON c.oid = k.conrelid
        WHERE k.contype = 'f' AND c.relnamespace = 'notify'::regnamespace AND NOT c.relispartition
        GROUP BY k.oid""")
    return [
        (name, table.removeprefix("notify."), target.removeprefix("notify."), list(zip(cols, fcols, strict=True)), act)
        for name, table, target, cols, fcols, act in found.fetchall()
    ]


def user_data(db: psycopg.Connection[Any]) -> set[str]:
    """Tables with a user_id, and tables with a foreign key into one of those (to any depth)."""
    members = {name for name, nullable in tables(db).items() if nullable is not None}
    keys = foreign_keys(db)
    while True:
        more = {table for _, table, target, _, _ in keys if target in members} - members
        if not more:
            return members
        members |= more


def test_every_user_data_table_carries_a_non_null_user_id(db: psycopg.Connection[Any]) -> None:
    found = tables(db)
    members = user_data(db)
    assert {"notifications", "notification_deliveries", "recipients"} <= members
    assert [t for t in sorted(members) if found[t] is None] == [], "a user-data table without a user_id column"
    nullable = {t for t in members if found[t]}
    assert nullable == set(NULLABLE_USER_ID_EXCEPTIONS)


def test_every_other_table_is_placed_on_citus(db: psycopg.Connection[Any]) -> None:
    """A new table without user_id says here (and in docs/scale.md) where it lives when sharded."""
    others = set(tables(db)) - user_data(db)
    assert sorted(others) == sorted(NOT_USER_DATA)


def test_every_unique_key_of_user_data_includes_user_id(db: psycopg.Connection[Any]) -> None:
    members = user_data(db)
    found = db.execute("""
        SELECT c.relname, x.relname,
               coalesce((SELECT array_agg(a.attname) FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attnum = ANY(i.indkey)), '{}')
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_class x ON x.oid = i.indexrelid
        WHERE i.indisunique AND c.relnamespace = 'notify'::regnamespace AND NOT c.relispartition""").fetchall()
    breaking = [index for table, index, cols in found if table in members and "user_id" not in cols]
    assert sorted(breaking) == sorted(UNIQUE_KEY_EXCEPTIONS)


def test_every_foreign_key_between_user_data_tables_pairs_user_id(db: psycopg.Connection[Any]) -> None:
    members = user_data(db)
    breaking = [
        name
        for name, table, target, pairs, on_delete in foreign_keys(db)
        if table in members
        and target in members
        # Citus keeps the key if it pairs the distribution columns and never empties them (SET NULL, SET DEFAULT).
        and (("user_id", "user_id") not in pairs or on_delete in ("n", "d"))
    ]
    assert len(foreign_keys(db)) > len(breaking) > 0
    assert sorted(breaking) == sorted(FOREIGN_KEY_EXCEPTIONS)


def test_the_scale_page_names_every_exception() -> None:
    page = SCALE_DOC.read_text()
    listed = [*UNIQUE_KEY_EXCEPTIONS, *FOREIGN_KEY_EXCEPTIONS, *NULLABLE_USER_ID_EXCEPTIONS, *NOT_USER_DATA]
    assert [name for name in listed if f"`{name}`" not in page] == []
