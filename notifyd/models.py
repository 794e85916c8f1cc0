"""Request and response bodies of the REST notification center (pydantic v2; the OpenAPI schemas come from here)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Priority = Literal["critical", "high", "normal", "low"]
Channel = Literal["in_app", "push", "email"]
Sort = Literal["newest", "oldest", "priority"]
ShortText = Annotated[str, Field(min_length=1, max_length=255)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _SendFields(_Request):
    """What one notification says; shared by the single, internal and bulk sends."""

    type: Annotated[str, Field(min_length=1, max_length=50, examples=["task"])]
    priority: Priority = "normal"
    title: Annotated[str, Field(max_length=255)] | None = None
    body: Annotated[str, Field(max_length=10_000)] | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    template_id: Annotated[str, Field(min_length=1, max_length=100, description="the template's name")] | None = None
    template_vars: dict[str, Any] = Field(default_factory=dict)
    channels: Annotated[list[Channel], Field(min_length=1)] | None = Field(
        default=None, description="omitted: priority and the user's preferences decide"
    )
    send_at: AwareDatetime | None = Field(default=None, description="deliver later; cancellable until then")
    expires_at: AwareDatetime | None = None
    group_key: ShortText | None = None
    idempotency_key: ShortText | None = Field(
        default=None, description="or the Idempotency-Key header; a replay answers 200 with the first id"
    )


class NotificationCreate(_SendFields):
    user_id: uuid.UUID


class BulkCreate(_SendFields):
    user_ids: Annotated[list[uuid.UUID], Field(min_length=1, description="at most batch.max_recipients (10,000)")]
    send_email: bool | None = Field(
        default=None, description="seed 001 §5.1: true adds e-mail to the channels, false leaves it out"
    )


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    priority: Priority | None = None
    is_read: bool | None = None
    sort: Sort = "newest"
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(min_length=1, max_length=500)] | None = None


class CreatedNotification(BaseModel):
    id: uuid.UUID
    status: Literal["queued"]
    channels: list[Channel]
    created_at: datetime


class InternalSent(BaseModel):
    notification_id: uuid.UUID
    status: Literal["queued"]


class BulkAccepted(BaseModel):
    batch_id: uuid.UUID
    recipient_count: int
    status: Literal["processing"]


class BatchCounts(BaseModel):
    total: int = Field(description="recipients named (distinct)")
    created: int = Field(description="notifications that exist now")
    read: int
    unread: int
    deleted: int
    actions_taken: int
    deliveries: dict[str, int] = Field(description="delivery rows per status")


class BatchStatus(BaseModel):
    batch_id: uuid.UUID
    type: str
    status: Literal["processing", "completed"] = Field(description="processing while a delivery is pending or held")
    created_by: str | None
    created_at: datetime
    counts: BatchCounts


class Notification(BaseModel):
    id: uuid.UUID
    seq: int
    type: str
    priority: Priority
    title: str
    body: str
    data: dict[str, Any]
    read_at: datetime | None
    created_at: datetime
    group_key: str | None
    group_count: int
    action_taken: str | None
    action_taken_at: datetime | None
    expires_at: datetime | None
    delivery_status: dict[str, str] = Field(description="per channel: pending, sent, delivered, failed, ...")


class NotificationPage(BaseModel):
    items: list[Notification]
    unread_count: int
    next_cursor: str | None
    has_more: bool


class UnreadCount(BaseModel):
    count: int
    by_type: dict[str, int]


class ReadResult(BaseModel):
    id: uuid.UUID
    read_at: datetime


class ReadAllResult(BaseModel):
    updated_count: int


class ActionResult(BaseModel):
    id: uuid.UUID = Field(description="the notification")
    action: str
    action_taken_at: datetime
    action_id: uuid.UUID = Field(description="the row of notify.notification_actions")
    result: Literal["recorded"]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
