"""notifyd's benchmark suite: each figure next to PostgreSQL's own floor, measured in the same run.

    .venv/bin/python -m bench                 # the whole suite (~10 minutes on 2 cores)
    .venv/bin/python -m bench --quick         # a smoke run: a few seconds per scenario
    .venv/bin/python -m bench --only creation,memory --sockets 2000 --duration 10
    .venv/bin/python -m bench --full          # queries on a 10M-row table (the default builds 1M)

Starts its own databases (a migrated template on the README commands' server, a copy per scenario),
its own notifyd processes (as a NOINHERIT login role holding the four notify roles) and the test
suite's stand-ins, all on loopback; raises notify.settings limits and the delivery batch size for the
run and prints them; each scenario is bounded in time. Prints the machine (cores, PostgreSQL,
pg_test_fsync) and ONE table: figure, value, the floor or peer, their ratio, the issue's target, met;
then writes the latency distributions as bench/results/latency.svg.

Scenarios: creation, endtoend, bulk, topics (send_topic as bulk measures send_bulk), memory, delivery, queries,
burst; headers: the request head cap's cost;
pgbouncer: notify.send through PgBouncer in transaction pooling beside direct; partitions: list/unread on the
week-partitioned table and retention by partition drop beside DELETE (10M rows with --full).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (  # noqa: E402
    bulk,
    burst,
    creation,
    delivery,
    endtoend,
    headers,
    memory,
    partitions,
    pgbouncer,
    queries,
    topics,
)
from bench import chart as bench_chart  # noqa: E402
from bench.common import BENCH_SETTINGS, PROCESS_ENV, Cluster, Database, Row, Scale, Table, raise_open_files  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"  # git-ignored
FD_RESERVE = 600  # a server's descriptors besides its sockets: database pool, logs, listeners
Scenario = Callable[[Database, Scale, Table], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {
    "creation": creation.run,
    "endtoend": endtoend.run,
    "bulk": bulk.run,
    "topics": topics.run,
    "memory": memory.run,
    "delivery": delivery.run,
    "queries": queries.run,
    "burst": burst.run,
    "headers": headers.run,
    "pgbouncer": pgbouncer.run,
    "partitions": partitions.run,
}
# Each scenario's own ceiling in seconds at the default scale (a larger --sockets/--duration raises it).
BUDGET = {
    "creation": 120,
    "endtoend": 300,  # notifyd's sockets and rates, then the relay's
    "bulk": 200,
    "topics": 200,
    "memory": 300,  # notifyd, the bare server and the relay in turn
    "delivery": 200,
    "queries": 200,
    "burst": 330,  # 3× for a third of the burst, then 10×
    "headers": 90,
    "pgbouncer": 90,
    "partitions": 300,  # the rows loaded twice over (for the DELETE, then the drop)
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts, a few seconds per scenario")
    parser.add_argument("--full", action="store_true", help="queries on 10M rows instead of 1M")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios of {', '.join(SCENARIOS)}")
    parser.add_argument("--sockets", type=int, help="sockets of end to end, bulk and burst (memory: this and 2×)")
    parser.add_argument(
        "--duration", type=float, help="seconds per rate of end to end (creation: a quarter per run), and of the burst"
    )
    args = parser.parse_args(argv)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in args.names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    scale = Scale.of(args.quick, args.full, args.sockets, args.duration)
    open_files = raise_open_files(max(65536, 3 * max(scale.memory_sockets) + 1024))
    if max(scale.memory_sockets) > open_files - FD_RESERVE:
        # One server process holds every socket of the memory scenario: a hard limit this process may not
        # raise (no CAP_SYS_RESOURCE) caps the count, and the table says so.
        scale = scale.capped_memory(open_files - FD_RESERVE)
    started = time.monotonic()
    cluster = Cluster()
    table = Table()
    failed: list[str] = []
    try:
        for line in cluster.machine():
            print(line)
        print(scale.describe())
        print(f"notify.settings raised for this run: {BENCH_SETTINGS}")
        print(f"notifyd processes' environment: {PROCESS_ENV}; open files limit {open_files}")
        if scale.memory_cap is not None:
            print(f"memory scenario capped at {scale.memory_cap:,} sockets by the open files limit")
        print(f"logs: {cluster.log_dir}", flush=True)
        cluster.prepare()
        for name in args.names:
            print(f"== {name} ==", file=sys.stderr, flush=True)
            db = cluster.database(name)
            budget = BUDGET[name] * (0.5 if args.quick else max(1.0, scale.sockets / 10_000, scale.seconds / 10))
            if name in ("queries", "partitions"):
                budget *= max(1.0, scale.table_rows / 1_000_000)
            began = time.monotonic()
            try:
                asyncio.run(asyncio.wait_for(SCENARIOS[name](db, scale, table), budget))
            except Exception as error:  # one scenario's failure must not hide the others' figures
                failed.append(name)
                traceback.print_exc()
                table.add(Row(name, "FAILED", None, text=f"{type(error).__name__}: {str(error)[:80]}"))
            finally:
                db.close()
            print(f"   ({name}: {time.monotonic() - began:.0f} s)", file=sys.stderr, flush=True)
    finally:
        cluster.close()
    print(f"\nnotifyd benchmark, {scale.name} scale, {os.cpu_count()} cores, {time.monotonic() - started:.0f} s in all")
    print(table.render())
    chart = bench_chart.write(table.distributions, RESULTS / "latency.svg")
    if chart is not None:
        print(f"latency distributions: {chart}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
