"""A request id that follows one request: REST handler, its SQL (application_name, notifyd.request_id), the jobs
it defers and the worker's lines about them; and the JSON log format that carries it."""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifyd.core.redact import Redactor, redact

HEADER = "X-Request-ID"
_HEADER_KEY = HEADER.lower().encode()
# Short and plain, so that it is safe in a log line, a header and application_name (63 bytes), and short
# enough that the redactor never takes it for a key (those are 40 characters or more).
_SAFE = re.compile(r"[A-Za-z0-9._-]{1,36}")

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


def accepted(raw: str | None) -> str:
    """The caller's id when it is short and of the safe characters; a new one otherwise."""
    return raw if raw is not None and _SAFE.fullmatch(raw) else uuid.uuid4().hex


def scope_request_id(scope: Scope) -> str:
    """The id of an ASGI request or WebSocket handshake: its X-Request-ID when accepted, a new one otherwise."""
    return accepted(next((v.decode("latin-1") for k, v in scope["headers"] if k == _HEADER_KEY), None))


class RequestIdMiddleware:
    """Takes X-Request-ID (or makes one) for each HTTP request and answers it in the same header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = scope_request_id(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


class JsonFormatter(Redactor):
    """One JSON object per line: time, level, logger, message (redacted) and request_id (null outside one)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(message),
            "request_id": REQUEST_ID.get(),
        }
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(Redactor):
    """The plain format, with ` [request_id]` after the logger name inside a request."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = REQUEST_ID.get()
        record.request_tag = f" [{request_id}]" if request_id else ""
        return super().format(record)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"


def configure_logging(log_format: str = "text") -> None:
    """Every line of every logger through one redacting formatter (tokens, addresses, keys; notifyd.core.redact),
    as text or JSON, with the request id of the request or job it belongs to."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
