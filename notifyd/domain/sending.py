"""The arguments that sending takes, in one place for the REST routes and `notifyd send` on the host."""

from __future__ import annotations

from typing import Any

from notifyd.core.models import BroadcastCreate, BulkCreate, Channel, NotificationCreate, TopicSend


def send_args(
    body: NotificationCreate | BulkCreate | TopicSend | BroadcastCreate, channels: list[Channel] | None, key: str | None
) -> list[Any]:
    """The arguments $2.. of send_notification, send_bulk, send_topic and broadcast, in their order."""
    return [
        body.type, body.title, body.body, body.priority, body.data, channels, body.template_id,
        body.template_vars, key, body.expires_at, body.send_at, body.group_key,
    ]  # fmt: skip


def send_one_args(body: NotificationCreate, channels: list[Channel] | None, key: str | None) -> list[Any]:
    """The arguments $2.. of send_notification: send_args, then the send's own escalation chain (None: its type's)."""
    escalation = None if body.escalation is None else [step.model_dump(exclude_none=True) for step in body.escalation]
    return [*send_args(body, channels, key), escalation]
