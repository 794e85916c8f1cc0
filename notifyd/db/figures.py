"""Each serve and worker process reports its own Prometheus samples into the database every few seconds.

A process's /metrics shows only that process; the operator console sums the reported samples of every process
instead (open sockets, commit → fan-out latency, LISTEN reconnects, provider errors and circuit state).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any, Literal

import asyncpg

from notifyd.core.metrics import Metrics
from notifyd.db.pool import as_worker
from notifyd.db.queries import query

log = logging.getLogger("notifyd")

REPORT_INTERVAL = 5.0  # seconds: the console polls every 3, and a stale row shows once it is 3 intervals old
# The families a process knows alone; the ones read from the database at each scrape are the same everywhere.
REPORTED = frozenset({
    "notifyd_open_sockets",
    "notifyd_events_sent",
    "notifyd_listen_reconnects",
    "notifyd_catch_up_lag_seconds",
    "notifyd_commit_to_socket_seconds",
    "notifyd_slow_clients_closed",
    "notifyd_provider_errors",
    "notifyd_provider_circuit_open",
})  # fmt: skip

Kind = Literal["serve", "worker"]


def process_name(kind: Kind) -> str:
    return f"{kind}@{socket.gethostname()}:{os.getpid()}"


def samples(metrics: Metrics) -> list[dict[str, Any]]:
    """The reported families' samples, without the *_created timestamps prometheus_client adds."""
    return [
        {"name": sample.name, "labels": sample.labels, "value": sample.value}
        for family in metrics.registry.collect()
        if family.name in REPORTED
        for sample in family.samples
        if not sample.name.endswith("_created")
    ]


async def report(pool: asyncpg.Pool, metrics: Metrics, kind: Kind) -> None:
    """Reports every REPORT_INTERVAL until cancelled; a failed report is logged and tried again next time."""
    name = process_name(kind)
    while True:
        try:
            async with as_worker(pool) as conn:
                await conn.execute(query("report_figures"), name, kind, samples(metrics))
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            log.warning("could not report this process's figures: %s", error)
        await asyncio.sleep(REPORT_INTERVAL)
