"""`notifyd worker`: the Procrastinate worker that delivers on Web Push, FCM, e-mail, webhooks and chat.

Jobs are deferred by the database itself (notify_private.defer_jobs, in the sender's
transaction). This process runs them, retries with backoff, takes back the jobs of workers
that died, rotates VAPID keys, and exits non-zero when it can no longer work: Procrastinate
may stop with status 0 after losing the database, which a supervisor would take for a clean stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from typing import NoReturn

import asyncpg
import procrastinate
import psycopg
import uvloop

from notifyd.core.config import Settings
from notifyd.core.metrics import Metrics
from notifyd.core.requestid import configure_logging
from notifyd.db import figures
from notifyd.db.pool import as_worker, create_pool
from notifyd.db.queries import query
from notifyd.domain import vapid
from notifyd.domain.chat import ChatChannel
from notifyd.domain.deliveries import Channel
from notifyd.domain.email import EmailChannel
from notifyd.domain.fcm import FcmChannel
from notifyd.domain.render_pool import RenderPool
from notifyd.domain.sms import SmsChannel
from notifyd.domain.webhook import WebhookChannel
from notifyd.domain.webpush import WebPushChannel
from notifyd.worker.tasks import QUEUES, build_app

log = logging.getLogger("notifyd.worker")

EXIT_STOPPED_UNEXPECTEDLY = 1
EXIT_DATABASE_LOST = 2
# The worker exits once the database has been silent this long, or for WORKER_STALLED_AFTER if that is shorter:
# past it the other workers count this one as stalled and take its jobs back when the database returns, so
# waiting longer finishes nothing. Three probes fit in the wait.
DATABASE_GRACE = 15.0


def database_grace(settings: Settings) -> float:
    """Seconds of database silence after which the worker exits for its supervisor to restart it."""
    return min(DATABASE_GRACE, settings.worker_stalled_after)


def exit_without_database() -> NoReturn:
    """Ends the process with EXIT_DATABASE_LOST at once, as a kill would, without a graceful stop.

    Every step of a graceful stop waits on the database that is gone: Procrastinate records its running jobs' ends
    and unregisters the worker (a pooled connection waited for up to 30 s, a connect up to psycopg's 130 s), a
    cancelled query sends the server a cancel request and waits for it (asyncpg with no bound), and the pools close
    their connections politely. A server that refuses connections fails these fast; one that accepts and never
    answers (stopped, overloaded) held the exit for minutes. Nothing a stop would do can be recorded without the
    database, and the running jobs are taken back as stalled by the other workers, as after a kill.
    """
    logging.shutdown()  # the reason reaches the log first
    os._exit(EXIT_DATABASE_LOST)


async def recover_stalled_jobs(app: procrastinate.App, settings: Settings, pool: asyncpg.Pool) -> None:
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
            except procrastinate.exceptions.UniqueViolation:
                # A job with its queueing lock waits already (a dispatcher job of the same connection and due
                # time) and does the same work: this one ends failed, so that it is not found stalled again,
                # and the waiting one takes over the deliveries it had kept to send itself.
                await app.job_manager.finish_job(job, status=procrastinate.jobs.Status.FAILED, delete_job=False)
                async with as_worker(pool) as conn:
                    waiting = await conn.fetchval(query("waiting_job"), job.queueing_lock)
                    if waiting is not None:
                        await conn.fetchval(query("adopt_kept_deliveries"), waiting)
                log.warning("job %s (%s) was running on a worker that died; job %s with its lock takes over",
                            job.id, job.task_name, waiting)  # fmt: skip
                continue
            except psycopg.Error as error:
                log.info("job %s was taken back by another worker (%s)", job.id, error)
                continue
            log.warning("job %s (%s) was running on a worker that died: queued again", job.id, job.task_name)


async def watch_database(pool: asyncpg.Pool, grace: float) -> None:
    """Returns when the database has not answered for `grace` seconds (half-open sockets included)."""
    loop = asyncio.get_running_loop()
    answered_at = loop.time()
    probe_interval = grace / 3
    while True:
        # The probe is waited for, never awaited: a pool restoring its connections may not give way to a
        # cancel, and the watchdog must keep its own time.
        probe = asyncio.ensure_future(pool.fetchval(query("database_alive")))
        probe.add_done_callback(lambda task: task.cancelled() or task.exception())
        await asyncio.wait({probe}, timeout=probe_interval)
        error: BaseException | None = None
        if not probe.done():
            probe.cancel()
            error = TimeoutError()
        elif probe.cancelled() or probe.exception() is not None:
            error = probe.exception() if not probe.cancelled() else TimeoutError()
        if error is None:
            answered_at = loop.time()
        else:
            log.warning("database probe failed: %s", str(error) or type(error).__name__)
            if loop.time() - answered_at >= grace:
                return
            await asyncio.sleep(min(1.0, probe_interval))  # look again soon: grace counts from the last answer
            continue
        await asyncio.sleep(probe_interval)


async def serve(settings: Settings, stop_requested: asyncio.Event | None = None) -> int:
    """Runs until stop_requested is set (by default: SIGINT or SIGTERM); returns the exit status."""
    pool = await create_pool(
        settings.database_url,
        min_size=1,
        max_size=settings.worker_concurrency + 2,
        transaction_pooling=settings.transaction_pooling,
    )
    channels: list[Channel] = [
        WebPushChannel(settings), FcmChannel(settings), EmailChannel(settings, pool), WebhookChannel(settings),
        ChatChannel(settings), SmsChannel(settings),
    ]  # fmt: skip
    for channel in channels:
        reason = channel.not_configured()
        if reason is not None:
            log.warning("%s: %s; its deliveries will be skipped", channel.queue, reason)
    # Templates render in killable children here too: one C-level operation the sandbox cannot interrupt
    # would otherwise stall this event loop, its heartbeats and every other delivery.
    render_pool = RenderPool(settings)
    await render_pool.start()
    app = build_app(settings, pool, channels, render_pool)
    if stop_requested is None:
        stop_requested = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop_requested.set)
    try:
        async with app.open_async():
            await vapid.maintain(pool, settings)
            recovery = asyncio.create_task(recover_stalled_jobs(app, settings, pool), name="stalled-job recovery")
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
            watchdog = asyncio.create_task(watch_database(pool, grace=database_grace(settings)))
            stopping = asyncio.create_task(stop_requested.wait())
            # The worker serves no /metrics: what it knows alone reaches the console through the database.
            reporting = asyncio.create_task(figures.report(pool, Metrics(), "worker"), name="figures report")
            done, _ = await asyncio.wait({worker, watchdog, stopping, recovery}, return_when=asyncio.FIRST_COMPLETED)
            if done == {worker}:
                # Procrastinate's worker stops on its own when a side task loses its connection: whether the
                # database is gone is the watchdog's to say, within its grace.
                await asyncio.wait({watchdog, stopping}, timeout=database_grace(settings) + 1)
                done = {task for task in (worker, watchdog, stopping, recovery) if task.done()}
            if watchdog in done and stopping not in done:
                log.error(
                    "the database has not answered for %.0f s: exiting so that a supervisor restarts the worker",
                    database_grace(settings),
                )
                await render_pool.stop()
                exit_without_database()
            for task in (watchdog, stopping, recovery, reporting):
                task.cancel()
            if worker not in done:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
            if stopping in done:
                log.info("worker stopped")
                return 0
            failed = next(iter(done))
            error = failed.exception() if not failed.cancelled() else None
            log.error("%s stopped on its own (%s): exiting", failed.get_name(), error or "no error")
            return EXIT_STOPPED_UNEXPECTEDLY
    finally:
        for channel in channels:
            await channel.close()
        await pool.close()
        await render_pool.stop()


def run(settings: Settings) -> int:
    configure_logging(settings.log_format)
    try:
        # uvloop, as uvicorn picks it for `notifyd serve`: ~8% less worker CPU per e-mail (socket I/O, callbacks).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(serve(settings))
    except (OSError, asyncpg.PostgresError) as error:
        log.error("cannot reach the database: %s", error)
        return EXIT_DATABASE_LOST
