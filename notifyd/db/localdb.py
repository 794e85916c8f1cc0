"""The PostgreSQL server of the README commands: DATABASE_URL, else the local server, else a private one.

The private cluster is made from the local PostgreSQL binaries with initdb and pg_ctl. PostgreSQL
refuses to run as root, so as root its commands run through `runuser -u postgres`.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from notifyd.core.config import env
from notifyd.db.queries import query

# Where to look for a running server, and where to make the private one; tests point these elsewhere.
LOCAL_SERVER_ENV = "NOTIFYD_LOCAL_SERVER"  # host:port, default 127.0.0.1:5432
PRIVATE_PORT_ENV = "NOTIFYD_PRIVATE_PORT"  # default 54329
PRIVATE_DIR_ENV = "NOTIFYD_PRIVATE_DIR"  # default <state dir>/pgdata
STATE_DIR_ENV = "NOTIFYD_STATE_DIR"  # default ./.notifyd


def state_dir() -> Path:
    """Where the embedded default keeps its files: the private cluster, dev secrets."""
    return Path(env(STATE_DIR_ENV) or Path.cwd() / ".notifyd")


class LocalDatabaseError(Exception):
    """No PostgreSQL could be found or started."""


def server_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pg_binary(name: str) -> str:
    """A PostgreSQL server binary: from PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise LocalDatabaseError(f"{name} not found: install PostgreSQL or set DATABASE_URL")
    return candidates[-1]


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster of our own, listening on 127.0.0.1 only, with trust auth."""

    data_dir: Path
    port: int

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> None:
        result = subprocess.run(_as_postgres(list(args)), capture_output=True, text=True)
        if result.returncode != 0:
            raise LocalDatabaseError(f"{Path(args[0]).name} failed: {result.stderr.strip()}")

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
            self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                pg_binary("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            )
        if server_answers("127.0.0.1", self.port):
            return
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        self._run(
            pg_binary("pg_ctl"),
            "start",
            "-w",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            options,
        )

    def replica(self, data_dir: Path, port: int, apply_delay: str = "0") -> PrivateCluster:
        """A streaming replica of this running cluster (pg_basebackup -R: a hot standby that follows it), to start
        on `port`; `apply_delay` (recovery_min_apply_delay, e.g. "2s") holds each commit back that long."""
        data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data_dir, "postgres", "postgres")
        data_dir.chmod(0o700)
        self._run(
            pg_binary("pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-D", str(data_dir), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        with (data_dir / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"recovery_min_apply_delay = '{apply_delay}'\n")
        return PrivateCluster(data_dir, port)

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop; mode "immediate" is a crash (no shutdown checkpoint), as tests of outages want."""
        self._run(pg_binary("pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.data_dir))


def resolve_server() -> tuple[str, PrivateCluster | None]:
    """A superuser URL of the server to use, and the private cluster if one had to be started.

    The URL names the `postgres` maintenance database; callers pick their own database.
    """
    url = env("DATABASE_URL")
    if url:
        return url, None
    host, _, port = (env(LOCAL_SERVER_ENV) or "127.0.0.1:5432").rpartition(":")
    if server_answers(host, int(port)):
        return f"postgresql://postgres@{host}:{port}/postgres", None
    cluster = PrivateCluster(
        Path(env(PRIVATE_DIR_ENV) or state_dir() / "pgdata"),
        int(env(PRIVATE_PORT_ENV) or "54329"),
    )
    cluster.start()
    return cluster.url(), cluster


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointed at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


async def ensure_database(server_url: str, dbname: str) -> str:
    """The URL of `dbname` on the server, creating the database if it does not exist."""
    conn = await asyncpg.connect(server_url)
    try:
        if not await conn.fetchval(query("database_exists"), dbname):
            try:
                await conn.execute(await conn.fetchval(query("create_database_statement"), dbname))
            except asyncpg.DuplicateDatabaseError:
                pass  # made meanwhile by another process
    finally:
        await conn.close()
    return with_database(server_url, dbname)


def owner_database(dbname: str) -> tuple[str, PrivateCluster | None]:
    """DATABASE_URL as it is, else `dbname` on the local or private server (made if missing).

    Also returns the private cluster if one had to be started, for the caller to stop.
    """
    url = env("DATABASE_URL")
    if url:
        return url, None
    server_url, cluster = resolve_server()
    return asyncio.run(ensure_database(server_url, dbname)), cluster
