"""Preferences over REST (per type, and global quiet hours and digests) and the org
admin's policy routes (an org's defaults and locked channels, and its delivery statistics).

Thin over the SQL of sql/functions/070_preferences.sql, run as the caller: the database checks every
key and value (422 with its message) and keeps an org admin to their org. A channel the org locked
is refused with 422, like any other value the rules do not allow (the message names the lock);
GET lists the locked channels of each type under "locked" so that a UI greys them out.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, field_validator
from starlette import status
from starlette.requests import Request
from starlette.responses import Response

from notifyd.core.auth import Caller
from notifyd.core.models import PREFIX, Omittable, Timestamp, without_null
from notifyd.db.pool import as_caller
from notifyd.db.queries import query
from notifyd.http.errors import ApiError
from notifyd.http.openapi import Endpoint
from notifyd.http.shared import end_user, org_admin, path_uuid, reply, type_name

ADMIN_PREFIX = "/api/v1/admin/orgs"

ORG_NOT_FOUND = "organization not found"

Frequency = Literal["instant", "daily", "weekly", "never"]
LockableChannel = Literal["push", "email", "sms", "webhook", "chat"]
TimeOfDay = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$", examples=["22:00:00"])]
Weekday = Annotated[int, Field(ge=1, le=7, description="ISO weekday: 1 = Monday, 7 = Sunday")]


# --- bodies ---------------------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuietWindow(_Request):
    """A further quiet-hours window, e.g. weekends apart from weekdays (read like quiet_hours_*)."""

    start: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["23:00"])]
    end: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["10:00"])]
    days: list[Weekday] = Field(examples=[[6, 7]])


# Omittable keys may be left out (the value in force stays) and are never null: the database refuses null for
# them (notify_private.preference_changes), so the schema says so too. `X | None` keys take null ("inherit").
class _QuietHours(_Request):
    quiet_hours_start: TimeOfDay | None = Field(default=None, description="local time; null: no quiet hours")
    quiet_hours_end: TimeOfDay | None = Field(default=None, description="not after start: on the next day")
    quiet_hours_days: Omittable[list[Weekday]] = Field(default=None, description="weekdays a window starts on")
    quiet_hours_windows: Omittable[Annotated[list[QuietWindow], Field(max_length=14)]] = None


def _zone_not_null(value: object) -> object:
    if value is None:  # the database's words (notify.set_global_preferences)
        raise ValueError('timezone must be an IANA time zone name such as "Europe/Berlin", got null')
    return value


# Left out: the zone in force stays; never null.
Zone = Annotated[
    Annotated[str, Field(min_length=1, max_length=64, examples=["Europe/Berlin"])] | None,
    BeforeValidator(_zone_not_null),
    Field(json_schema_extra=without_null),
]


def _exactly_true(value: object) -> object:
    if value is not True:
        # The database's words (notify_private.preference_changes).
        raise ValueError(
            "in_app_enabled cannot be false: in-app notifications are always on (turn push or e-mail off instead)"
        )
    return value


class PreferenceChanges(_QuietHours):
    """The keys to change for one type; omitted keys keep the value in force."""

    push_enabled: Omittable[StrictBool] = None
    email_enabled: Omittable[StrictBool] = None
    in_app_enabled: Omittable[Annotated[Literal[True], BeforeValidator(_exactly_true)]] = Field(
        default=None, description="in-app is always on: only true"
    )
    sms_enabled: Omittable[StrictBool] = Field(default=None, description="SMS a sender asks for (never by default)")
    webhook_enabled: Omittable[StrictBool] = Field(
        default=None, description="to the webhook endpoints of the caller and of their org"
    )
    chat_enabled: Omittable[StrictBool] = Field(
        default=None, description="to the chat connections of the caller and of their org"
    )
    digest_frequency: Frequency | None = Field(default=None, description="null: the global default")
    digest_time: TimeOfDay | None = None
    digest_day: Weekday | None = Field(default=None, description="the weekly digest's weekday")


class GlobalChanges(_QuietHours):
    """The global switches to change; omitted keys keep their value."""

    all_push_enabled: Omittable[StrictBool] = None
    all_email_enabled: Omittable[StrictBool] = None
    all_sms_enabled: Omittable[StrictBool] = None
    all_webhook_enabled: Omittable[StrictBool] = None
    all_chat_enabled: Omittable[StrictBool] = None
    default_digest_frequency: Frequency | None = None
    default_digest_time: TimeOfDay | None = None
    default_digest_day: Weekday | None = None
    timezone: Zone = Field(default=None, description="IANA time zone of the user: digests and quiet hours are in it")


class OrgChanges(_Request):
    """An org's defaults for its users, and locks that beat the users' choices; omitted keys keep their value."""

    push_enabled: StrictBool | None = Field(default=None, description="null: no org default")
    email_enabled: StrictBool | None = Field(default=None, description="null: no org default")
    sms_enabled: StrictBool | None = Field(default=None, description="null: no org default")
    webhook_enabled: StrictBool | None = Field(default=None, description="null: no org default")
    chat_enabled: StrictBool | None = Field(default=None, description="null: no org default")
    digest_frequency: Frequency | None = Field(default=None, description="null: no org default")
    push_locked: Omittable[StrictBool] = Field(default=None, description="true: push_enabled is every user's setting")
    email_locked: Omittable[StrictBool] = Field(default=None, description="true: email_enabled is every user's setting")
    sms_locked: Omittable[StrictBool] = Field(default=None, description="true: sms_enabled is every user's setting")
    webhook_locked: Omittable[StrictBool] = Field(
        default=None, description="true: webhook_enabled is every user's setting"
    )
    chat_locked: Omittable[StrictBool] = Field(default=None, description="true: chat_enabled is every user's setting")


class OrgDefaultChanges(OrgChanges):
    """An org's defaults for every type, and what only the org as a whole decides."""

    user_webhook_endpoints: StrictBool | None = Field(
        default=None, description="whether the org's users may register webhook endpoints; null: the server's setting"
    )


def _or_empty(schema: dict[str, Any]) -> None:
    """The document says what the validator does: an empty value (a form's blank field) means no bound."""
    schema["anyOf"] = [*schema.get("anyOf", []), {"type": "string", "maxLength": 0}]


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    since: Timestamp | None = Field(
        default=None, description="from (inclusive); omitted or empty: from the start", json_schema_extra=_or_empty
    )
    until: Timestamp | None = Field(
        default=None, description="to (exclusive); omitted or empty: no end", json_schema_extra=_or_empty
    )

    @field_validator("since", "until", mode="before")
    @classmethod
    def _empty_is_unbounded(cls, value: object) -> object:
        return None if value == "" else value


def changes(body: BaseModel) -> dict[str, Any]:
    """The keys the caller sent (an explicit null included), as JSON values."""
    return body.model_dump(mode="json", exclude_unset=True)


# --- answers --------------------------------------------------------------------------------------------


class _QuietHoursInForce(BaseModel):
    quiet_hours_start: str | None
    quiet_hours_end: str | None
    quiet_hours_days: list[int]
    quiet_hours_windows: list[dict[str, Any]]
    locked: list[LockableChannel] = Field(description="channels the org admin locked: the user cannot change them")
    customized: bool = Field(description="whether the user set this themselves (else it is inherited)")
    updated_at: datetime | None


class PreferenceItem(_QuietHoursInForce):
    notification_type: str
    push_enabled: bool
    email_enabled: bool
    in_app_enabled: bool
    sms_enabled: bool
    webhook_enabled: bool
    chat_enabled: bool
    digest_frequency: Frequency
    digest_time: str
    digest_day: int


class GlobalPreferences(_QuietHoursInForce):
    all_push_enabled: bool
    all_email_enabled: bool
    all_sms_enabled: bool
    all_webhook_enabled: bool
    all_chat_enabled: bool
    default_digest_frequency: Frequency
    default_digest_time: str
    default_digest_day: int
    timezone: str = Field(description="IANA time zone of the user (UTC until they set one)")


class TopicMute(BaseModel):
    topic: str
    muted: bool = Field(description="a muted topic's sends skip the caller; PUT /api/v1/topics/{topic} changes it")


class Preferences(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)

    items: list[PreferenceItem]
    global_: GlobalPreferences = Field(alias="global")
    topics: list[TopicMute] = Field(description="the caller's topic subscriptions, by topic, with their mute")


class _OrgSwitches(BaseModel):
    push_enabled: bool | None
    email_enabled: bool | None
    sms_enabled: bool | None
    webhook_enabled: bool | None
    chat_enabled: bool | None
    digest_frequency: Frequency | None
    push_locked: bool
    email_locked: bool
    sms_locked: bool
    webhook_locked: bool
    chat_locked: bool
    updated_at: datetime | None


class OrgDefaults(_OrgSwitches):
    user_webhook_endpoints: bool | None = Field(
        description="whether the org's users may register webhook endpoints; null: the server's setting decides"
    )


class OrgTypeDefaults(_OrgSwitches):
    notification_type: str


class OrgPreferences(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)

    org_id: uuid.UUID
    global_: OrgDefaults = Field(alias="global")
    items: list[OrgTypeDefaults]


class OrgStats(BaseModel):
    org_id: uuid.UUID
    since: datetime | None
    until: datetime | None
    users: int = Field(description="the org's users now")
    notifications: int
    deliveries: dict[str, dict[str, int]] = Field(description="per channel, per status")
    events: dict[str, dict[str, int]] = Field(description="provider events (delivered, opened, ...) per channel")


# --- handlers -------------------------------------------------------------------------------------------


async def get_preferences(request: Request) -> Response:
    caller = await end_user(request)
    async with as_caller(request.app.state.pool, caller) as conn:
        found = await conn.fetchval(query("preferences"))
        topics = await conn.fetch(query("my_topics"))
    return reply(Preferences.model_validate({**found, "topics": [dict(t) for t in topics]}))


async def put_preference(request: Request) -> Response:
    caller = await end_user(request)
    notification_type = type_name(request)
    body = PreferenceChanges.model_validate_json(await request.body())
    async with as_caller(request.app.state.pool, caller) as conn:
        item = await conn.fetchval(query("set_preference"), notification_type, changes(body))
    return reply(PreferenceItem.model_validate(item))


async def put_global_preferences(request: Request) -> Response:
    caller = await end_user(request)
    body = GlobalChanges.model_validate_json(await request.body())
    async with as_caller(request.app.state.pool, caller) as conn:
        found = await conn.fetchval(query("set_global_preferences"), changes(body))
    return reply(GlobalPreferences.model_validate(found))


async def in_org(request: Request, caller: Caller, name: str, *args: Any) -> Any:
    """Runs the named query for the path's org as the admin; another org than theirs is not found."""
    try:
        async with as_caller(request.app.state.pool, caller) as conn:
            return await conn.fetchval(query(name), path_uuid(request, "org_id"), *args)
    except asyncpg.NoDataFoundError:
        raise ApiError(status.HTTP_404_NOT_FOUND, ORG_NOT_FOUND) from None


async def get_org_preferences(request: Request) -> Response:
    caller = await org_admin(request)
    return reply(OrgPreferences.model_validate(await in_org(request, caller, "org_preferences")))


async def put_org_defaults(request: Request) -> Response:
    caller = await org_admin(request)
    body = OrgDefaultChanges.model_validate_json(await request.body())
    found = await in_org(request, caller, "set_org_preference", None, changes(body))
    return reply(OrgDefaults.model_validate(found))


async def put_org_preference(request: Request) -> Response:
    caller = await org_admin(request)
    notification_type = type_name(request)
    body = OrgChanges.model_validate_json(await request.body())
    found = await in_org(request, caller, "set_org_preference", notification_type, changes(body))
    return reply(OrgTypeDefaults.model_validate(found))


async def get_org_stats(request: Request) -> Response:
    caller = await org_admin(request)
    params = StatsQuery.model_validate(dict(request.query_params))
    found = await in_org(request, caller, "org_delivery_stats", params.since, params.until)
    return reply(OrgStats.model_validate(found))


# --- the route table ------------------------------------------------------------------------------------

_PREFERENCES = f"{PREFIX}/preferences"
_ORG = f"{ADMIN_PREFIX}/{{org_id:uuid}}"
_NO_ORG = (status.HTTP_404_NOT_FOUND,)

# "global" before {notification_type}: Starlette takes the first route that matches. Admin routes
# are bearer-token routes like the users' ("user" audience in the document); the handlers check the role.
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", _PREFERENCES, get_preferences, "the caller's preferences in force, per type and global", "user",
             ok_model=Preferences),
    Endpoint("PUT", f"{_PREFERENCES}/global", put_global_preferences, "change the caller's global switches", "user",
             ok_model=GlobalPreferences, request_model=GlobalChanges),
    Endpoint("PUT", f"{_PREFERENCES}/{{notification_type}}", put_preference,
             "change the caller's preferences for one type (422 also when the org locked the channel)", "user",
             ok_model=PreferenceItem, request_model=PreferenceChanges, path_params=("notification_type",)),
    Endpoint("GET", f"{_ORG}/preferences", get_org_preferences, "an org's default preferences and locks (admins)",
             "user", ok_model=OrgPreferences, path_params=("org_id",), errors=_NO_ORG),
    Endpoint("PUT", f"{_ORG}/preferences", put_org_defaults, "set an org's defaults and locks for every type (admins)",
             "user", ok_model=OrgDefaults, request_model=OrgDefaultChanges, path_params=("org_id",), errors=_NO_ORG),
    Endpoint("PUT", f"{_ORG}/preferences/{{notification_type}}", put_org_preference,
             "set an org's defaults and locks for one type (admins)", "user", ok_model=OrgTypeDefaults,
             request_model=OrgChanges, path_params=("org_id", "notification_type"), errors=_NO_ORG),
    Endpoint("GET", f"{_ORG}/stats", get_org_stats, "an org's notifications and deliveries by channel and status "
             "(admins)", "user", ok_model=OrgStats, query_model=StatsQuery, path_params=("org_id",), errors=_NO_ORG),
]  # fmt: skip
