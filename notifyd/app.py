"""The notifyd ASGI application: REST, WebSocket and health routes over one pool and one LISTEN hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from notifyd import health, realtime, rest
from notifyd.config import Settings
from notifyd.db import create_pool
from notifyd.errors import HANDLERS
from notifyd.metrics import Metrics


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
        routes=[*health.routes, *rest.routes, *realtime.routes, *(extra_routes or [])],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    return app
