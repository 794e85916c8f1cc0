"""Liveness, readiness and metrics routes."""

from __future__ import annotations

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from notifyd.queries import query


async def healthz(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers and the LISTEN connection is up."""
    checks = {"database": False, "listen": bool(request.app.state.hub.is_listening)}
    try:
        async with request.app.state.pool.acquire(timeout=2) as conn:
            checks["database"] = await conn.fetchval(query("database_alive"), timeout=2) == 1
    except (OSError, TimeoutError, asyncpg.PostgresError):
        pass
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=request.app.state.metrics.content_type)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
