"""The database's security rules and its one list of channels, checked over the catalogs so that later changes
keep to them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import psycopg

from notifyd.core.models import Channel

OUR_SCHEMAS = ("notify", "notify_private")


def rows(db: psycopg.Connection[Any], sql: str) -> list[tuple[Any, ...]]:
    return db.execute(sql, {"schemas": list(OUR_SCHEMAS)}).fetchall()


def test_every_table_of_notify_has_forced_rls_and_a_policy(db: psycopg.Connection[Any]) -> None:
    tables = rows(
        db,
        """
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
               (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
        FROM pg_class c WHERE c.relnamespace = 'notify'::regnamespace AND c.relkind IN ('r', 'p')
          AND NOT c.relispartition""",
    )
    assert len(tables) >= 12
    offenders = [t for t in tables if not (t[1] and t[2] and t[3] > 0)]
    assert offenders == []


def test_partitions_are_reached_only_through_their_table(db: psycopg.Connection[Any]) -> None:
    # The policies of a partitioned table are its partitions' only ones: nobody may read a partition directly.
    granted = rows(
        db,
        """
        SELECT c.relname, r.rolname FROM pg_class c CROSS JOIN pg_roles r
        WHERE c.relnamespace = 'notify'::regnamespace AND c.relispartition AND r.rolname LIKE 'notify\\_%%'
          AND has_table_privilege(r.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE')""",
    )
    partitions = rows(db, "SELECT 1 FROM pg_class c WHERE c.relnamespace = 'notify'::regnamespace AND c.relispartition")
    assert partitions, "notify.notifications is partitioned"
    assert granted == []


def test_every_security_definer_function_pins_an_empty_search_path(db: psycopg.Connection[Any]) -> None:
    definers = rows(
        db,
        """
        SELECT p.oid::regprocedure::text, p.proconfig, pg_get_userbyid(p.proowner)
        FROM pg_proc p WHERE p.pronamespace::regnamespace::text = ANY(%(schemas)s) AND p.prosecdef""",
    )
    assert definers, "the seq-assigning triggers are SECURITY DEFINER"
    # The one exception (docs/channels.md): the wrapper over Procrastinate, whose functions use unqualified names.
    wrapper = ("notify_private.defer_jobs(jsonb)", ["search_path=procrastinate, pg_temp"], "notify_definer")
    assert wrapper in definers
    not_pinned_empty = [d for d in definers if 'search_path=""' not in (d[1] or []) and d != wrapper]
    assert not_pinned_empty == []


def test_security_definer_functions_are_owned_by_a_nologin_role_with_policies(db: psycopg.Connection[Any]) -> None:
    owners = rows(
        db,
        """
        SELECT DISTINCT r.rolname, r.rolcanlogin, r.rolsuper, r.rolbypassrls
        FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
        WHERE p.pronamespace::regnamespace::text = ANY(%(schemas)s) AND p.prosecdef
          AND p.oid <> 'notify_private.maintain_partitions()'::regprocedure""",
    )
    # The one exception (docs/operations.md): partition upkeep makes and drops partitions, which takes the
    # table's owner; it touches rows only through forget_children, a notify_definer function.
    assert owners == [("notify_definer", False, False, False)]
    policies = db.execute("""
        SELECT count(*) FROM pg_policy WHERE 'notify_definer'::regrole = ANY(polroles)""").fetchone()
    assert policies is not None and policies[0] > 0


def test_no_function_of_ours_is_executable_by_public(db: psycopg.Connection[Any]) -> None:
    public = rows(
        db,
        """
        SELECT p.oid::regprocedure::text FROM pg_proc p
        WHERE p.pronamespace::regnamespace::text = ANY(%(schemas)s)
          AND has_function_privilege('public', p.oid, 'EXECUTE')""",
    )
    assert public == []


def test_every_view_is_security_invoker(db: psycopg.Connection[Any]) -> None:
    views = rows(
        db,
        """
        SELECT c.relname, coalesce(c.reloptions, '{}')
        FROM pg_class c WHERE c.relnamespace::regnamespace::text = ANY(%(schemas)s) AND c.relkind = 'v'""",
    )
    offenders = [v for v in views if "security_invoker=true" not in v[1] and "security_invoker=on" not in v[1]]
    assert offenders == []


def test_policies_are_named_as_sentences(db: psycopg.Connection[Any]) -> None:
    names = [r[0] for r in rows(db, "SELECT policyname FROM pg_policies WHERE schemaname = ANY(%(schemas)s)")]
    assert names
    assert [n for n in names if " " not in n] == []


def test_every_object_of_notify_has_a_purpose_comment(db: psycopg.Connection[Any]) -> None:
    uncommented = rows(
        db,
        """
        SELECT c.relname FROM pg_class c
        WHERE c.relnamespace::regnamespace::text = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v')
          AND NOT c.relispartition AND obj_description(c.oid, 'pg_class') IS NULL
        UNION ALL
        SELECT p.oid::regprocedure::text FROM pg_proc p
        WHERE p.pronamespace::regnamespace::text = ANY(%(schemas)s)
          AND obj_description(p.oid, 'pg_proc') IS NULL""",
    )
    assert uncommented == []


def test_every_trigger_of_ours_has_a_purpose_comment_and_every_comment_is_one_line(
    db: psycopg.Connection[Any],
) -> None:
    triggers = rows(
        db,
        """
        SELECT t.tgname, obj_description(t.oid, 'pg_trigger') FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace::regnamespace::text = ANY(%(schemas)s) AND NOT t.tgisinternal
          AND t.tgparentid = 0""",
    )
    assert len(triggers) >= 10
    assert [t[0] for t in triggers if t[1] is None] == []
    comments = rows(
        db,
        """
        SELECT d.objoid::text, d.description FROM pg_description d
        WHERE d.objsubid = 0 AND d.objoid IN (
            SELECT c.oid FROM pg_class c WHERE c.relnamespace::regnamespace::text = ANY(%(schemas)s)
            UNION ALL SELECT p.oid FROM pg_proc p WHERE p.pronamespace::regnamespace::text = ANY(%(schemas)s)
            UNION ALL SELECT t.oid FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                      WHERE c.relnamespace::regnamespace::text = ANY(%(schemas)s))""",
    )
    assert len(comments) > 100
    assert [c for c in comments if "\n" in c[1] or not c[1].strip()] == []


def test_the_group_roles_cannot_log_in(db: psycopg.Connection[Any]) -> None:
    roles = db.execute("""
        SELECT rolname, rolcanlogin, rolsuper, rolbypassrls FROM pg_roles
        WHERE rolname LIKE 'notify\\_%' ORDER BY rolname""").fetchall()
    assert [r[0] for r in roles] == [
        "notify_admin",
        "notify_authenticated",
        "notify_definer",
        "notify_service",
        "notify_worker",
    ]
    assert all(not (r[1] or r[2] or r[3]) for r in roles)


API_ROLES = ("notify_authenticated", "notify_service", "notify_admin", "notify_worker", "notify_definer")


def test_every_command_a_role_may_run_on_a_table_has_a_policy_for_it(db: psycopg.Connection[Any]) -> None:
    # Forced RLS without a policy for a granted command would silently match no rows: a grant is a promise.
    missing = db.execute(
        """
        SELECT c.relname, r.role, cmd.name
        FROM pg_class c
        CROSS JOIN unnest(%(roles)s::text[]) AS r(role)
        CROSS JOIN (VALUES ('SELECT', 'r'), ('INSERT', 'a'), ('UPDATE', 'w'), ('DELETE', 'd')) AS cmd(name, code)
        WHERE c.relnamespace = 'notify'::regnamespace AND c.relkind IN ('r', 'p')
          AND has_table_privilege(r.role, c.oid, cmd.name)
          AND NOT EXISTS (
              SELECT 1 FROM pg_policy p
              WHERE p.polrelid = c.oid AND p.polcmd IN (cmd.code, '*')
                AND (0 = ANY(p.polroles) OR r.role::regrole = ANY(p.polroles)))
        ORDER BY 1, 2, 3""",
        {"roles": list(API_ROLES)},
    ).fetchall()
    assert missing == []


def test_no_notify_payload_can_exceed_8000_bytes(db: psycopg.Connection[Any]) -> None:
    # NOTIFY carries an id (a uuid, a transaction id), never data: listeners read the rows.
    calls = rows(
        db,
        r"""
        SELECT p.oid::regprocedure::text, m[1]
        FROM pg_proc p, regexp_matches(p.prosrc, 'pg_notify\(([^;]*)\)\s*;', 'g') AS m
        WHERE p.pronamespace::regnamespace::text = ANY(%(schemas)s)""",
    )
    assert calls, "the notifying triggers were found"
    id_payload = r"^'[a-z_]+',\s*(pg_catalog\.pg_current_xact_id\(\)|[a-z_]+\.id)::text$"
    offenders = [c for c in calls if not re.match(id_payload, c[1].strip())]
    assert offenders == []
    statements = rows(
        db,
        r"""
        SELECT p.oid::regprocedure::text FROM pg_proc p
        WHERE p.pronamespace::regnamespace::text = ANY(%(schemas)s) AND p.prosrc ~* '(^|;|\s)NOTIFY\s+\w+\s*,'""",
    )
    assert statements == [], "no NOTIFY statement with a payload"


def test_the_channels_are_one_list_that_python_and_every_check_agree_with(db: psycopg.Connection[Any]) -> None:
    """notify.channels() is the list (and its order); Python's Channel spells it, and every CHECK naming
    channels accepts exactly those (the rate buckets' also 'test'): a new channel missed in one place fails here."""
    listed = db.execute("SELECT notify.channels()").fetchone()
    assert listed is not None and tuple(listed[0]) == get_args(Channel)
    checks = db.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE contype = 'c' AND connamespace IN ('notify'::regnamespace, 'notify_private'::regnamespace)"
        " AND pg_get_constraintdef(oid) LIKE '%''in_app''%' AND conrelid <> 0"
        " AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = conrelid)"
    ).fetchall()
    assert len(checks) >= 5, checks
    # The console lists them too (its filters and its deliveries chart).
    console = (Path(__file__).resolve().parent.parent / "notifyd" / "static" / "console.js").read_text()
    spelled = re.search(r"^const CHANNELS = \[(.*)\];$", console, re.M)
    assert spelled is not None and tuple(re.findall(r'"([a-z_]+)"', spelled.group(1))) == tuple(listed[0])
    for table, name, definition in checks:
        words = set(re.findall(r"'([a-z_]+)'::text", definition))
        assert set(listed[0]) <= words <= set(listed[0]) | {"test"}, (table, name, definition)
