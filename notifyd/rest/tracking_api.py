"""Tracking (push receipts, the e-mail open pixel and click redirect) and the analytics report (per type: sent,
delivered, opened, clicked).

The tracking routes have no user credential: a token sealed by notifyd (notifyd.core.crypto.seal_token, one
purpose per kind, naming notification, user and delivery) is the whole authorization, so a forged or
altered token records nothing. The click token also carries the link, and the redirect goes only there:
no open redirect. Each event is recorded once per delivery by notify_private.record_event (as
notify_worker). The report, `notify.analytics`, runs as the calling admin: row-level security keeps an
org admin to their org.
"""

from __future__ import annotations

import base64
from datetime import datetime
from decimal import Decimal
from typing import Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from notifyd.core.models import Timestamp
from notifyd.db.pool import as_worker
from notifyd.db.queries import query
from notifyd.domain.tracking import (
    CLICK_PATH,
    CLICK_PURPOSE,
    MAX_TOKEN,
    OPEN_PATH,
    OPEN_PURPOSE,
    RECEIPT_PURPOSE,
    Tracked,
    read_token,
)
from notifyd.http.errors import ApiError
from notifyd.http.openapi import Endpoint
from notifyd.http.readafter import DOCUMENTED as READ_AFTER
from notifyd.http.readafter import lag_tolerant
from notifyd.http.shared import authenticate, reply

RECEIPTS_PATH = "/api/v1/notifications/receipts"
ANALYTICS_PATH = "/api/v1/notifications/analytics"

BAD_RECEIPT = "the receipt token is not valid"
RECEIPT_GONE = "the notification of this receipt no longer exists"
ACTION_NAMED = 'send "action" (the action button pressed) with event "action", and only then'
BAD_LINK = "this link is not valid: it may have been cut short or changed"
ADMINS_ONLY = "analytics are for admins (a token with role admin; an org admin sees their org)"
BAD_RANGE = "from must be before to"

# The smallest transparent GIF (1×1, 43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# The token in the URL names a delivery: keep it out of caches, referrers and search engines.
_TRACKING_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
# What the service worker reports, as analytics events.
RECEIPT_EVENTS = {"received": "delivered", "clicked": "clicked"}


async def record(request: Request, tracked: Tracked, event: str, source: str) -> bool | None:
    """True when recorded now, False when recorded before, None when the delivery is gone."""
    async with as_worker(request.app.state.pool) as conn:
        recorded: bool | None = await conn.fetchval(
            query("record_tracked_event"),
            tracked.delivery_id,
            tracked.notification_id,
            tracked.user_id,
            event,
            {"source": source},
        )
    return recorded


# --- routes ----------------------------------------------------------------------------------------------


class Receipt(BaseModel):
    token: str = Field(max_length=MAX_TOKEN, description="the `receipt` of the push payload")
    event: Literal["received", "clicked", "action"]
    action: str | None = Field(
        default=None, min_length=1, max_length=100, description='event "action": the action button pressed'
    )

    @model_validator(mode="after")
    def _action_with_its_event(self) -> Receipt:
        if (self.event == "action") != (self.action is not None):
            raise ValueError(ACTION_NAMED)
        return self


class ReceiptRecorded(BaseModel):
    # False: this event of this notification was reported before (a retry); it counts once.
    recorded: bool
    action_taken: bool | None = Field(
        default=None,
        description='event "action" only: whether the action was taken (false: the notification was deleted)',
    )


async def take_push_action(request: Request, tracked: Tracked, action: str) -> ReceiptRecorded | None:
    """Records the click and takes the action as the notification's user, in one transaction; None when gone."""
    async with as_worker(request.app.state.pool) as conn:
        recorded: bool | None = await conn.fetchval(
            query("record_tracked_event"), tracked.delivery_id, tracked.notification_id, tracked.user_id, "clicked",
            {"source": "service_worker", "action": action},
        )  # fmt: skip
        if recorded is None:
            return None
        # An action the notification does not offer raises (422) and rolls the click back with it.
        taken = await conn.fetchval(query("take_push_action"), tracked.user_id, tracked.notification_id, action)
    return ReceiptRecorded(recorded=recorded, action_taken=taken is not None)


async def post_receipt(request: Request) -> Response:
    body = Receipt.model_validate_json(await request.body())
    tracked = read_token(request.app.state.settings, RECEIPT_PURPOSE, body.token)
    if tracked is None:
        raise ApiError(status.HTTP_401_UNAUTHORIZED, BAD_RECEIPT)
    if body.action is not None:
        answer = await take_push_action(request, tracked, body.action)
    else:
        recorded = await record(request, tracked, RECEIPT_EVENTS[body.event], "service_worker")
        answer = None if recorded is None else ReceiptRecorded(recorded=recorded)
    if answer is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, RECEIPT_GONE)
    return JSONResponse(answer.model_dump(mode="json", exclude_none=True), status.HTTP_202_ACCEPTED)


async def open_pixel(request: Request) -> Response:
    # The image for anything that may be a token: a broken image in the e-mail would help nobody; only valid
    # tokens count. A path longer than any token we sign is no e-mail's pixel: 404, as the document says.
    token = request.path_params["token"]
    if len(token) > MAX_TOKEN:
        raise ApiError(status.HTTP_404_NOT_FOUND, BAD_LINK)
    tracked = read_token(request.app.state.settings, OPEN_PURPOSE, token)
    if tracked is not None:
        await record(request, tracked, "opened", "pixel")
    return Response(PIXEL, media_type="image/gif", headers=_TRACKING_HEADERS)


async def click_redirect(request: Request) -> Response:
    tracked = read_token(request.app.state.settings, CLICK_PURPOSE, request.path_params["token"])
    if tracked is None or tracked.url is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, BAD_LINK)
    # The link was signed by us: it still works when its delivery is gone (nothing is recorded then).
    await record(request, tracked, "clicked", "redirect")
    return RedirectResponse(tracked.url, status_code=status.HTTP_302_FOUND, headers=_TRACKING_HEADERS)


class AnalyticsQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: Timestamp = Field(alias="from", description="start of the range (inclusive), with a UTC offset")
    to: Timestamp = Field(description="end of the range (exclusive), with a UTC offset")
    bucket: Literal["hour", "day", "week", "month"] = "day"


class AnalyticsRow(BaseModel):
    bucket_start: datetime = Field(description="the UTC hour/day/week (Monday)/month the deliveries were sent in")
    notification_type: str
    channel: str
    sent: int
    delivered: int = Field(description="deliveries known to have arrived (a receipt, or an open or click)")
    opened: int = Field(description="deliveries opened or clicked")
    clicked: int
    bounced: int
    failed: int
    complained: int
    delivery_rate: Decimal | None = Field(description="delivered / sent")
    open_rate: Decimal | None = Field(description="opened / delivered, or / sent when open_basis is sent")
    open_basis: Literal["delivered", "sent"] | None
    click_rate: Decimal | None = Field(description="clicked / opened")


class Analytics(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)

    from_: datetime = Field(alias="from")
    to: datetime
    bucket: str
    rows: list[AnalyticsRow]


async def get_analytics(request: Request) -> Response:
    caller = await authenticate(request)
    if caller.role != "admin":
        raise ApiError(status.HTTP_403_FORBIDDEN, ADMINS_ONLY)
    params = AnalyticsQuery.model_validate(dict(request.query_params))
    if params.from_ >= params.to:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, BAD_RANGE)
    rows: list[asyncpg.Record] = await lag_tolerant(
        request, caller, lambda conn: conn.fetch(query("analytics"), params.from_, params.to, params.bucket)
    )
    found = [AnalyticsRow.model_validate(dict(row)) for row in rows]
    answer = {"from": params.from_, "to": params.to, "bucket": params.bucket, "rows": found}
    return reply(Analytics.model_validate(answer))


_TOKEN = ("token",)

ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", RECEIPTS_PATH, post_receipt,
             "the service worker reports a push received or clicked, or an action button pressed (a click that "
             "takes the action as the notification's user); the receipt token of the payload is the only "
             "credential; each event counts once", "public", ok_status=status.HTTP_202_ACCEPTED,
             ok_model=ReceiptRecorded, request_model=Receipt,
             errors=(status.HTTP_401_UNAUTHORIZED, status.HTTP_404_NOT_FOUND)),
    Endpoint("GET", OPEN_PATH, open_pixel,
             "the open pixel of an e-mail: a 1×1 GIF for any token (records the open of a valid one, once)",
             "public", ok_media_type="image/gif", path_params=_TOKEN, errors=(status.HTTP_404_NOT_FOUND,)),
    Endpoint("GET", CLICK_PATH, click_redirect,
             "the action link of an e-mail: records the click once and redirects (302) to the link that was signed",
             "public", ok_status=status.HTTP_302_FOUND, ok_media_type="text/plain", path_params=_TOKEN,
             errors=(status.HTTP_404_NOT_FOUND,)),
    Endpoint("GET", ANALYTICS_PATH, get_analytics,
             "delivery, open and click rates per type, channel and hour/day/week/month (admins; an org admin sees "
             "their org)", "any", ok_model=Analytics, query_model=AnalyticsQuery, headers=READ_AFTER,
             errors=(status.HTTP_403_FORBIDDEN,)),
]  # fmt: skip
