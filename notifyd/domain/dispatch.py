"""The dispatcher: hands the ledger's due deliveries to the channels' jobs, in batches.

A send does not defer a job per channel. Its deliveries wait in the ledger (pending, not queued), and
its transaction makes sure one dispatcher job is queued (notify_private.queue_dispatch adds none when
one is queued and not started yet). A dispatcher run stamps the due deliveries queued and defers the
channel jobs that carry them (deliver_push, deliver_fcm, deliver_email, deliver_in_app: their retries
and the ledger's idempotency are unchanged), then queues itself for the next delivery to come due.

The race this module closes: a sender that saw a queued dispatcher job adds none, and that job may
start before the sender commits. So a run first notes the writing transactions open in its database
when it starts (a sender that saw its job queued had written its deliveries by then: it is one of them,
or committed already), dispatches, waits for them to end, and dispatches again. One that outlives the
wait gets a follow-up job, which no sender counts on, that dispatches once it has ended.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from notifyd.db.pool import as_worker
from notifyd.db.queries import query

log = logging.getLogger("notifyd.worker")

# How long a run waits in-process for the transactions that may have seen its job queued (senders
# commit in milliseconds); past that a follow-up job waits for the slow ones, polling this often.
WAIT_IN_RUN = 2.0
FOLLOW_UP_AFTER = 1.0


async def _dispatch_due(pool: asyncpg.Pool, request_id: str | None) -> int:
    """Hands every due delivery to channel jobs, a batch per transaction; returns how many."""
    total = 0
    more = True
    while more:
        async with as_worker(pool) as conn:
            row = await conn.fetchrow(query("dispatch_deliveries"), request_id)
        assert row is not None
        total += row["dispatched"]
        more = row["more"]
    return total


async def _still_in_progress(pool: asyncpg.Pool, xids: list[str]) -> list[str]:
    async with as_worker(pool) as conn:
        running: list[str] = await conn.fetchval(query("still_in_progress"), xids)
    return running


async def _follow_up(pool: asyncpg.Pool, running: list[str]) -> None:
    async with as_worker(pool) as conn:
        await conn.fetchval(query("queue_dispatch_followup"), running, FOLLOW_UP_AFTER)


async def dispatch(pool: asyncpg.Pool, request_id: str | None, awaiting: list[str] | None = None) -> int:
    """One dispatcher run; returns how many deliveries it handed to channel jobs."""
    if awaiting is not None:
        # A follow-up: no sender counts on it being queued, so it waits only for what it was given.
        running = await _still_in_progress(pool, awaiting)
        if running:
            await _follow_up(pool, running)
            return 0
        return await _dispatch_due(pool, request_id)
    async with as_worker(pool) as conn:
        running = await conn.fetchval(query("transactions_in_progress"))
    total = await _dispatch_due(pool, request_id)
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
            total += await _dispatch_due(pool, request_id)
    return total
