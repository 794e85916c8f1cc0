"""What the delivery planner and the worker made of one channel of a notification (notify.delivery_decisions)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.server import wait_for


def channel_decision(db: psycopg.Connection[Any], notification_id: uuid.UUID, channel: str) -> dict[str, Any]:
    """The channel's row of notify.delivery_decisions, by column name: a delivery's, or a skip recorded instead."""
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM notify.delivery_decisions WHERE notification_id = %s AND channel = %s",
            (notification_id, channel),
        ).fetchone()
    assert row is not None, f"the planner decided nothing for {channel}"
    return row


def channel_settled(
    db: psycopg.Connection[Any], notification_id: uuid.UUID, channel: str, status: str
) -> dict[str, Any]:
    """The channel's decision once it reached `status` (the worker runs in another process)."""
    decision = wait_for(
        lambda: (d := channel_decision(db, notification_id, channel))["status"] == status and d,
        what=f"the {channel} delivery of {notification_id} to be {status}",
    )
    assert isinstance(decision, dict)
    return decision
