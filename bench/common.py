"""What every scenario of the suite shares: its database, its processes, its scale, its table and the machine.

One migrated template database per run (on the README commands' server: DATABASE_URL, the local
server, else the private cluster); each scenario gets a fresh copy of it. notifyd's processes log in
as a NOINHERIT login role that holds the four notify roles and nothing else, as in production.
"""

from __future__ import annotations

import asyncio
import glob
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from notifyd.db.localdb import resolve_server
from notifyd.db.migrate import migrate_url
from tests.server import ServerProcess, WorkerProcess

LOGIN = "notifyd_bench_login"
PASSWORD = "notifyd-bench-password"
NOMINAL_RATE = 100_000 / 60  # the spec: 100,000 notifications a minute

# notify.settings raised for the whole run (printed at the start): no send waits for a token or is
# refused by a limit, bulk sends may name 100,000 users. The tokens are still taken: that is measured.
BENCH_SETTINGS = {
    "rate_limit.in_app_per_hour": "1000000000",
    "rate_limit.push_per_hour": "1000000000",
    "rate_limit.email_per_day": "1000000000",
    "rate_limit.global_per_minute": "1000000000",
    "rate_limit.max_queued": "1000000000",
    "batch.max_recipients": "100000",
    "delivery.job_size": "200",
}
# The environment of every notifyd process of the run (printed too).
PROCESS_ENV = {
    "WS_MAX_CONNECTIONS": "50000",
    "WS_HEARTBEAT_INTERVAL": "300",  # no pings during a measurement
    "WORKER_CONCURRENCY": "8",
    "PROVIDER_TIMEOUT": "10",
}


# --- scale ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """How big each scenario is; printed with the table. --quick is a smoke run of a few seconds each."""

    name: str
    sockets: int  # end to end, bulk (online sessions), burst
    seconds: float  # measured seconds per rate (end to end); per client count (creation): a quarter of it
    memory_sockets: tuple[int, int]
    bulk_sizes: tuple[int, int]
    emails: int
    pushes: int
    table_rows: int
    user_rows: int
    query_samples: int
    email_samples: int
    burst_seconds: float
    sockets_per_process: int = 2500
    memory_cap: int | None = None  # set when the open files limit capped memory_sockets

    def capped_memory(self, cap: int) -> Scale:
        counts = tuple(min(c, cap) for c in self.memory_sockets)
        return Scale(**{**self.__dict__, "memory_sockets": counts, "memory_cap": cap})

    @staticmethod
    def of(quick: bool, full: bool, sockets: int | None, duration: float | None) -> Scale:
        if quick:
            base = Scale("quick", 200, 3, (200, 400), (500, 2_000), 300, 150, 100_000, 10_000, 40, 20, 3)
        else:
            base = Scale("default", 10_000, 10, (10_000, 20_000), (10_000, 100_000), 3_000, 1_500,
                         1_000_000, 100_000, 300, 200, 60)  # fmt: skip
        if full:
            base = Scale("full", base.sockets, base.seconds, base.memory_sockets, base.bulk_sizes, base.emails,
                         base.pushes, 10_000_000, 100_000, base.query_samples, base.email_samples,
                         base.burst_seconds)  # fmt: skip
        changes: dict[str, Any] = {}
        if sockets is not None:
            changes["sockets"] = sockets
            changes["memory_sockets"] = (sockets, 2 * sockets)
        if duration is not None:
            changes["seconds"] = duration
            changes["burst_seconds"] = duration
        return Scale(**{**base.__dict__, **changes})

    def describe(self) -> str:
        return (
            f"scale {self.name}: {self.sockets:,} sockets, {self.seconds:g} s per rate, memory at "
            f"{self.memory_sockets[0]:,}/{self.memory_sockets[1]:,} sockets, bulk to {self.bulk_sizes[0]:,}/"
            f"{self.bulk_sizes[1]:,}, {self.emails:,} e-mails + {self.pushes:,} pushes, {self.table_rows:,}-row "
            f"table with {self.user_rows:,} for one user, burst {self.burst_seconds:g} s"
        )


# --- the table ----------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table. value/floor are numbers in `unit`; `text` replaces value when set."""

    scenario: str
    figure: str
    value: float | None
    floor: float | None = None
    unit: str = ""
    target: str = "—"
    met: bool | None = None
    text: str | None = None
    floor_text: str | None = None

    def cells(self) -> list[str]:
        value = self.text if self.text is not None else fmt(self.value, self.unit)
        floor = self.floor_text if self.floor_text is not None else fmt(self.floor, self.unit)
        ratio = "—"
        if self.value is not None and self.value > 0 and self.floor is not None and self.floor > 0:
            r = self.value / self.floor
            ratio = f"{r:.0f}×" if r >= 10 else f"{r:.1f}×" if r >= 1 else f"{r:.2f}×"
        met = "—" if self.met is None else ("yes" if self.met else "NO")
        return [self.scenario, self.figure, value, floor, ratio, self.target, met]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.2f} {unit}".strip()


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)
    # Latency samples in seconds by series name, drawn as bench/results/latency.svg beside the table.
    distributions: dict[str, list[float]] = field(default_factory=dict)

    def distribution(self, name: str, seconds: list[float]) -> None:
        self.distributions[name] = list(seconds)

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)
        for row in rows:  # as they come, on stderr: a long run shows progress, stdout keeps one table
            print("   ", " | ".join(row.cells()[1:]), file=sys.stderr, flush=True)

    def render(self) -> str:
        header = ["#", "figure", "value", "floor or peer (same run)", "ratio", "target", "met"]
        lines = [header] + [r.cells() for r in self.rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in lines]
        out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(out)


# --- numbers --------------------------------------------------------------------------------------------------


def quantile(values: Iterable[float], p: float) -> float | None:
    """The value at rank p/100 of the sorted values (the rank the old scripts used); None without values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def ms(values: Iterable[float], p: float) -> float | None:
    """quantile in milliseconds of values in seconds."""
    q = quantile(values, p)
    return None if q is None else q * 1000


def triple(values: list[float]) -> str:
    """p50 / p95 / p99 in ms."""
    if not values:
        return "no samples"
    return " / ".join(f"{ms(values, p):.2f}" for p in (50, 95, 99)) + " ms"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat utime and stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_open_files(wanted: int) -> int:
    """Raises this process's RLIMIT_NOFILE (inherited by every process it starts); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- the database -------------------------------------------------------------------------------------------------


def with_database(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{dbname}"))


def login_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = f"{LOGIN}:{PASSWORD}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


class Cluster:
    """The server of the run, the migrated template database, and the scenario databases copied from it."""

    def __init__(self) -> None:
        self.server_url, self.private = resolve_server()
        self.prefix = f"notifyd_bench_{os.getpid()}"
        self.template = f"{self.prefix}_template"
        self.made: list[str] = []
        self.log_dir = Path(tempfile.mkdtemp(prefix="notifyd-bench-"))

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(with_database(self.server_url, "postgres"), autocommit=True)

    def prepare(self) -> None:
        """The template: migrated, the login role granted, the run's settings raised."""
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.template}"')
        self.made.append(self.template)
        url = with_database(self.server_url, self.template)
        asyncio.run(migrate_url(url))
        with psycopg.connect(url, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOGIN,)).fetchone():
                conn.execute(f"CREATE ROLE {LOGIN} LOGIN NOINHERIT PASSWORD '{PASSWORD}'")
            conn.execute(f"GRANT notify_service, notify_authenticated, notify_admin, notify_worker TO {LOGIN}")
            for key, value in BENCH_SETTINGS.items():
                updated = conn.execute(
                    "UPDATE notify.settings SET value = %s::jsonb WHERE key = %s", (value, key)
                ).rowcount
                assert updated == 1, f"no setting {key}"
            # The bare table of the floors: the same columns and defaults, no trigger, constraint or index.
            conn.execute("CREATE SCHEMA bench")
            conn.execute("CREATE TABLE bench.plain (LIKE notify.notifications INCLUDING DEFAULTS)")
            conn.execute("GRANT USAGE ON SCHEMA bench TO notify_service")
            conn.execute("GRANT INSERT ON bench.plain TO notify_service")
            # The peer of notify.send: a minimal queue message as pgmq makes one (identity id, read count,
            # enqueue and visibility times, a jsonb body; its visibility index), sent with a NOTIFY of the id.
            conn.execute(
                "CREATE TABLE bench.queue (msg_id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY, read_ct integer "
                "NOT NULL DEFAULT 0, enqueued_at timestamptz NOT NULL DEFAULT now(), vt timestamptz NOT NULL, "
                "message jsonb)"
            )
            conn.execute("CREATE INDEX ON bench.queue (vt)")
            conn.execute("GRANT INSERT, SELECT ON bench.queue TO notify_service")

    def database(self, scenario: str) -> Database:
        name = f"{self.prefix}_{scenario}"
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.made.append(name)
        return Database(self, name)

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        for name in reversed(self.made):
            self.drop(name)
        if self.private is not None:
            self.private.stop()

    def machine(self) -> list[str]:
        with self.admin() as conn:
            row = conn.execute(
                "SELECT current_setting('server_version'), current_setting('synchronous_commit'), "
                "current_setting('fsync'), current_setting('shared_buffers'), current_setting('max_connections'),"
                " current_setting('data_directory')"
            ).fetchone()
        assert row is not None
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        load = os.getloadavg()
        return [
            f"machine: {os.cpu_count()} cores, {mem_gb:.0f} GiB, load average {load[0]:.2f} at the start",
            f"PostgreSQL {row[0]} (synchronous_commit {row[1]}, fsync {row[2]}, shared_buffers {row[3]}, "
            f"max_connections {row[4]})",
            f"pg_test_fsync -s 1 in the data directory's filesystem: {pg_test_fsync(Path(row[5]))}",
        ]


def pg_test_fsync(data_dir: Path) -> str:
    """The short result of pg_test_fsync on a temporary file beside the data directory (same filesystem)."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_test_fsync"))
    binary = shutil.which("pg_test_fsync") or (binaries[-1] if binaries else None)
    if binary is None:
        return "not runnable (pg_test_fsync not found)"
    if not data_dir.exists():
        return f"not runnable (data directory {data_dir} is not on this machine)"
    try:
        tmp = Path(tempfile.mkdtemp(prefix="bench-fsync-", dir=data_dir.parent))
    except OSError as error:
        return f"not runnable ({error})"
    try:
        result = subprocess.run(
            [binary, "-s", "1", "-f", str(tmp / "fsync.tmp")], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"not runnable ({error})"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wanted = ("fdatasync", "fsync ", "open_datasync", "open_sync")
    picked = []
    for line in result.stdout.splitlines():
        words = line.split()
        if "ops/sec" in line and words and any(line.strip().startswith(w) for w in wanted):
            picked.append(f"{words[0]} {words[-4]} ops/s")  # e.g. "fdatasync   1234.5 ops/sec  810 usecs/op"
            if len(picked) == 3:
                break
    return ", ".join(picked) if picked else f"no figures (exit {result.returncode}): {result.stderr.strip()[:200]}"


class Database:
    """One scenario's database: owner (superuser) and login URLs, and the notifyd processes started on it."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.owner_url = with_database(cluster.server_url, name)
        self.login_url = login_url(self.owner_url)
        self.processes: list[ServerProcess | WorkerProcess] = []

    def owner(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.owner_url, autocommit=True)

    def server(self, **env: str) -> ServerProcess:
        server = ServerProcess(self.login_url, self.cluster.log_dir / f"{self.name}-serve.log", **PROCESS_ENV, **env)
        self.processes.append(server)
        server.start()
        return server

    def worker(self, **env: str) -> WorkerProcess:
        worker = WorkerProcess(self.login_url, self.cluster.log_dir / f"{self.name}-worker.log", **PROCESS_ENV, **env)
        self.processes.append(worker)
        worker.start()
        return worker

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        self.cluster.drop(self.name)


# --- load -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    index: int
    scheduled: float  # time.monotonic() of its slot in the schedule
    began: float
    ended: float  # the commit acknowledged
    result: Any


async def paced(conns: list[Any], rate: float, seconds: float, call: Any) -> list[Call]:
    """Open loop: `await call(conn, i)` for i in range(rate * seconds), call i due at start + i / rate, spread
    over the connections (a call waits for its slot and a free connection, never for a reply to another).
    Calls not started by seconds + 1 s are dropped: achieved_rate tells."""
    total = int(rate * seconds)
    start = time.monotonic() + 0.1
    counter = iter(range(total))
    calls: list[Call] = []

    cutoff = start + seconds + 1  # past it nothing new starts: a rate that cannot be kept stays bounded

    async def drive(conn: Any) -> None:
        for i in counter:
            if time.monotonic() > cutoff:
                return
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            began = time.monotonic()
            result = await call(conn, i)
            calls.append(Call(i, due, began, time.monotonic(), result))

    await asyncio.gather(*(drive(c) for c in conns))
    return calls


def achieved_rate(calls: list[Call]) -> float:
    if len(calls) < 2:
        return 0.0
    return len(calls) / (max(c.ended for c in calls) - min(c.scheduled for c in calls))
