"""The OpenAPI 3.1 document of notifyd, built from the route table and the pydantic models."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette import status
from starlette.requests import Request
from starlette.responses import Response

from notifyd import __version__
from notifyd.core.models import TOPIC_PATTERN, ErrorBody

Handler = Callable[[Request], Awaitable[Response]]

BEARER = "bearerAuth"
SERVICE_KEY = "serviceKey"
SERVICE_NAME = "serviceName"

_ERROR_TEXT = {
    status.HTTP_400_BAD_REQUEST: "the request cannot be served as asked (e.g. more than 10,000 recipients)",
    status.HTTP_401_UNAUTHORIZED: "missing, invalid or expired credentials",
    status.HTTP_403_FORBIDDEN: "a valid caller without the right",
    status.HTTP_404_NOT_FOUND: "no such resource visible to the caller (never 403: existence is not leaked)",
    status.HTTP_413_CONTENT_TOO_LARGE: "the request body is larger than MAX_BODY_BYTES",
    status.HTTP_422_UNPROCESSABLE_CONTENT: "the body or a parameter failed validation (pydantic or PostgreSQL)",
    status.HTTP_429_TOO_MANY_REQUESTS: (
        "a recipient's or the global queue is full, too many wrong service keys came from this address, or the "
        "user has WS_MAX_CONNECTIONS_PER_USER streams and sockets open: retry after Retry-After seconds"
    ),
    status.HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE: (
        "the request line and headers are larger than MAX_HEADER_BYTES, or have more than MAX_HEADER_COUNT fields"
    ),
    status.HTTP_503_SERVICE_UNAVAILABLE: "a setting this route needs is missing (the message names it)",
}


@dataclass(frozen=True)
class Endpoint:
    """One route: how it is served and how the OpenAPI document describes it."""

    method: str
    path: str
    handler: Handler
    summary: str
    # Who may call it: "user" (a user JWT), "sender" (service or admin JWT, or a service key),
    # "any" (any JWT or a service key; the database decides what each sees), "public".
    audience: str
    ok_status: int = status.HTTP_200_OK
    ok_model: type[BaseModel] | None = None
    ok_media_type: str = "application/json"
    request_model: type[BaseModel] | None = None
    query_model: type[BaseModel] | None = None
    path_params: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    errors: tuple[int, ...] = ()
    extra_responses: dict[int, str] = field(default_factory=dict)
    # False: the body may be left out (the model's defaults apply).
    request_body_required: bool = True
    # How the caller encodes the body: a provider's webhook may post form fields.
    request_media_type: str = "application/json"

    @property
    def openapi_path(self) -> str:
        """The path without Starlette's convertors: {notification_id:uuid} -> {notification_id}."""
        return "/".join(part.split(":")[0] + "}" if ":" in part else part for part in self.path.split("/"))


Refs = dict[tuple[type[BaseModel], str], dict[str, Any]]


def _schemas(endpoints: list[Endpoint]) -> tuple[Refs, dict[str, Any]]:
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = {(ErrorBody, "serialization")}
    for e in endpoints:
        if e.request_model is not None:
            wanted.add((e.request_model, "validation"))
        if e.ok_model is not None:
            wanted.add((e.ok_model, "serialization"))
    keyed, top = models_json_schema(
        sorted(wanted, key=lambda m: (m[0].__name__, m[1])), ref_template="#/components/schemas/{model}"
    )
    refs: Refs = {}
    for (model, mode), schema in keyed.items():
        assert isinstance(model, type) and issubclass(model, BaseModel)
        refs[(model, mode)] = schema
    return refs, top.get("$defs", {})


# Path parameters that are not ids: signed tokens are longer than an action name. The patterns are the
# ones the handlers check (shared.TYPE_NAME, templates_api.Language) or the database checks
# (a topic: notify.require_topic).
_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "token": {"type": "string", "minLength": 1, "maxLength": 2048},  # notifyd.domain.tracking.MAX_TOKEN
    "notification_type": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,49}$", "examples": ["task"]},
    "language": {"type": "string", "pattern": "^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", "maxLength": 35, "examples": ["de"]},
    "topic": {"type": "string", "pattern": TOPIC_PATTERN, "examples": ["releases"]},
    "*": {"type": "string", "minLength": 1, "maxLength": 100},
}


def _parameters(e: Endpoint) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _PATH_SCHEMAS.get(name, _PATH_SCHEMAS["*"])}
        if not name.endswith("_id")
        else {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
        for name in e.path_params
    ]
    if e.query_model is not None:
        schema = e.query_model.model_json_schema()
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    for name, description in e.headers:
        params.append(
            {"name": name, "in": "header", "required": False, "description": description, "schema": {"type": "string"}}
        )
    return params


# Every operation's tag is the one of the longest path prefix here that its path starts with; the tags are
# the chapters of the REST reference, so a route lands in its chapter by where it lives, not by which module
# serves it.
_TAG_PREFIXES: tuple[tuple[str, str], ...] = (
    ("/api/v1/notifications", "notifications"),
    ("/api/v1/internal/notifications", "notifications"),
    ("/api/v1/notifications/push", "push"),
    ("/api/v1/notifications/vapid-public-key", "push"),
    ("/api/v1/notifications/preferences", "preferences"),
    ("/api/v1/admin/orgs", "preferences"),
    ("/api/v1/admin/templates", "templates"),
    ("/api/v1/admin/escalations", "escalation"),
    ("/api/v1/notifications/history", "history"),
    ("/api/v1/notifications/export", "history"),
    ("/api/v1/notifications/analytics", "history"),
    ("/api/v1/admin/users", "history"),
    ("/api/v1/notifications/receipts", "tracking"),
    ("/t/", "tracking"),
    ("/unsubscribe/", "email"),
    ("/api/v1/webhooks/resend", "email"),
    ("/api/v1/recipients", "sms"),
    ("/api/v1/webhooks/twilio", "sms"),
    ("/api/v1/notifications/stream", "realtime"),
    ("/api/v1/topics", "topics"),
    ("/api/v1/admin/broadcasts", "topics"),
    ("/api/v1/admin/notifications", "console"),
    ("/api/v1/admin/dead-letters", "console"),
    ("/api/v1/admin/figures", "console"),
    ("/api/v1/admin/policies", "console"),
    ("/api/v1/admin/settings", "console"),
    ("/api/v1/admin/retention", "console"),
    ("/api/v1/admin/activity", "console"),
)

TAGS: list[dict[str, str]] = [
    {"name": "notifications", "description": "Send notifications, and the notification center of the caller."},
    {"name": "push", "description": "Web Push and FCM devices of the caller, and the VAPID key they subscribe with."},
    {"name": "preferences", "description": "The caller's channels, digests and quiet hours; org defaults and locks."},
    {"name": "templates", "description": "Notification templates (admins): list, read, save a version, preview."},
    {"name": "topics", "description": "The caller's topic subscriptions, sends to a topic, and admins' broadcasts."},
    {"name": "escalation", "description": "Escalation chains of the notification types (DBAs set them, admins read)."},
    {"name": "history", "description": "History and export of the caller, analytics, and erasure of a user."},
    {"name": "tracking", "description": "Receipts from the service worker, e-mail open pixel and click redirect."},
    {
        "name": "console",
        "description": "What the operator console reads and does (admins): activity, dead letters, figures.",
    },
    {"name": "sms", "description": "Recipients' phone numbers (E.164), and Twilio's signed STOP/START replies."},
    {"name": "email", "description": "One-click unsubscribe pages and Resend's delivery webhook."},
    {"name": "realtime", "description": "Server-Sent Events; the WebSocket is described under x-websocket."},
    {"name": "operations", "description": "Liveness, readiness, Prometheus metrics and this document."},
]


# OpenAPI has no words for a WebSocket: its protocol is described here, as the extension x-websocket, and
# the REST reference renders it next to the Server-Sent Events route that carries the same events.
_SEQ_OR_ID = "a seq (an integer 0 … 2^63-1, or those digits as a string) or a notification id"
WEBSOCKET: dict[str, Any] = {
    "path": "/api/v1/notifications/ws",
    "tag": "realtime",
    "description": "The notification center in real time, for end users. Every message is one JSON object "
    "with a `type`; the server sends events in `seq` order and a changed notification again with its new "
    "`seq`. A client that reconnects resumes from the last `seq` it saw and misses nothing. A live notification "
    "frame carries the user's unread count; with `?compact=1` no unread_count event repeats it (one frame per "
    "notification), while a read, a delete and the end of a resume still send one.",
    "authentication": "A user JWT (role authenticated) as `?token=` in the URL (kept out of the logs), or in "
    'a first message `{"type": "authenticate", "token": …}` within 5 s. A later authenticate message with a '
    "fresh token of the same user extends the session. `?after=` resumes at once.",
    "client_messages": {
        "authenticate": {"fields": {"token": "the user's JWT"}, "answer": "authenticated"},
        "ping": {"fields": {}, "answer": "pong"},
        "mark_read": {"fields": {"notification_id": "uuid"}, "answer": "read_status_updated, or error NOT_FOUND"},
        "ack": {
            "fields": {"notification_id": "uuid"},
            "answer": "nothing; the in-app delivery is recorded as delivered, once (error NOT_FOUND if not yours)",
        },
        "resume": {
            "fields": {"after": _SEQ_OR_ID},
            "answer": "every notification changed after it, in seq order, then resumed",
        },
    },
    "server_messages": {
        "authenticated": {"fields": {"user_id": "uuid"}},
        "notification": {
            "fields": {
                "data": "the notification, with its seq",
                "unread_count": "integer, the user's unread count (live frames; a resume's replay has none)",
                "unread_by_type": "object: type → count (with unread_count)",
            }
        },
        "unread_count": {"fields": {"count": "integer", "by_type": "object: type → count"}},
        "read_status_updated": {
            "fields": {"notification_id": "uuid", "read_at": "RFC 3339 time", "unread_count": "integer"}
        },
        "resumed": {"fields": {"count": "how many notifications the resume sent"}},
        "pong": {"fields": {"timestamp": "RFC 3339 time"}},
        "error": {
            "fields": {
                "code": "AUTH_FAILED, INVALID_MESSAGE, NOT_FOUND, RATE_LIMITED or TOO_MANY_CONNECTIONS",
                "message": "what is wrong",
            }
        },
    },
    "close_codes": {
        "4001": "authentication failed, the token expired, or a token of another user",
        "4008": "the user already has WS_MAX_CONNECTIONS_PER_USER sockets and streams open in this process",
        "1008": "flooding: more than 10 messages per second sustained, the errors ignored",
        "1009": "a message over 4 KB",
        "1013": "the server is full (WS_MAX_CONNECTIONS) or the client is too slow (2,048 events queued): "
        "reconnect and resume",
    },
}


def tag_of(path: str) -> str:
    """The chapter of the REST reference that a path belongs to."""
    matches = [(len(prefix), tag) for prefix, tag in _TAG_PREFIXES if path.startswith(prefix)]
    if not matches:
        raise ValueError(f"no tag for {path}: add its prefix to _TAG_PREFIXES")
    return max(matches)[1]


def _operation_id(e: Endpoint, names: Counter[str]) -> str:
    """The handler's name, or tag_name where two handlers share a name (operationIds are unique)."""
    name = e.handler.__name__
    return name if names[name] == 1 else f"{tag_of(e.openapi_path)}_{name}"


def build(endpoints: list[Endpoint], extra_paths: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The OpenAPI document: every endpoint with its parameters, bodies, security and errors."""
    refs, components = _schemas(endpoints)
    error_ref = refs[(ErrorBody, "serialization")]
    # Any request's head may be over the limits (notifyd/http/headlimit.py), on every route.
    head_refused = {
        "description": _ERROR_TEXT[status.HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE],
        "content": {"application/json": {"schema": error_ref}},
    }
    paths: dict[str, dict[str, Any]] = {
        path: {method: {**op, "responses": {**op["responses"], "431": head_refused}} for method, op in ops.items()}
        for path, ops in extra_paths.items()
    }
    names = Counter(e.handler.__name__ for e in endpoints)
    for e in endpoints:
        responses: dict[str, Any] = {}
        if e.ok_model is not None:
            responses[str(e.ok_status)] = {
                "description": e.summary,
                "content": {e.ok_media_type: {"schema": refs[(e.ok_model, "serialization")]}},
            }
        else:
            responses[str(e.ok_status)] = {"description": e.summary}
        for code, description in e.extra_responses.items():
            responses[str(code)] = {"description": description}
            if e.ok_model is not None:
                schema = refs[(e.ok_model, "serialization")]
                responses[str(code)]["content"] = {"application/json": {"schema": schema}}
        errors = {*e.errors, status.HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE}
        if e.audience != "public":
            errors |= {status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN}
        if e.audience in ("sender", "any"):
            errors.add(status.HTTP_429_TOO_MANY_REQUESTS)  # too many wrong service keys from one address
        if e.request_model is not None or e.query_model is not None:
            errors.add(status.HTTP_422_UNPROCESSABLE_CONTENT)
        if e.request_model is not None:
            errors.add(status.HTTP_413_CONTENT_TOO_LARGE)
        if any(name.endswith("_id") for name in e.path_params):
            errors.add(status.HTTP_404_NOT_FOUND)  # an id that is not a uuid matches no route
        for code in sorted(errors):
            responses[str(code)] = {
                "description": _ERROR_TEXT[code],
                "content": {"application/json": {"schema": error_ref}},
            }
        operation: dict[str, Any] = {
            "tags": [tag_of(e.openapi_path)],
            "summary": e.summary,
            "operationId": _operation_id(e, names),
            "parameters": _parameters(e),
            "responses": responses,
        }
        if e.request_model is not None:
            operation["requestBody"] = {
                "required": e.request_body_required,
                "content": {e.request_media_type: {"schema": refs[(e.request_model, "validation")]}},
            }
        if e.audience == "user":
            operation["security"] = [{BEARER: []}]
        elif e.audience in ("sender", "any"):
            operation["security"] = [{BEARER: []}, {SERVICE_KEY: [], SERVICE_NAME: []}]
        else:
            operation["security"] = []
        paths.setdefault(e.openapi_path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "notifyd",
            "version": __version__,
            "description": "User notifications where PostgreSQL does the work. Errors are "
            '{"error": {"code", "message"}}, with "field" and "hint" when they are known.',
        },
        "servers": [{"url": "/", "description": "the notifyd serving this document (PUBLIC_BASE_URL in production)"}],
        "tags": TAGS,
        "x-websocket": WEBSOCKET,
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256 with JWT_SECRET; claims sub, exp, role (authenticated|service|admin), "
                    "optional org_id",
                },
                SERVICE_KEY: {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Internal-Service-Key",
                    "description": "a key from notify.create_service_key(name); sent with X-Service-Name",
                },
                SERVICE_NAME: {"type": "apiKey", "in": "header", "name": "X-Service-Name"},
            },
        },
    }


def _plain(
    operation_id: str,
    summary: str,
    schema: dict[str, Any],
    *,
    media_type: str = "application/json",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": summary, "content": {media_type: {"schema": schema}}}}
    responses.update(extra or {})
    operation = {"tags": ["operations"], "summary": summary, "operationId": operation_id, "security": []}
    return {"get": {**operation, "parameters": [], "responses": responses}}


_READY = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "not ready"]},
        "checks": {
            "type": "object",
            "properties": {"database": {"type": "boolean"}, "listen": {"type": "boolean"}},
        },
    },
}

# The routes of notifyd.rest.health and this document itself.
OPERATIONAL_PATHS: dict[str, dict[str, Any]] = {
    "/healthz": _plain(
        "liveness",
        "liveness: the process answers",
        {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "const": "ok"}}},
    ),
    "/readyz": _plain(
        "readiness",
        "readiness: the database answers and the LISTEN connection is up",
        _READY,
        extra={"503": {"description": "not ready", "content": {"application/json": {"schema": _READY}}}},
    ),
    "/metrics": _plain("metrics", "Prometheus metrics of this process", {"type": "string"}, media_type="text/plain"),
    "/openapi.json": _plain("openapi_document", "this document", {"type": "object"}),
}
