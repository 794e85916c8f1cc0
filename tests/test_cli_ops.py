"""The operators' commands `notifyd send`, `explain` and `status`, run as real processes on a migrated database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import psycopg
import pytest

from tests.conftest import database_url


def notifyd(db: psycopg.Connection[Any], *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url or database_url(db, login=True)}
    return subprocess.run([sys.executable, "-m", "notifyd", *args], env=env, capture_output=True, text=True, timeout=60)


def count(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM notify.notifications").fetchone()
    assert row is not None
    return int(row[0])


def test_send_then_explain_then_status(db: psycopg.Connection[Any]) -> None:
    user = uuid.uuid4()
    db.execute("SELECT notify.upsert_recipient(%s, 'ops-test@example.com', NULL, NULL, NULL)", (user,))
    sent = notifyd(db, "send", "--to", str(user), "--type", "system", "--title", "Maintenance tonight",
                   "--body", "22:00 UTC", "--priority", "high", "--data", '{"window": "2h"}',
                   "--channels", "in_app,email", "--idempotency-key", "maint-1")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    answer = json.loads(sent.stdout)
    assert answer["id"] == answer["notification_id"] and answer["created"] is True
    row = db.execute(
        "SELECT user_id, title, body, priority, data FROM notify.notifications WHERE id = %s",
        (answer["id"],),
    ).fetchone()
    assert row == (user, "Maintenance tonight", "22:00 UTC", "high", {"window": "2h"})

    again = notifyd(db, "send", "--to", str(user), "--type", "system", "--title", "Maintenance tonight",
                    "--body", "22:00 UTC", "--priority", "high", "--data", '{"window": "2h"}',
                    "--channels", "email,in_app", "--idempotency-key", "maint-1")  # fmt: skip
    assert again.returncode == 0 and json.loads(again.stdout)["id"] == answer["id"]
    assert json.loads(again.stdout)["created"] is False and count(db) == 1
    # The key with another request (here: no body, data or channels) is refused, and nothing is sent.
    other = notifyd(db, "send", "--to", str(user), "--type", "system", "--title", "Maintenance tonight",
                    "--idempotency-key", "maint-1")  # fmt: skip
    assert other.returncode != 0 and other.stdout == ""
    assert "the database refused: idempotency key reused with a different request" in other.stderr
    assert "(SQLSTATE 23505)" in other.stderr and count(db) == 1

    explained = notifyd(db, "explain", answer["id"])
    assert explained.returncode == 0, explained.stderr
    why = json.loads(explained.stdout)
    assert why["notification_id"] == answer["id"] and why["priority"] == "high"
    assert {d["channel"] for d in why["decisions"]} == {"in_app", "email"}
    assert explained.stdout.startswith("{\n  "), "pretty-printed"

    status = notifyd(db, "status")
    assert status.returncode == 0, status.stderr
    figures = json.loads(status.stdout)
    assert set(figures) == {
        "queues",
        "dead_letters",
        "pending_deliveries",
        "oldest_pending_delivery",
        "held_deliveries",
        "oldest_held_delivery",
    }
    assert figures["dead_letters"] == 0
    # A high-priority e-mail waits its delay (held); a critical one is due at once (pending, no worker runs).
    assert figures["held_deliveries"] == 1 and figures["oldest_held_delivery"] is not None
    assert figures["pending_deliveries"] == 0 and figures["oldest_pending_delivery"] is None
    critical = notifyd(db, "send", "--to", str(user), "--type", "system", "--title", "Down", "--priority", "critical",
                       "--channels", "email")  # fmt: skip
    assert critical.returncode == 0, critical.stderr
    figures = json.loads(notifyd(db, "status").stdout)
    assert figures["pending_deliveries"] == 1 and figures["oldest_pending_delivery"] is not None
    assert any(q["status"] == "todo" and q["jobs"] >= 1 for q in figures["queues"]), figures


def test_status_counts_a_dead_letter(db: psycopg.Connection[Any]) -> None:
    user = uuid.uuid4()
    db.execute("SELECT notify.upsert_recipient(%s, 'ops-test@example.com', NULL, NULL, NULL)", (user,))
    sent = notifyd(db, "send", "--to", str(user), "--type", "system", "--title", "t", "--channels", "email")
    nid = json.loads(sent.stdout)["id"]
    db.execute("UPDATE notify.notification_deliveries SET status = 'failed', failed_at = now() "
               "WHERE notification_id = %s", (nid,))  # fmt: skip
    assert json.loads(notifyd(db, "status").stdout)["dead_letters"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "not-a-uuid"], "--to: Input should be a valid UUID"),
        (["--to", "12345"], "--to: Input should be a valid UUID"),
        (["--data", "{not json"], "--data is not valid JSON"),
        (["--data", "[1, 2]"], "--data must be a JSON object, got list"),
        (["--data", '"text"'], "--data must be a JSON object, got str"),
        (["--priority", "urgent"], "--priority: Input should be 'critical', 'high', 'normal' or 'low'"),
        (["--channels", "in_app,pigeon"], "--channels: Input should be 'in_app', 'push', 'email', 'webhook' or 'chat'"),
        (["--type", ""], "--type: String should have at least 1 character"),
        (["--type", "no_such_type"], 'unknown notification type "no_such_type"'),
    ],
)
def test_send_refuses_bad_input_clearly_and_writes_nothing(
    db: psycopg.Connection[Any], args: list[str], message: str
) -> None:
    base = {"--to": str(uuid.uuid4()), "--type": "system", "--title": "t"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    argv = [item for pair in {**base, **given}.items() for item in pair]
    result = notifyd(db, "send", *argv)
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("notifyd send: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert count(db) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "nope"], "not a notification id (a uuid): 'nope'"),
        (["explain", "00000000-0000-0000-0000-000000000000"], "no notification 00000000-0000-0000-0000-000000000000"),
    ],
)
def test_explain_refuses_what_it_cannot_find(db: psycopg.Connection[Any], args: list[str], message: str) -> None:
    result = notifyd(db, *args)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_a_missing_option_or_database_is_a_clear_failure(db: psycopg.Connection[Any]) -> None:
    missing = notifyd(db, "send", "--type", "system", "--title", "t")
    assert missing.returncode == 2 and "the following arguments are required: --to" in missing.stderr
    nowhere = notifyd(db, "status", url="postgresql://nobody@127.0.0.1:1/none")
    assert nowhere.returncode == 1 and nowhere.stderr.startswith("notifyd status: cannot reach the database")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    unset = subprocess.run([sys.executable, "-m", "notifyd", "status"], env=env, capture_output=True, text=True)
    assert unset.returncode == 1 and "DATABASE_URL is not set" in unset.stderr
