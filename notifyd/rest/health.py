"""Liveness, readiness and metrics routes."""

from __future__ import annotations

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from notifyd.db.pool import as_worker
from notifyd.db.queries import query


async def healthz(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers and the LISTEN connection is up (replicas are not asked: without them
    reads go to the primary)."""
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
    figures = request.app.state.metrics
    await request.app.state.databases.probe()
    try:
        async with as_worker(request.app.state.pool) as conn:
            counts = await conn.fetch(query("delivery_counts"))
            queues = await conn.fetch(query("queue_depth"))
            pending = await conn.fetchrow(query("pending_figures"))
            circuits = await conn.fetch(query("provider_circuits"))
        assert pending is not None  # an aggregate: always one row
        figures.set_delivery_figures(counts, queues, pending, circuits)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        pass  # the process's own figures are still worth a scrape
    return Response(figures.render(), media_type=figures.content_type)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
