"""notify.on_row_change on a host application's table, written by a host role that holds no notify role at all."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.conftest import dsn

ADA = uuid.UUID(int=0xA1)
BOB = uuid.UUID(int=0xB0)
# Roles are cluster-wide: one name per pytest process, like the test databases.
APP_USER = f"app_user_{os.getpid()}"
APP_PASSWORD = "app-user-password"
ASSIGNED = "'task', 'ticket_assigned', 'assignee_id'"


@pytest.fixture
def app_user(db: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """The host application's sample table and its role: neither superuser nor owner, no notify grant."""
    db.execute("CREATE SCHEMA app")
    db.execute("""
        CREATE TABLE app.tickets (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            task_title  text NOT NULL,
            assigned_by text,
            assignee_id uuid,
            project     text,
            reference   text
        )""")
    db.execute(
        "INSERT INTO notify.notification_templates (name, type, title_template, body_template, default_priority) "
        "VALUES ('ticket_assigned', 'task', '{{ assigned_by }} assigned you {{ task_title }}', '', 'high')"
    )
    for user in (ADA, BOB):
        db.execute("SELECT notify.upsert_recipient_v2(%s, %s)", (user, f"{user.hex[-2:]}@example.com"))
    db.execute(f"DROP ROLE IF EXISTS {APP_USER}")
    db.execute(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")
    db.execute(f"GRANT USAGE ON SCHEMA app TO {APP_USER}")
    db.execute(f"GRANT SELECT, INSERT, UPDATE ON app.tickets TO {APP_USER}")
    # The host's own search_path: the trigger must not depend on it.
    login = {**dsn(db, login=False), "user": APP_USER, "password": APP_PASSWORD, "options": "-c search_path=app"}
    conn = psycopg.connect(**login, autocommit=True)
    yield conn
    conn.close()
    db.execute(f"DROP OWNED BY {APP_USER}")
    db.execute(f"DROP ROLE {APP_USER}")


def attach(
    db: psycopg.Connection[Any],
    *options: str,
    args: str = ASSIGNED,
    when: str = "AFTER INSERT OR UPDATE OF assignee_id",
) -> None:
    """The DBA's line (as superuser): the only place where what gets sent is declared."""
    args += "".join(f", '{o}'" for o in options)
    db.execute("DROP TRIGGER IF EXISTS ticket_assigned ON app.tickets")
    db.execute(
        f"CREATE TRIGGER ticket_assigned {when} ON app.tickets "
        f"FOR EACH ROW EXECUTE FUNCTION notify.on_row_change({args})"
    )


def new_ticket(app_user: psycopg.Connection[Any], assignee: uuid.UUID | None = None, **columns: str) -> int:
    values = {"task_title": "Fix the login", "assigned_by": "Grace", **columns, "assignee_id": assignee}
    names = ", ".join(values)
    row = app_user.execute(
        f"INSERT INTO app.tickets ({names}) VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",  # noqa: S608
        list(values.values()),
    ).fetchone()
    assert row is not None
    return int(row[0])


def assign(app_user: psycopg.Connection[Any], ticket: int, assignee: uuid.UUID | None) -> None:
    app_user.execute("UPDATE app.tickets SET assignee_id = %s WHERE id = %s", (assignee, ticket))


def sent(db: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    cur = db.execute(
        "SELECT id, user_id, type, template_id, template_vars, priority, data, group_key, group_count, "
        "idempotency_key FROM notify.notifications ORDER BY created_at"
    )
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def deliveries(db: psycopg.Connection[Any], notification_id: Any) -> dict[str, tuple[str, str | None]]:
    rows = db.execute(
        "SELECT channel, status, reason FROM notify.delivery_decisions WHERE notification_id = %s",
        (notification_id,),
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def test_a_change_of_the_column_sends_the_template_with_the_row(
    db: psycopg.Connection[Any], app_user: psycopg.Connection[Any]
) -> None:
    attach(db)
    ticket = new_ticket(app_user)
    assert sent(db) == [], "an INSERT with a NULL assignee sends nothing"
    assign(app_user, ticket, ADA)
    [first] = sent(db)
    row = {"id": ticket, "task_title": "Fix the login", "assigned_by": "Grace", "assignee_id": str(ADA)}
    assert {k: first[k] for k in ("user_id", "type", "template_id", "priority", "group_key", "idempotency_key")} == {
        "user_id": ADA,
        "type": "task",
        "template_id": "ticket_assigned",
        "priority": "high",  # the template's default_priority
        "group_key": None,
        "idempotency_key": None,
    }
    assert first["template_vars"] == {**row, "project": None, "reference": None, "old": {"assignee_id": None}}
    assert first["data"] == {"source": {"table": "app.tickets", "key": {"id": ticket}, "column": "assignee_id"}}
    assert set(deliveries(db, first["id"])) == {"in_app", "push", "email"}

    # UPDATE OF assignee_id fires when the column is in the SET list, changed or not.
    app_user.execute("UPDATE app.tickets SET assignee_id = assignee_id, task_title = 'Fix it' WHERE id = %s", (ticket,))
    app_user.execute("UPDATE app.tickets SET task_title = 'Fix the login' WHERE id = %s", (ticket,))
    assert len(sent(db)) == 1, "an UPDATE that leaves the column unchanged sends nothing"

    app_user.execute("UPDATE app.tickets SET assignee_id = %s, task_title = 'Fix SSO' WHERE id = %s", (BOB, ticket))
    to_bob = sent(db)[-1]
    assert (to_bob["user_id"], to_bob["template_vars"]["task_title"]) == (BOB, "Fix SSO")
    assert to_bob["template_vars"]["old"] == {"assignee_id": str(ADA), "task_title": "Fix the login"}
    assign(app_user, ticket, None)
    assert len(sent(db)) == 2, "unassigning sends nothing"

    other = new_ticket(app_user, ADA, task_title="Write docs")
    inserted = sent(db)[-1]
    assert (inserted["user_id"], inserted["template_vars"]["id"], inserted["template_vars"]["old"]) == (ADA, other, {})


def test_the_host_role_needs_no_grant_and_cannot_declare_its_own_sends(
    db: psycopg.Connection[Any], app_user: psycopg.Connection[Any]
) -> None:
    attach(db)
    role = db.execute(
        "SELECT rolsuper, pg_has_role(%s, 'notify_service', 'MEMBER'), "
        "has_function_privilege(%s, 'notify.on_row_change()', 'EXECUTE') FROM pg_roles WHERE rolname = %s",
        (APP_USER, APP_USER, APP_USER),
    ).fetchone()
    assert role == (False, False, False)
    assign(app_user, new_ticket(app_user), ADA)
    assert [n["user_id"] for n in sent(db)] == [ADA], "the trigger sends for a role that holds no notify role"

    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="schema notify"):
        app_user.execute("SELECT notify.send(%s, 'task', 'spoofed')", (BOB,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="schema notify"):
        app_user.execute("SELECT notify.on_row_change()")
    # Its own table, its own trigger with arguments of its choosing: refused at CREATE TRIGGER.
    db.execute(f"GRANT CREATE ON SCHEMA app TO {APP_USER}")
    db.execute(f"GRANT USAGE ON SCHEMA notify TO {APP_USER}")
    app_user.execute("CREATE TABLE app.mine (who uuid)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="on_row_change"):
        app_user.execute(
            "CREATE TRIGGER spoof AFTER INSERT ON app.mine FOR EACH ROW "
            "EXECUTE FUNCTION notify.on_row_change('security', 'ticket_assigned', 'who', 'priority=critical')"
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function on_row_change"):
        app_user.execute("SELECT notify.on_row_change()")
    # Outside a trigger, notify_definer may send only to the calling user (send_test's policy).
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        db.execute("SET ROLE notify_definer")
        db.execute("INSERT INTO notify.notifications (user_id, type, title) VALUES (%s, 'task', 'direct')", (BOB,))
    db.execute("RESET ROLE")
    assert [n["user_id"] for n in sent(db)] == [ADA]


def test_every_policy_of_notify_send_applies(db: psycopg.Connection[Any], app_user: psycopg.Connection[Any]) -> None:
    db.execute(
        "INSERT INTO notify.notification_preferences (user_id, notification_type, push_enabled) "
        "VALUES (%s, 'task', false)",
        (ADA,),
    )
    attach(db, "priority=normal", "group_key=project")
    first = new_ticket(app_user, ADA, project="website")
    new_ticket(app_user, ADA, task_title="Fix the footer")
    grouped, ungrouped = sent(db)
    assert [(n["priority"], n["group_key"]) for n in (grouped, ungrouped)] == [("normal", "website"), ("normal", None)]
    assert deliveries(db, grouped["id"])["push"] == ("skipped", "push is turned off for task notifications")
    explained = db.execute("SELECT notify.explain(%s)", (grouped["id"],)).fetchone()
    assert explained is not None
    assert {d["channel"]: d["reason"] for d in explained[0]["decisions"]}["push"] == (
        "push is turned off for task notifications"
    )

    attach(db, "priority=low")
    assign(app_user, first, BOB)
    low = sent(db)[-1]
    assert (low["user_id"], low["priority"], low["group_key"]) == (BOB, "low", None)
    assert set(deliveries(db, low["id"])) == {"in_app", "email"}, "low priority: no push, e-mail by digest"


def test_idempotent_sends_a_row_to_the_same_user_once(
    db: psycopg.Connection[Any], app_user: psycopg.Connection[Any]
) -> None:
    attach(db, "idempotent=true")
    ticket = new_ticket(app_user, ADA)
    assign(app_user, ticket, BOB)
    assign(app_user, ticket, ADA)
    assert [(n["user_id"], n["idempotency_key"]) for n in sent(db)] == [
        (ADA, f'app.tickets {{"id": {ticket}}} assignee_id={ADA}'),
        (BOB, f'app.tickets {{"id": {ticket}}} assignee_id={BOB}'),
    ]
    attach(db, "idempotent=false")
    assign(app_user, ticket, BOB)
    assert [n["user_id"] for n in sent(db)][-1] == BOB, "without it, handing the ticket back sends again"
    assert len(sent(db)) == 3


BAD = "trigger ticket_assigned on app.tickets: "


@pytest.mark.parametrize(
    ("options", "args", "when", "message"),
    [
        (
            (),
            ASSIGNED,
            "BEFORE INSERT",
            "notify.on_row_change runs AFTER INSERT OR UPDATE ... FOR EACH ROW, not BEFORE",
        ),
        ((), "'task', 'ticket_assigned'", "AFTER INSERT", "notify.on_row_change takes \\(type, template, user column"),
        ((), "'task', '', 'assignee_id'", "AFTER INSERT", ".* got 3 arguments"),
        ((), "'task', 'ticket_assigned', 'owner_id'", "AFTER INSERT", 'table app.tickets has no column "owner_id"\n'),
        (("priority",), ASSIGNED, "AFTER INSERT", 'option "priority" must be name=value'),
        (("priority=urgent",), ASSIGNED, "AFTER INSERT", 'bad or repeated option "priority=urgent"'),
        (("priority=low", "priority=high"), ASSIGNED, "AFTER INSERT", 'bad or repeated option "priority=high"'),
        (("colour=red",), ASSIGNED, "AFTER INSERT", 'bad or repeated option "colour=red"'),
        (("group_key=team",), ASSIGNED, "AFTER INSERT", 'table app.tickets has no column "team" \\(group_key\\)'),
        (("a=1", "b=2", "c=3", "d=4"), ASSIGNED, "AFTER INSERT", ".* got 7 arguments"),
    ],
)
def test_a_misdeclared_trigger_fails_the_write_naming_table_and_column(
    db: psycopg.Connection[Any],
    app_user: psycopg.Connection[Any],
    options: tuple[str, ...],
    args: str,
    when: str,
    message: str,
) -> None:
    attach(db, *options, args=args, when=when)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=BAD + message):
        new_ticket(app_user, ADA)
    assert sent(db) == []


def test_a_value_that_is_no_uuid_fails_the_write_naming_table_and_column(
    db: psycopg.Connection[Any], app_user: psycopg.Connection[Any]
) -> None:
    attach(db, args="'task', 'ticket_assigned', 'reference'", when="AFTER INSERT OR UPDATE OF reference")
    with pytest.raises(psycopg.errors.InvalidTextRepresentation) as error:
        new_ticket(app_user, reference="JIRA-12")
    assert error.value.sqlstate is not None and error.value.sqlstate.startswith("22")
    assert BAD + 'column "reference" holds "JIRA-12", which is not a user uuid' in str(error.value)
    new_ticket(app_user, reference=str(BOB).upper())
    assert [n["user_id"] for n in sent(db)] == [BOB], "a uuid in a text column is fine"


def test_an_unknown_type_or_template_is_notify_sends_error(
    db: psycopg.Connection[Any], app_user: psycopg.Connection[Any]
) -> None:
    attach(db, args="'tasks', 'ticket_assigned', 'assignee_id'")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match='unknown notification type "tasks"'):
        new_ticket(app_user, ADA)
    attach(db, args="'task', 'no_such_template', 'assignee_id'")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match='template "no_such_template" does not exist'):
        new_ticket(app_user, ADA)
    assert sent(db) == []
