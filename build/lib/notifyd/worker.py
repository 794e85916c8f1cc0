"""`notifyd worker`: the Procrastinate worker that delivers on Web Push, FCM and e-mail.

Jobs are deferred by the database itself (notify_private.defer_jobs, in the sender's
transaction). This process runs them, retries with backoff, takes back the jobs of workers
that died, rotates VAPID keys, and exits non-zero when it can no longer work: Procrastinate
may stop with status 0 after losing the database, which a supervisor would take for a clean stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable

import asyncpg
import procrastinate
import psycopg
import uvloop
from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from notifyd import digests, retention, server, templates, vapid
from notifyd.config import Settings
from notifyd.db import as_worker, create_pool
from notifyd.deliveries import Channel, RetryLater, run_job
from notifyd.email import EmailChannel
from notifyd.fcm import FcmChannel
from notifyd.queries import query
from notifyd.webpush import WebPushChannel

log = logging.getLogger("notifyd.worker")

QUEUES = ("push", "fcm", "email", "in_app", "render", "maintenance")
EXIT_STOPPED_UNEXPECTEDLY = 1
EXIT_DATABASE_LOST = 2
# A job that raised something else than RetryLater (a bug, a lost connection) is retried this often.
UNEXPECTED_ERROR_ATTEMPTS = 10
DATABASE_PROBE_INTERVAL = 5.0


class DeliveryRetry(BaseRetryStrategy):
    """RetryLater carries its own delay (backoff, jitter, cap, Retry-After); anything else backs off too."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, RetryLater):
            return RetryDecision(retry_in={"milliseconds": round(exception.delay * 1000)})
        if job.attempts >= UNEXPECTED_ERROR_ATTEMPTS:
            return None
        return RetryDecision(retry_in={"seconds": min(3600, 2 ** (job.attempts + 1))})


def connector(settings: Settings) -> procrastinate.PsycopgConnector:
    # The login role holds notify_worker without inheriting it; Procrastinate's SQL is unqualified.
    options = "-c role=notify_worker -c search_path=procrastinate"
    return procrastinate.PsycopgConnector(conninfo=settings.database_url, kwargs={"options": options})


def build_app(settings: Settings, pool: asyncpg.Pool, channels: list[Channel]) -> procrastinate.App:
    app = procrastinate.App(connector=connector(settings))
    retry = DeliveryRetry()

    def delivery_task(channel: Channel) -> Callable[..., Awaitable[None]]:
        async def deliver(delivery_ids: list[str]) -> None:
            await run_job(pool, settings.secrets, channel, delivery_ids)

        return deliver

    for channel in channels:
        app.task(name=f"deliver_{channel.queue}", queue=channel.queue, retry=retry)(delivery_task(channel))

    @app.task(name="deliver_in_app", queue="in_app", retry=retry)
    async def deliver_in_app(delivery_ids: list[str]) -> None:
        """Releases real-time events held for send_at or the in-app rate limit."""
        async with as_worker(pool) as conn:
            await conn.fetchval(query("release_in_app"), delivery_ids)

    @app.periodic(cron="17 * * * *", periodic_id="hourly")
    @app.task(name="maintain_vapid_keys", queue="maintenance")
    async def maintain_vapid_keys(timestamp: int) -> None:
        await vapid.maintain(pool, settings)

    digests.register(app, pool, settings)
    templates.register(app, pool, settings)
    retention.register(app, pool, settings)
    return app


async def recover_stalled_jobs(app: procrastinate.App, settings: Settings) -> None:
    """Every few seconds, puts the jobs of workers that stopped heartbeating (killed) back in the queue.

    A loop of each worker rather than a Procrastinate periodic task: cron counts in minutes, and a
    killed worker's deliveries should wait seconds, not minutes. Several workers may race to the
    same job; the loser's retry is refused and skipped.
    """
    while True:
        await asyncio.sleep(max(1.0, settings.worker_stalled_after / 3))
        try:
            stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=settings.worker_stalled_after)
        except psycopg.Error as error:
            log.warning("cannot look for stalled jobs: %s", error)  # the database watchdog decides what it means
            continue
        for job in stalled:
            try:
                await app.job_manager.retry_job(job)
            except psycopg.Error as error:
                log.info("job %s was taken back by another worker (%s)", job.id, error)
                continue
            log.warning("job %s (%s) was running on a worker that died: queued again", job.id, job.task_name)


async def watch_database(pool: asyncpg.Pool, grace: float) -> None:
    """Returns when the database has not answered for `grace` seconds (half-open sockets included)."""
    loop = asyncio.get_running_loop()
    answered_at = loop.time()
    while True:
        try:
            async with asyncio.timeout(DATABASE_PROBE_INTERVAL):
                await pool.fetchval(query("database_alive"))
            answered_at = loop.time()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
            log.warning("database probe failed: %s", str(error) or type(error).__name__)
            if loop.time() - answered_at >= grace:
                return
            await asyncio.sleep(1)  # look again soon: grace counts from the last answer
            continue
        await asyncio.sleep(DATABASE_PROBE_INTERVAL)


async def serve(settings: Settings, stop_requested: asyncio.Event | None = None) -> int:
    """Runs until stop_requested is set (by default: SIGINT or SIGTERM); returns the exit status."""
    pool = await create_pool(settings.database_url, min_size=1, max_size=settings.worker_concurrency + 2)
    channels: list[Channel] = [WebPushChannel(settings), FcmChannel(settings), EmailChannel(settings)]
    for channel in channels:
        reason = channel.not_configured()
        if reason is not None:
            log.warning("%s: %s; its deliveries will be skipped", channel.queue, reason)
    app = build_app(settings, pool, channels)
    if stop_requested is None:
        stop_requested = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop_requested.set)
    try:
        async with app.open_async():
            await vapid.maintain(pool, settings)
            recovery = asyncio.create_task(recover_stalled_jobs(app, settings), name="stalled-job recovery")
            worker = asyncio.create_task(
                app.run_worker_async(
                    queues=list(QUEUES),
                    name=f"notifyd@{socket.gethostname()}",
                    concurrency=settings.worker_concurrency,
                    install_signal_handlers=False,
                    update_heartbeat_interval=settings.worker_heartbeat_interval,
                    stalled_worker_timeout=settings.worker_stalled_after,
                    fetch_job_polling_interval=settings.worker_poll_interval,
                    delete_jobs="successful",
                ),
                name="the Procrastinate worker",
            )
            watchdog = asyncio.create_task(watch_database(pool, grace=3 * DATABASE_PROBE_INTERVAL))
            stopping = asyncio.create_task(stop_requested.wait())
            done, _ = await asyncio.wait({worker, watchdog, stopping, recovery}, return_when=asyncio.FIRST_COMPLETED)
            for task in (watchdog, stopping, recovery):
                task.cancel()
            if worker not in done:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
            if stopping in done:
                log.info("worker stopped")
                return 0
            if watchdog in done:
                log.error(
                    "the database has not answered for %.0f s: exiting so that a supervisor restarts the worker",
                    3 * DATABASE_PROBE_INTERVAL,
                )
                return EXIT_DATABASE_LOST
            failed = next(iter(done))
            error = failed.exception() if not failed.cancelled() else None
            log.error("%s stopped on its own (%s): exiting", failed.get_name(), error or "no error")
            return EXIT_STOPPED_UNEXPECTEDLY
    finally:
        for channel in channels:
            await channel.close()
        await pool.close()


def run(settings: Settings) -> int:
    server.configure_logging()
    try:
        # uvloop, as uvicorn picks it for `notifyd serve`: ~8% less worker CPU per e-mail (socket I/O, callbacks).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(serve(settings))
    except (OSError, asyncpg.PostgresError) as error:
        log.error("cannot reach the database: %s", error)
        return EXIT_DATABASE_LOST
