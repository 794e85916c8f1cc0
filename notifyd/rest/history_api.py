"""The caller's notification history (deleted ones too, for audit) and its streamed export, thin over notify.history.

Filters: `from` (inclusive) and `to` (exclusive) on created_at, `type`, `status` (read or unread), and
`delivery_status` optionally narrowed to one `channel` (a channel shows its furthest-along delivery, as in
the notification center). Pages go newest first by an opaque keyset cursor. The export streams the same
rows as CSV or as one JSON array, a keyset batch at a time, so that memory does not grow with the history;
CSV cells that a spreadsheet would read as a formula get a leading apostrophe (OWASP CSV injection).
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import asyncpg
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from notifyd.core.auth import Caller
from notifyd.core.models import PREFIX, Channel, Priority, Timestamp
from notifyd.db.queries import query
from notifyd.http.openapi import Endpoint
from notifyd.http.readafter import DOCUMENTED as READ_AFTER
from notifyd.http.readafter import lag_tolerant, reading
from notifyd.http.shared import decode_cursor, encode_cursor, end_user, reply

CURSOR_KIND = "history"  # a list route's cursor is refused here, and the other way round
EXPORT_BATCH = 500  # rows per read: bounds the export's memory (a row is at most ~27 KB)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHANNELS: tuple[Channel, ...] = get_args(Channel)

DeliveryStatus = Literal[
    "pending", "held", "sent", "delivered", "failed", "bounced", "skipped", "suppressed", "cancelled"
]


class HistoryFilters(BaseModel):
    """What notify.history filters on; the database refuses a range whose from is not before its to."""

    model_config = ConfigDict(extra="forbid")

    from_: Timestamp | None = Field(
        default=None, alias="from", description="created at or after (RFC 3339 with an offset)"
    )
    to: Timestamp | None = Field(default=None, description="created before (exclusive)")
    type: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    status: Literal["read", "unread"] | None = Field(default=None, description="read status")
    delivery_status: DeliveryStatus | None = Field(
        default=None, description="a status the notification shows on some channel (on `channel` if given)"
    )
    channel: Channel | None = Field(default=None, description="alone: notifications with a delivery on it")

    def args(self) -> list[Any]:
        """$1..$6 of the history query."""
        return [self.from_, self.to, self.type, self.status, self.delivery_status, self.channel]


class HistoryQuery(HistoryFilters):
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    cursor: Annotated[str, Field(min_length=1, max_length=500)] | None = None


class ExportQuery(HistoryFilters):
    format: Literal["csv", "json"] = "json"


class HistoryItem(BaseModel):
    id: uuid.UUID
    type: str
    priority: Priority
    title: str
    body: str
    data: dict[str, Any]
    status: Literal["read", "unread"]
    read_at: datetime | None
    created_at: datetime
    expires_at: datetime | None
    group_key: str | None
    group_count: int
    action_taken: str | None
    action_taken_at: datetime | None
    delivery_status: dict[str, str] = Field(description="per channel: pending, sent, delivered, failed, ...")


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    next_cursor: str | None
    has_more: bool


def item(row: asyncpg.Record) -> HistoryItem:
    return HistoryItem.model_validate(dict(row))


async def history(request: Request) -> Response:
    caller = await end_user(request)
    params = HistoryQuery.model_validate(dict(request.query_params))
    after: tuple[datetime | None, uuid.UUID | None] = (None, None)
    if params.cursor is not None:
        after = decode_cursor(params.cursor, CURSOR_KIND)[:2]
    rows = await lag_tolerant(
        request, caller, lambda conn: conn.fetch(query("history"), *params.args(), *after, params.limit + 1)
    )
    page, has_more = rows[: params.limit], len(rows) > params.limit
    answer = HistoryPage(
        items=[item(r) for r in page],
        next_cursor=encode_cursor(CURSOR_KIND, page[-1]) if has_more else None,
        has_more=has_more,
    )
    return reply(answer)


# --- the export -----------------------------------------------------------------------------------------

CSV_HEADER = [
    "id", "type", "priority", "status", "title", "body", "data", "read_at", "created_at", "expires_at",
    "group_key", "group_count", "action_taken", "action_taken_at", *(f"delivery_{c}" for c in CHANNELS),
]  # fmt: skip


def safe_cell(value: str) -> str:
    """A spreadsheet runs a cell starting with = + - @ (or tab/CR before one) as a formula; ' makes it text."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_cells(row: asyncpg.Record) -> list[str]:
    """One CSV line: the history item's JSON values, data as JSON, delivery status as one column per channel."""
    fields = item(row).model_dump(mode="json")
    fields["data"] = json.dumps(fields["data"], ensure_ascii=False, separators=(",", ":"))
    statuses = fields.pop("delivery_status")
    fields.update({f"delivery_{c}": statuses.get(c) for c in CHANNELS})
    return [safe_cell("" if fields[name] is None else str(fields[name])) for name in CSV_HEADER]


def csv_chunk(lines: Sequence[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(lines)
    return out.getvalue()


async def csv_body(batches: AsyncIterator[list[asyncpg.Record]]) -> AsyncIterator[str]:
    yield csv_chunk([CSV_HEADER])
    async for batch in batches:
        yield csv_chunk([csv_cells(r) for r in batch])


async def json_body(batches: AsyncIterator[list[asyncpg.Record]]) -> AsyncIterator[str]:
    """One JSON array, written an element at a time: "[" first, "," before every element but the first."""
    separator = "[\n"
    async for batch in batches:
        parts = []
        for row in batch:
            parts.append(separator + item(row).model_dump_json())
            separator = ",\n"
        yield "".join(parts)
    yield "[]\n" if separator == "[\n" else "\n]\n"


_FORMATS: dict[str, tuple[str, Callable[[AsyncIterator[list[asyncpg.Record]]], AsyncIterator[str]]]] = {
    "csv": ("text/csv; charset=utf-8", csv_body),
    "json": ("application/json", json_body),
}


class ExportResponse(StreamingResponse):
    """Streams the history a batch at a time, each batch one keyset read in a transaction of its own.

    No cursor and no transaction outlives a batch: a slow download holds no pooled connection, and a transaction
    pooler (PgBouncer) may run each batch on another server connection. A notification sent during the download
    is newer than the first batch and not in it; one read or deleted meanwhile shows as its later batch finds it.
    The first batch is fetched before the status line goes out, so a refused filter is still an error answer;
    after that a failure can only cut the stream short.
    """

    def __init__(self, request: Request, caller: Caller, params: ExportQuery) -> None:
        media_type, self.encode = _FORMATS[params.format]
        super().__init__(
            content=iter(()),
            media_type=media_type,
            headers={"Content-Disposition": f'attachment; filename="notification-history.{params.format}"'},
        )
        self.request, self.caller, self.params = request, caller, params

    async def batch(self, after: tuple[datetime | None, uuid.UUID | None]) -> list[asyncpg.Record]:
        """The EXPORT_BATCH rows after `after` (a row's created_at and id; None, None: from the newest)."""
        async with reading(self.request, self.caller) as conn:
            rows: list[asyncpg.Record] = await conn.fetch(query("history"), *self.params.args(), *after, EXPORT_BATCH)
        return rows

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await self.batch((None, None))

        async def batches() -> AsyncIterator[list[asyncpg.Record]]:
            batch = first
            while batch:
                yield batch
                last = batch[-1]
                batch = await self.batch((last["created_at"], last["id"])) if len(batch) == EXPORT_BATCH else []

        self.body_iterator = self.encode(batches())
        await super().__call__(scope, receive, send)


async def export(request: Request) -> Response:
    caller = await end_user(request)
    params = ExportQuery.model_validate(dict(request.query_params))
    return ExportResponse(request, caller, params)


# --- the route table ------------------------------------------------------------------------------------

ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", f"{PREFIX}/history", history, "the caller's notification history, newest first, one page",
             "user", ok_model=HistoryPage, query_model=HistoryQuery, headers=READ_AFTER),
    Endpoint("GET", f"{PREFIX}/export", export,
             "the caller's whole history as a CSV or JSON-array download (streamed, same filters as history)",
             "user", query_model=ExportQuery, headers=READ_AFTER),
]  # fmt: skip
