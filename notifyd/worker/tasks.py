"""The worker's tasks: the dispatcher, one delivery task per channel, in-app release, VAPID rotation, and the tasks
that digests, template rendering and retention declare on the same Procrastinate app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import asyncpg
import procrastinate
import psycopg
import psycopg_pool
from procrastinate.connector import Notify
from psycopg.rows import DictRow

from notifyd.core.config import Settings
from notifyd.core.requestid import REQUEST_ID
from notifyd.db.pool import as_worker
from notifyd.db.queries import query
from notifyd.domain import digests, dispatch, rendering, retention, vapid
from notifyd.domain.deliveries import Channel, DeliveryRetry, run_job
from notifyd.domain.render_pool import RenderPool

QUEUES = ("dispatch", "push", "fcm", "email", "webhook", "chat", "sms", "in_app", "render", "maintenance")


# The login role holds notify_worker without inheriting it; Procrastinate's SQL is unqualified.
SESSION_OPTIONS = "-c role=notify_worker -c search_path=procrastinate"
# Procrastinate's LISTEN connection, as pg_stat_activity shows it.
LISTEN_APPLICATION_NAME = "notifyd-worker-listen"


class TransactionPooledConnector(procrastinate.PsycopgConnector):
    """Procrastinate through a transaction pooler (PgBouncer) for its queries, and directly for its LISTEN.

    The pooler refuses the startup options that set the role and search_path, and gives each transaction any of
    its server connections: each of Procrastinate's transactions (one per query, as its pool runs them) sets both
    for itself first, and psycopg prepares nothing. Its LISTEN would be accepted by the pooler and receive nothing,
    leaving the worker to its polls: it goes to the primary itself, on a connection of its own.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(conninfo=settings.database_url, kwargs={"prepare_threshold": None})
        # A null pool keeps no connection: it only tells the listener where to connect.
        self.listener = procrastinate.PsycopgConnector(
            conninfo=settings.direct_url,
            pool_factory=psycopg_pool.AsyncNullConnectionPool,
            kwargs={"application_name": LISTEN_APPLICATION_NAME},
        )

    async def open_async(self, pool: psycopg_pool.AsyncConnectionPool | None = None) -> None:
        await super().open_async(pool)
        await self.listener.open_async()

    async def close_async(self) -> None:
        await self.listener.close_async()
        await super().close_async()

    async def listen_notify(self, on_notification: Notify, channels: Iterable[str]) -> None:
        await self.listener.listen_notify(on_notification, channels)

    @contextlib.asynccontextmanager
    async def _get_cursor(
        self, connection: psycopg.AsyncConnection | None = None
    ) -> AsyncIterator[psycopg.AsyncCursor[DictRow]]:
        async with super()._get_cursor(connection) as cursor:
            if connection is None:  # a caller's own connection is the caller's to set up
                await cursor.execute(query("become_queue_worker"))
            yield cursor


def connector(settings: Settings) -> procrastinate.PsycopgConnector:
    if settings.transaction_pooling:
        return TransactionPooledConnector(settings)
    return procrastinate.PsycopgConnector(conninfo=settings.database_url, kwargs={"options": SESSION_OPTIONS})


def build_app(
    settings: Settings, pool: asyncpg.Pool, channels: list[Channel], render_pool: RenderPool
) -> procrastinate.App:
    app = procrastinate.App(connector=connector(settings))
    retry = DeliveryRetry()

    def delivery_task(channel: Channel) -> Callable[..., Awaitable[None]]:
        async def deliver(delivery_ids: list[str], request_id: str | None = None) -> None:
            token = REQUEST_ID.set(request_id)
            try:
                await run_job(pool, settings.secrets, channel, delivery_ids)
            finally:
                REQUEST_ID.reset(token)

        return deliver

    by_queue = {channel.queue: channel for channel in channels}

    def runner(context: procrastinate.JobContext, request_id: str | None) -> dispatch.Runner:
        assert context.job.id is not None
        return dispatch.Runner(context.job.id, by_queue, settings.secrets, request_id)

    @app.task(name="dispatch_deliveries", queue="dispatch", retry=retry, pass_context=True)
    async def dispatch_deliveries(
        context: procrastinate.JobContext, request_id: str | None = None, awaiting: list[str] | None = None
    ) -> None:
        """Hands due deliveries to the channel tasks below, sends a batch of each itself; sends queue it
        (notify_private.queue_dispatch)."""
        token = REQUEST_ID.set(request_id)
        try:
            await dispatch.dispatch(pool, request_id, awaiting, runner(context, request_id))
        finally:
            REQUEST_ID.reset(token)

    # Deliveries whose dispatcher job could not run (failed past its retries, or held by a transaction
    # that rolled back) wait at most a minute.
    @app.periodic(cron="* * * * *", periodic_id="dispatch-sweep")
    @app.task(name="sweep_deliveries", queue="dispatch", retry=retry, pass_context=True)
    async def sweep_deliveries(context: procrastinate.JobContext, timestamp: int) -> None:
        await dispatch.dispatch(pool, None, awaiting=[], runner=runner(context, None), adopt=True)

    for channel in channels:
        app.task(name=f"deliver_{channel.queue}", queue=channel.queue, retry=retry)(delivery_task(channel))

    @app.task(name="deliver_in_app", queue="in_app", retry=retry)
    async def deliver_in_app(delivery_ids: list[str], request_id: str | None = None) -> None:
        """Releases real-time events held for send_at or the in-app rate limit (request_id: every job carries it)."""
        async with as_worker(pool) as conn:
            await conn.fetchval(query("release_in_app"), delivery_ids)

    @app.periodic(cron="17 * * * *", periodic_id="hourly")
    @app.task(name="maintain_vapid_keys", queue="maintenance")
    async def maintain_vapid_keys(timestamp: int) -> None:
        await vapid.maintain(pool, settings)

    digests.register(app, pool, settings)
    rendering.register(app, pool, settings, render_pool)
    retention.register(app, pool, settings)
    return app
