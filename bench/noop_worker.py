"""The delivery scenario's peer: Procrastinate's own rate, one worker running jobs that do nothing.

python -m bench.noop_worker DATABASE_URL CONCURRENCY     # prints "ready" once the worker runs

Connects as notifyd's worker does (role notify_worker, Procrastinate's schema on the search path) and runs
as it does (the same concurrency, successful jobs deleted), on a queue of its own; the bench defers the jobs
with `connect` and counts how fast the queue empties.
"""

from __future__ import annotations

import asyncio
import sys

import procrastinate

QUEUE = TASK = "bench_noop"
STARTED = 1.0  # seconds for the worker to start listening before the bench may defer


async def noop() -> None:
    """Nothing: what is left is Procrastinate's own cost per job."""


def connect(database_url: str) -> procrastinate.App:
    """The app of the no-op task, connected as notifyd's worker connects."""
    options = "-c role=notify_worker -c search_path=procrastinate"
    connector = procrastinate.PsycopgConnector(conninfo=database_url, kwargs={"options": options})
    app = procrastinate.App(connector=connector)
    app.task(name=TASK, queue=QUEUE)(noop)
    return app


async def main(database_url: str, concurrency: int) -> None:
    worker_app = connect(database_url)
    async with worker_app.open_async():
        worker = asyncio.create_task(
            worker_app.run_worker_async(
                queues=[QUEUE], concurrency=concurrency, install_signal_handlers=False, delete_jobs="successful"
            )
        )
        await asyncio.sleep(STARTED)
        print("ready", flush=True)
        await worker


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
