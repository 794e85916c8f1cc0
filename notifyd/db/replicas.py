"""Read replicas (DATABASE_REPLICA_URL): the reads that tolerate lag, run as the caller on a streaming replica.

A read goes to a replica unless its request follows a write of the same caller that the replica has not
replayed yet: the write's WAL position comes with the request, and the replica is asked in the read's own
transaction, before anything is read, whether pg_last_wal_replay_lsn() has passed it (so the answer holds
whichever server the URL leads to, a load-balanced reader endpoint too). Behind, or failing (down,
refusing connections, a query cancelled by a recovery conflict), the read runs on the primary instead.
LISTEN, the fan-out and every write stay on the primary: NOTIFY does not reach standbys.

A failed replica is left alone for a few seconds, then the next read tries it again; its outage is logged
once when it starts (and at most once a minute while it lasts), and once when it ends.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from notifyd.core.auth import Caller
from notifyd.core.metrics import Metrics
from notifyd.db.pool import as_caller, become, create_pool
from notifyd.db.queries import query

log = logging.getLogger("notifyd.replicas")

T = TypeVar("T")

PRIMARY, REPLICA = "primary", "replica"
# Seconds to get a replica connection (connecting included) before the read goes to the primary.
CONNECT_TIMEOUT = 2.0
# Seconds a failed replica is left alone; then the next read tries it again.
RETRY_AFTER = 5.0
# While an outage lasts, at most one log line in this many seconds.
LOG_EVERY = 60.0
# SQLSTATE classes that mean the replica, not the read, failed: connection (08), authorization (28), no such
# database (3D), out of resources (53), shut down or starting up (57).
REPLICA_TROUBLE = ("08", "28", "3D", "53", "57")
# A standby cancels a query whose rows replay is about to remove (a recovery conflict): the primary has them.
RECOVERY_CONFLICT = "40001"
LSN = re.compile(r"[0-9A-F]{1,8}/[0-9A-F]{1,8}")


class _Behind(Exception):
    """The replica has not replayed the caller's last write yet."""


def replica_failed(error: BaseException) -> bool:
    """Whether an error says the replica itself is unusable (rather than something about the read)."""
    if isinstance(error, asyncpg.PostgresError):
        return str(error.sqlstate)[:2] in REPLICA_TROUBLE
    return isinstance(error, (OSError, TimeoutError, asyncpg.InterfaceError))


def valid_lsn(text: str) -> bool:
    return LSN.fullmatch(text) is not None


@dataclass
class Replica:
    number: int  # its place in DATABASE_REPLICA_URL, from 0: the metric's label and the log's name for it
    pool: asyncpg.Pool
    down_until: float = 0.0
    logged_at: float = -math.inf


class Databases:
    """The primary pool and the replicas: where each read of a request runs."""

    def __init__(self, primary: asyncpg.Pool, replicas: list[Replica], metrics: Metrics) -> None:
        self.primary = primary
        self.replicas = replicas
        self.metrics = metrics
        self._turn = itertools.count()
        for replica in replicas:
            metrics.replica_up.labels(str(replica.number)).set(1)

    @classmethod
    async def open(cls, primary: asyncpg.Pool, replica_urls: tuple[str, ...], metrics: Metrics) -> Databases:
        """Replica pools connect on first use (min_size 0): a replica down at start does not stop serve."""
        pools = [await create_pool(url, min_size=0) for url in replica_urls]
        return cls(primary, [Replica(number, pool) for number, pool in enumerate(pools)], metrics)

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.pool.close()

    async def write_position(self) -> str:
        """The primary's WAL position now: asked after a write has committed, it is at or past that commit."""
        async with self.primary.acquire() as conn:
            position: str = await conn.fetchval(query("write_position"))
        return position

    def _next_replica(self) -> Replica | None:
        """The replicas in turn, skipping those left alone after a failure."""
        now = time.monotonic()
        usable = [r for r in self.replicas if r.down_until <= now]
        return usable[next(self._turn) % len(usable)] if usable else None

    def _failed(self, replica: Replica, error: BaseException) -> None:
        now = time.monotonic()
        was_up = replica.down_until == 0.0
        replica.down_until = now + RETRY_AFTER
        self.metrics.replica_up.labels(str(replica.number)).set(0)
        if was_up or now - replica.logged_at >= LOG_EVERY:
            replica.logged_at = now
            log.warning(
                "read replica %d failed (%s: %s): its reads go to the primary; tried again every %.0f s",
                replica.number, type(error).__name__, error, RETRY_AFTER,
            )  # fmt: skip

    def _answered(self, replica: Replica) -> None:
        if replica.down_until != 0.0:
            replica.down_until = 0.0
            self.metrics.replica_up.labels(str(replica.number)).set(1)
            log.warning("read replica %d answers again: it takes reads", replica.number)

    async def probe(self) -> None:
        """Asks every replica whether it answers (at each /metrics scrape), so notifyd_replica_up is current
        even while no read comes."""
        for replica in self.replicas:
            try:
                async with replica.pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                    await conn.fetchval(query("database_alive"), timeout=CONNECT_TIMEOUT)
            except (asyncpg.PostgresError, OSError, TimeoutError, asyncpg.InterfaceError) as error:
                self._failed(replica, error)  # whatever it says, a replica that cannot answer SELECT 1 takes no reads
            else:
                self._answered(replica)

    @asynccontextmanager
    async def _on_replica(
        self, replica: Replica, caller: Caller, after: str | None
    ) -> AsyncIterator[asyncpg.Connection]:
        # Replay is checked before the first read of the transaction (read committed: each later statement
        # sees at least what was replayed by then).
        async with replica.pool.acquire(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
            if after is not None and not await conn.fetchval(query("replayed_past"), after):
                raise _Behind
            await become(conn, caller.db_role, caller.claims)
            yield conn

    @asynccontextmanager
    async def _reading(
        self, caller: Caller, after: str | None, primary: bool
    ) -> AsyncIterator[tuple[asyncpg.Connection, Replica | None]]:
        replica = None if primary or not self.replicas else self._next_replica()
        if replica is not None:
            entered = False
            try:
                async with self._on_replica(replica, caller, after) as conn:
                    entered = True
                    self._answered(replica)
                    self.metrics.lag_tolerant_reads.labels(REPLICA).inc()
                    yield conn, replica
                    return
            except _Behind:
                pass
            except Exception as error:
                if entered or not replica_failed(error):
                    raise
                self._failed(replica, error)
        if self.replicas:
            self.metrics.lag_tolerant_reads.labels(PRIMARY).inc()
        async with as_caller(self.primary, caller) as conn:
            yield conn, None

    @asynccontextmanager
    async def reading(
        self, caller: Caller, after: str | None, *, primary: bool = False
    ) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
        """A transaction as the caller for a read that tolerates lag, and where it runs (primary or replica).

        `after`: the WAL position of the caller's last write, which a replica must have replayed; `primary`:
        the read must run on the primary (its request carried a write position that could not be trusted).
        A replica that fails before the read starts leaves it to the primary; once the connection is handed
        out, a failure is the caller's (a streamed answer cannot be started again; `read` can).
        """
        async with self._reading(caller, after, primary) as (conn, replica):
            yield conn, PRIMARY if replica is None else REPLICA

    async def read(
        self,
        caller: Caller,
        work: Callable[[asyncpg.Connection], Awaitable[T]],
        after: str | None,
        *,
        primary: bool = False,
    ) -> tuple[T, str]:
        """`work` as the caller where `reading` puts it, and where it ran; a replica that fails meanwhile
        (or cancels the read for a recovery conflict) has it run again on the primary."""
        ran_on: Replica | None = None
        try:
            async with self._reading(caller, after, primary) as (conn, ran_on):
                return await work(conn), PRIMARY if ran_on is None else REPLICA
        except Exception as error:
            conflict = isinstance(error, asyncpg.PostgresError) and error.sqlstate == RECOVERY_CONFLICT
            if ran_on is None or not (conflict or replica_failed(error)):
                raise
            if not conflict:
                self._failed(ran_on, error)
        self.metrics.lag_tolerant_reads.labels(PRIMARY).inc()
        async with as_caller(self.primary, caller) as conn:
            return await work(conn), PRIMARY
