"""The notifyd ASGI application: REST, WebSocket and health routes over one pool and one LISTEN hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from notifyd import (
    delivery_api,
    email_api,
    health,
    history_api,
    preferences_api,
    push_api,
    realtime,
    rest,
    retention,
    sse,
    templates_api,
    tracking_api,
)
from notifyd.config import Settings
from notifyd.db import create_pool
from notifyd.errors import HANDLERS
from notifyd.metrics import Metrics
from notifyd.openapi import OPERATIONAL_PATHS, build

ENDPOINTS = [
    *rest.ENDPOINTS,
    *push_api.ENDPOINTS,
    *delivery_api.ENDPOINTS,
    *email_api.ENDPOINTS,
    *preferences_api.ENDPOINTS,
    *templates_api.ENDPOINTS,
    *history_api.ENDPOINTS,
    *tracking_api.ENDPOINTS,
    *retention.ENDPOINTS,
    *sse.ENDPOINTS,
]
OPENAPI = build(ENDPOINTS, OPERATIONAL_PATHS)


async def openapi_json(_: Request) -> JSONResponse:
    return JSONResponse(OPENAPI)


API_ROUTES: list[BaseRoute] = [
    *(Route(e.path, e.handler, methods=[e.method]) for e in ENDPOINTS),
    Route("/openapi.json", openapi_json, methods=["GET"]),
]


def create_app(settings: Settings, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.pool = await create_pool(settings.database_url)
        app.state.hub = realtime.Hub(settings, app.state.pool, app.state.metrics)
        await app.state.hub.start()
        try:
            yield
        finally:
            await app.state.hub.stop()
            await app.state.pool.close()

    app = Starlette(
        routes=[*health.routes, *API_ROUTES, *realtime.routes, *(extra_routes or [])],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    return app
