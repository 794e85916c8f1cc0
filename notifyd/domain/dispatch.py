"""The dispatcher: hands the ledger's due deliveries to the channels' jobs, in batches.

A send does not defer a job per channel. Its deliveries wait in the ledger (pending, not queued), and
its transaction makes sure one dispatcher job is queued (notify_private.queue_dispatch adds none when
one is queued and not started yet). A dispatcher run stamps the due deliveries queued and defers the
channel jobs that carry them (deliver_push, deliver_fcm, deliver_email, deliver_in_app: their retries
and the ledger's idempotency are unchanged), then queues itself for the next delivery to come due.

The first batch of each channel (delivery.job_size deliveries) the dispatcher job sends itself, without a
channel job in between: a job's defer, NOTIFY, fetch and finish cost a single send ~10-18 ms between
its commit and the provider. Those deliveries are stamped with the dispatcher job's id (dispatched_by): a
worker killed while sending them leaves its job stalled, the job is taken back and run again, and its
retry starts by sending what it had kept and not finished (the ledger counts a possible repeat, as for
a channel job). A kept batch that is to be tried again is handed to a channel job from there on.

The race this module closes: a sender that saw a queued dispatcher job adds none, and that job may
start before the sender commits. So a run first notes the writing transactions open in its database
when it starts (a sender that saw its job queued had written its deliveries by then: it is one of them,
or committed already), dispatches, waits for them to end, and dispatches again. One that outlives the
wait gets a follow-up job, which no sender counts on, that dispatches once it has ended.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from notifyd.core.crypto import SecretBox
from notifyd.db.pool import as_worker
from notifyd.db.queries import query
from notifyd.domain.deliveries import Channel, RetryLater, run_job

log = logging.getLogger("notifyd.worker")

# How long a run waits in-process for the transactions that may have seen its job queued (senders
# commit in milliseconds); past that a follow-up job waits for the slow ones, polling this often.
WAIT_IN_RUN = 2.0
FOLLOW_UP_AFTER = 1.0
# A kept batch whose sending broke unexpectedly (not a provider's answer) goes to a channel job this much later.
HAND_OVER_AFTER = 2.0


@dataclass(frozen=True)
class Runner:
    """The dispatcher job that sends the batches it keeps: its id and the worker's channels by queue."""

    job_id: int
    channels: Mapping[str, Channel]
    box: SecretBox | None
    request_id: str | None

    async def send(self, pool: asyncpg.Pool, queue: str, ids: list[str]) -> None:
        """Sends a kept batch; what is to be tried again goes to a channel job (an error here fails the run)."""
        try:
            await run_job(pool, self.box, self.channels[queue], ids)
            return
        except RetryLater as retry:
            delay = retry.delay
        except Exception:
            log.exception("dispatcher: sending %d %s deliveries itself", len(ids), queue)
            delay = HAND_OVER_AFTER
        async with as_worker(pool) as conn:
            await conn.fetchval(query("hand_over_deliveries"), queue, ids, delay, self.request_id)


async def _dispatch_due(pool: asyncpg.Pool, request_id: str | None, runner: Runner | None,
                        sending: list[asyncio.Task[None]]) -> int:  # fmt: skip
    """Hands every due delivery to channel jobs, a batch per transaction; returns how many. The batches the
    runner keeps are sent in tasks added to `sending`."""
    total = 0
    more = True
    while more:
        job_id, direct = (runner.job_id, list(runner.channels)) if runner else (None, [])
        async with as_worker(pool) as conn:
            row = await conn.fetchrow(query("dispatch_deliveries"), request_id, job_id, direct)
        assert row is not None
        total += row["dispatched"]
        more = row["more"]
        _send_kept(pool, runner, row["kept"] or {}, sending)
    return total


def _send_kept(pool: asyncpg.Pool, runner: Runner | None, kept: Mapping[str, list[uuid.UUID | str]],
               sending: list[asyncio.Task[None]]) -> None:  # fmt: skip
    for queue, ids in kept.items():
        assert runner is not None
        sending.append(asyncio.create_task(runner.send(pool, queue, [str(i) for i in ids])))


async def _finish(sending: list[asyncio.Task[None]]) -> None:
    """Waits for the kept batches; the first error fails the run (Procrastinate retries it)."""
    errors = [r for r in await asyncio.gather(*sending, return_exceptions=True) if isinstance(r, BaseException)]
    if errors:
        raise errors[0]


async def _still_in_progress(pool: asyncpg.Pool, xids: list[str]) -> list[str]:
    async with as_worker(pool) as conn:
        running: list[str] = await conn.fetchval(query("still_in_progress"), xids)
    return running


async def _follow_up(pool: asyncpg.Pool, running: list[str]) -> None:
    async with as_worker(pool) as conn:
        await conn.fetchval(query("queue_dispatch_followup"), running, FOLLOW_UP_AFTER)


async def dispatch(pool: asyncpg.Pool, request_id: str | None, awaiting: list[str] | None = None,
                   runner: Runner | None = None, adopt: bool = False) -> int:  # fmt: skip
    """One dispatcher run; returns how many deliveries it handed to channel jobs or sent itself. With `adopt`
    (the periodic sweep) it also sends what dispatcher jobs that will not run again (failed for good) had kept."""
    sending: list[asyncio.Task[None]] = []
    try:
        if runner is not None:
            # A retry of this job (its worker died, or the run failed): first what it had kept and not finished.
            async with as_worker(pool) as conn:
                if adopt:
                    adopted = await conn.fetchval(query("adopt_kept_deliveries"), runner.job_id)
                    if adopted:
                        log.warning("dispatcher: %d deliveries kept by dispatcher jobs that failed for good", adopted)
                kept = {r["queue"]: r["ids"] for r in await conn.fetch(query("kept_deliveries"), runner.job_id)}
            _send_kept(pool, runner, kept, sending)
        return await _dispatch_all(pool, request_id, awaiting, runner, sending)
    finally:
        await _finish(sending)


async def _dispatch_all(pool: asyncpg.Pool, request_id: str | None, awaiting: list[str] | None,
                        runner: Runner | None, sending: list[asyncio.Task[None]]) -> int:  # fmt: skip
    if awaiting is not None:
        # A follow-up: no sender counts on it being queued, so it waits only for what it was given.
        running = await _still_in_progress(pool, awaiting)
        if running:
            await _follow_up(pool, running)
            return 0
        return await _dispatch_due(pool, request_id, runner, sending)
    async with as_worker(pool) as conn:
        running = await conn.fetchval(query("transactions_in_progress"))
    total = await _dispatch_due(pool, request_id, runner, sending)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_IN_RUN
    pause = 0.001
    while running:
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)
        running = await _still_in_progress(pool, running)
        if running and loop.time() >= deadline:
            log.info("dispatcher: %d transaction(s) still open after %.0f s: a follow-up job waits for them",
                     len(running), WAIT_IN_RUN)  # fmt: skip
            await _follow_up(pool, running)
            return total
        if not running:
            # Every sender that may have counted on this run has ended: look again.
            total += await _dispatch_due(pool, request_id, runner, sending)
    return total
