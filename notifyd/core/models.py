"""Request and response bodies of the REST notification center (pydantic v2; the OpenAPI schemas come from here)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

# The names on the wire that the server and the client (notifyd.client) share.
PREFIX = "/api/v1/notifications"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SERVICE_KEY_HEADER = "X-Internal-Service-Key"
SERVICE_NAME_HEADER = "X-Service-Name"

NOT_ISO_8601 = "a date-time is written in ISO 8601 with a UTC offset, such as 2026-01-31T09:00:00Z"
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _iso_8601_only(value: object) -> object:
    """Pydantic reads a number (or a numeric string) as Unix time; the API documents date-time strings only."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError(NOT_ISO_8601)
    return value


# A point in time in a request: an ISO 8601 string with an offset, never a bare number.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only)]

T = TypeVar("T")
NEVER_NULL = "leave it out to keep the value in force"


def _never_null(value: object, info: ValidationInfo) -> object:
    if value is None:
        raise ValueError(f"{info.field_name} cannot be null: {NEVER_NULL}")
    return value


def without_null(schema: dict[str, Any]) -> None:
    """json_schema_extra of a key that may be left out but is never null: drops null from its schema."""
    options = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options
    if schema.get("default", 0) is None:
        del schema["default"]


# A key of a change that may be left out (None in Python: not sent) but is never null in JSON.
Omittable = Annotated[T | None, BeforeValidator(_never_null), Field(json_schema_extra=without_null)]

Priority = Literal["critical", "high", "normal", "low"]
Channel = Literal["in_app", "push", "email", "webhook", "chat", "sms"]
# A notification type's name as notify.notification_types allows it ("type names are lowercase words").
TypeName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,49}$")]
Sort = Literal["newest", "oldest", "priority"]
# Which of the caller's notifications a page lists: the inbox proper (not archived, not snoozed) by default;
# unseen, unread and read within it; the Archive view; the snoozed ones; or all of them.
InboxState = Literal["inbox", "unseen", "unread", "read", "archived", "snoozed", "all"]
# mark_seen names at most this many ids (the inbox's pages are smaller); without ids it marks all.
MAX_SEEN_IDS = 1000
ShortText = Annotated[str, Field(min_length=1, max_length=255)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Each channel at most once in a chain (notify_private.escalation_steps).
MAX_STEPS = len(get_args(Channel))


class EscalationStepIn(BaseModel):
    """One step of an escalation chain as a request gives it (a type's, or one send's own)."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    after: Annotated[str, Field(max_length=100, examples=["15 minutes"])] | None = Field(
        default=None, description='an interval from the send, e.g. "15 minutes"; no earlier than the step before'
    )
    unless: Literal["seen", "read"] | None = Field(
        default=None, description="what cancels the step while it waits (every step after the first: seen)"
    )


class _SendFields(_Request):
    """What one notification says; shared by the single, internal and bulk sends."""

    # The database's rule ("a notification needs a title or a template": a title that is not blank), stated
    # in the document too, so that clients and the fuzzer know which bodies are valid.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["title"], "properties": {"title": {"type": "string", "pattern": "\\S"}}},
                {"required": ["template_id"], "properties": {"template_id": {"type": "string"}}},
            ]
        },
    )

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
    send_at: Timestamp | None = Field(default=None, description="deliver later; cancellable until then")
    expires_at: Timestamp | None = None
    group_key: ShortText | None = None
    idempotency_key: ShortText | None = Field(
        default=None,
        description="or the Idempotency-Key header; a replay of the same request answers 200 with the first id,"
        " another request with the same key 422",
    )


class NotificationCreate(_SendFields):
    user_id: uuid.UUID
    escalation: Annotated[list[EscalationStepIn], Field(max_length=MAX_STEPS)] | None = Field(
        default=None,
        description="this notification's own escalation chain, overriding its type's; [] sends it without one",
    )


class BulkCreate(_SendFields):
    user_ids: Annotated[list[uuid.UUID], Field(min_length=1, description="at most batch.max_recipients (10,000)")]
    send_email: bool | None = Field(default=None, description="true adds e-mail to the channels, false leaves it out")


class TopicSend(_SendFields):
    """A send to every unmuted follower of the path's topic (no recipient list: the subscriptions are it)."""


# A topic's name, as the database checks it (notify.require_topic); the path parameter {topic} says the same.
TOPIC_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
TopicName = Annotated[str, Field(pattern=TOPIC_PATTERN, examples=["releases"])]
# A broadcast's narrowing filters: a language (matching its regional variants) and an IANA time zone.
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", examples=["de"])]
TimeZone = Annotated[str, Field(min_length=1, max_length=60, examples=["Europe/Berlin"])]


class _Audience(_Request):
    """Whom a broadcast reaches: an org's users (null: every org, DBAs only), narrowed by the filters given."""

    org_id: uuid.UUID | None = Field(description="the org; null (DBAs only) broadcasts to every org")
    topic: TopicName | None = Field(default=None, description="only the topic's unmuted followers")
    locale: Language | None = Field(default=None, description="only users of this language (de matches de-AT)")
    timezone: TimeZone | None = Field(default=None, description="only users in this time zone")


class BroadcastCreate(_SendFields, _Audience):
    """An admin's broadcast: what every user of the audience gets."""


class BroadcastPreviewQuery(_Audience):
    """A broadcast's audience and the parts of the notification that decide its channels."""

    type: Annotated[str, Field(min_length=1, max_length=50, examples=["system"])]
    priority: Priority = "normal"
    channels: Annotated[list[Channel], Field(min_length=1)] | None = None


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    priority: Priority | None = None
    is_read: bool | None = None
    state: InboxState = "inbox"
    sort: Sort = "newest"
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(min_length=1, max_length=500)] | None = None


class CreatedNotification(BaseModel):
    id: uuid.UUID
    notification_id: uuid.UUID = Field(description="the same as id: both create routes answer both fields")
    status: Literal["queued"]
    channels: list[Channel]
    created_at: datetime


class InternalSent(BaseModel):
    id: uuid.UUID = Field(description="the same as notification_id: both create routes answer both fields")
    notification_id: uuid.UUID
    status: Literal["queued"]


class BulkAccepted(BaseModel):
    batch_id: uuid.UUID
    recipient_count: int
    status: Literal["processing"]


class AudienceSent(BaseModel):
    batch_id: uuid.UUID | None = Field(description="null when nobody matched: nothing was sent")
    recipient_count: int
    status: Literal["processing", "completed"] = Field(description="completed: nobody matched")


class ChannelSplit(BaseModel):
    in_app: int
    push: int = Field(description="users with push on and an active device (quiet hours only delay it)")
    email: int = Field(description="users e-mailed at once")
    email_digest: int = Field(description="users whose e-mail waits for their digest")


class BroadcastPreview(BaseModel):
    recipients: int
    channels: ChannelSplit
    global_rate_per_minute: int = Field(description="rate_limit.global_per_minute: the pace of its push and e-mail")


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
    seen_at: datetime | None = Field(description="when the user first saw it (the bell, the inbox); null: unseen")
    archived_at: datetime | None = Field(description="when the user archived it; null: in the inbox")
    snoozed_until: datetime | None = Field(description="hidden from the inbox until then; null: not snoozed")
    created_at: datetime
    group_key: str | None
    group_count: int
    action_taken: str | None
    action_taken_at: datetime | None
    expires_at: datetime | None
    delivery_status: dict[str, str] = Field(description="per channel: pending, sent, delivered, failed, ...")


class SensitiveFields(BaseModel):
    id: uuid.UUID
    data: dict[str, Any] = Field(description="the real values of data's sensitive fields (masked everywhere else)")
    template_vars: dict[str, Any] = Field(description="the real values of template_vars' sensitive fields")


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


class SeenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[uuid.UUID] | None = Field(
        default=None, max_length=MAX_SEEN_IDS,
        description="the notifications the user saw; null or left out: everything the inbox shows",
    )  # fmt: skip


class SeenState(BaseModel):
    seen_seq: int = Field(description="every notification of the inbox with a seq up to this one is seen")
    unseen_count: int = Field(description="the badge: notifications of the inbox neither seen nor read")


class SeenResult(SeenState):
    updated_count: int = Field(description="how many of them were unseen")


class ArchiveResult(BaseModel):
    id: uuid.UUID
    archived_at: datetime | None = Field(description="when it was archived; null: back in the inbox")


def _in_utc(at: datetime) -> datetime:
    """A time the database can take: within the years 1 to 9999 once in UTC."""
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise ValueError("a time within the years 1 to 9999 in UTC") from None


class SnoozeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: Annotated[Timestamp, AfterValidator(_in_utc)] = Field(
        description="when it comes back as new; must be in the future"
    )


class SnoozeResult(BaseModel):
    id: uuid.UUID
    snoozed_until: datetime


class ActionResult(BaseModel):
    id: uuid.UUID = Field(description="the notification")
    action: str
    action_taken_at: datetime
    action_id: uuid.UUID = Field(description="the row of notify.notification_actions")
    result: Literal["recorded"]


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = Field(default=None, description="the request field the error concerns, when known")
    hint: str | None = Field(default=None, description="what to do about it, when the database says")


class ErrorBody(BaseModel):
    error: ErrorDetail


# --- why a notification went where it went, and cancelling one (notifyd.rest.delivery_api) -----------


class ProviderCircuit(BaseModel):
    provider: str
    state: Literal["closed", "open", "half_open"]
    failures: int
    opened_at: str | None
    timeouts: int
    server_errors: int


class Decision(BaseModel):
    channel: Channel
    subscription_id: uuid.UUID | None
    status: str
    reason: str | None
    scheduled_for: str | None
    attempts: int
    repeats: int
    error: str | None
    sent_at: str | None
    delivered_at: str | None
    opened_at: str | None
    clicked_at: str | None
    failed_at: str | None
    decided_at: str
    provider: str | None = Field(default=None, description="who took it: resend, smtp, twilio (or may have: a timeout)")


class EscalationStep(BaseModel):
    step: int = Field(description="its place in the chain, from 1")
    channel: Channel
    after: str = Field(description="its delay after the send, as an interval")
    unless: str | None = Field(description="seen or read: what cancels it while it waits")
    planned_for: str = Field(description="the send plus after")
    scheduled_for: str | None = Field(description="later when quiet hours or a rate limit moved it")
    state: str = Field(description="planned, run, cancelled, skipped, failed, ...")
    reason: str | None = Field(description="why: cancelled because seen or read at ..., or why it was skipped")
    run_at: str | None
    cancelled_at: str | None


class Explanation(BaseModel):
    notification_id: uuid.UUID
    user_id: uuid.UUID
    type: str
    priority: str
    rule: str
    channels_asked: list[Channel] | None
    created_at: str
    send_at: str | None
    expires_at: str | None
    read_at: str | None
    deleted_at: str | None
    group_key: str | None
    group_count: int
    decisions: list[Decision]
    folds: list[dict[str, Any]]
    escalation: list[EscalationStep] | None = Field(
        default=None, description="each step of its escalation chain and what became of it; null without a chain"
    )
    providers: list[ProviderCircuit] = Field(description="each provider's circuit breaker now: where new e-mail goes")


class Cancelled(BaseModel):
    id: uuid.UUID
    cancelled: bool
