"""Escalation chains over REST for admins: every type's chain, and setting one type's.

A chain is global, like the templates: a DBA (an admin token without org_id) sets it, an org admin reads it
and the database refuses their write (403). The database checks each chain (notify.set_escalation): an
unknown channel or condition, a malformed or decreasing `after` is a 422 with its message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from notifyd.core.models import MAX_STEPS
from notifyd.core.models import EscalationStepIn as Step
from notifyd.http.openapi import Endpoint
from notifyd.http.shared import caller_value, org_admin, reply, type_name

PREFIX = "/api/v1/admin/escalations"


class StoredStep(BaseModel):
    channel: str
    after: str
    unless: str | None = None


class ChainChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: Annotated[list[Step], Field(max_length=MAX_STEPS, description="the steps in order; [] removes the chain")]


class ChainSet(BaseModel):
    type: str
    steps: list[StoredStep] = Field(description="the chain as stored (normalized); [] when removed")


class Chain(ChainSet):
    updated_at: datetime
    updated_by: str | None = Field(description="the sub of the admin who set it (null: set from SQL)")


class ChainList(BaseModel):
    escalations: list[Chain]


async def list_escalations(request: Request) -> Response:
    caller = await org_admin(request)
    return reply(ChainList(escalations=await caller_value(request, caller, "escalations")))


async def put_escalation(request: Request) -> Response:
    caller = await org_admin(request)
    notification_type = type_name(request)
    body = ChainChange.model_validate_json(await request.body())
    steps = [step.model_dump(exclude_none=True) for step in body.steps]
    # The pool's jsonb codec encodes the list.
    stored = await caller_value(request, caller, "set_escalation", notification_type, steps)
    return reply(ChainSet(type=notification_type, steps=stored))


# Admin routes are bearer-token routes ("user" audience in the document); the handlers check the role.
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", PREFIX, list_escalations, "every type's escalation chain (admins)", "user", ok_model=ChainList),
    Endpoint("PUT", f"{PREFIX}/{{notification_type}}", put_escalation,
             "set a type's escalation chain, [] removes it (DBAs; 422 for an unknown channel or condition, a "
             "malformed or decreasing after)", "user", ok_model=ChainSet, request_model=ChainChange,
             path_params=("notification_type",)),
]  # fmt: skip
