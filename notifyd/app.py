"""The notifyd ASGI application: REST, WebSocket and health routes over one pool and one LISTEN hub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from notifyd.core.config import Settings
from notifyd.core.metrics import Metrics
from notifyd.core.requestid import RequestIdMiddleware
from notifyd.db import figures
from notifyd.db.pool import create_pool
from notifyd.db.replicas import Databases
from notifyd.domain import vapid
from notifyd.domain.render_pool import RenderPool
from notifyd.http import browser
from notifyd.http.errors import HANDLERS
from notifyd.http.hygiene import BodyLimit, SecurityHeaders
from notifyd.http.openapi import OPERATIONAL_PATHS, Endpoint, build
from notifyd.http.readafter import HEADER as READ_AFTER
from notifyd.http.readafter import WHERE_HEADER as READ_FROM
from notifyd.http.readafter import ReadYourWrites
from notifyd.realtime import sse, websocket
from notifyd.realtime.hub import Hub
from notifyd.rest import (
    console_api,
    delivery_api,
    email_api,
    erasure_api,
    escalation_api,
    health,
    history_api,
    hooks_api,
    notifications,
    preferences_api,
    push_api,
    sms_api,
    templates_api,
    topics_api,
    tracking_api,
)

ENDPOINTS = [
    *notifications.ENDPOINTS,
    *push_api.ENDPOINTS,
    *hooks_api.ENDPOINTS,
    *delivery_api.ENDPOINTS,
    *email_api.ENDPOINTS,
    *preferences_api.ENDPOINTS,
    *templates_api.ENDPOINTS,
    *escalation_api.ENDPOINTS,
    *history_api.ENDPOINTS,
    *tracking_api.ENDPOINTS,
    *erasure_api.ENDPOINTS,
    *topics_api.ENDPOINTS,
    *console_api.ENDPOINTS,
    *sms_api.ENDPOINTS,
    *sse.ENDPOINTS,
]
OPENAPI = build(ENDPOINTS, OPERATIONAL_PATHS)


async def openapi_json(_: Request) -> JSONResponse:
    return JSONResponse(OPENAPI)


def _literal_first(path: str) -> list[int]:
    """Sort key: a literal segment before a parameter where paths differ ({name}/preview before {name}/{language})."""
    return [1 if part.startswith("{") else 0 for part in path.split("/")]


def _route(path: str, endpoints: list[Endpoint]) -> Route:
    """One route per path with all its methods, so that a 405 lists every method of the path in Allow."""
    handlers = {e.method: e.handler for e in endpoints}

    async def dispatch(request: Request) -> Response:
        return await handlers[request.method if request.method in handlers else "GET"](request)

    dispatch.__name__ = "_".join(e.handler.__name__ for e in endpoints)
    return Route(path, dispatch, methods=list(handlers))


def api_routes(endpoints: list[Endpoint]) -> list[BaseRoute]:
    by_path: dict[str, list[Endpoint]] = {}
    for e in endpoints:
        by_path.setdefault(e.path, []).append(e)
    return [_route(path, by_path[path]) for path in sorted(by_path, key=_literal_first)]


API_ROUTES: list[BaseRoute] = [*api_routes(ENDPOINTS), Route("/openapi.json", openapi_json, methods=["GET"])]


def cors(settings: Settings) -> list[Middleware]:
    """CORS for the pages of CORS_ALLOWED_ORIGINS: bearer tokens in headers, never cookies (no credentials).

    With replicas, such pages carry the read-after-write token in its header (their cookie does not travel).
    """
    if not settings.cors_allowed_origins:
        return []
    consistency = [READ_AFTER] if settings.database_replica_urls else []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", *consistency],
            expose_headers=["Retry-After", *consistency, *([READ_FROM] if consistency else [])],
            allow_credentials=False,
        )
    ]


def read_your_writes(settings: Settings) -> list[Middleware]:
    return [Middleware(ReadYourWrites, settings=settings)] if settings.database_replica_urls else []


class App(Starlette):
    """Starlette, with the WebSocket of the notification stream handed straight to its endpoint, before the
    middleware and the router (why, and which of their checks the endpoint does itself: notifyd.realtime.websocket).
    Not a coroutine itself, so that it adds no frame either."""

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        if scope["type"] == "websocket" and scope["path"] == scope.get("root_path", "") + websocket.PATH:
            scope["app"] = self
            return websocket.websocket_endpoint(scope, receive, send)
        return super().__call__(scope, receive, send)


def create_app(settings: Settings, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.pool = await create_pool(settings.database_url, transaction_pooling=settings.transaction_pooling)
        app.state.databases = await Databases.open(app.state.pool, settings.database_replica_urls, app.state.metrics)
        # Browsers can subscribe as soon as serve runs, whether or not a worker has started yet.
        await vapid.seed(app.state.pool, settings)
        app.state.render_pool = RenderPool(settings)
        await app.state.render_pool.start()
        app.state.hub = Hub(settings, app.state.pool, app.state.metrics)
        await app.state.hub.start()
        reporting = asyncio.create_task(figures.report(app.state.pool, app.state.metrics, "serve"))
        try:
            yield
        finally:
            reporting.cancel()
            await asyncio.gather(reporting, return_exceptions=True)
            await app.state.hub.stop()
            await app.state.databases.close()
            await app.state.pool.close()
            await app.state.render_pool.stop()

    app = App(
        routes=[*health.routes, *API_ROUTES, *browser.routes(), *(extra_routes or [])],
        exception_handlers=HANDLERS,
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(SecurityHeaders),
            *cors(settings),
            *read_your_writes(settings),
            Middleware(BodyLimit, limit=settings.max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    return app
