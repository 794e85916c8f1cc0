"""A real PgBouncer (Debian's) in transaction pooling on a free loopback port, for the tests and the benchmarks.

It lets the login role in by SCRAM with the password from a userlist of its own, and reaches the server with
the same name and password. Its admin console (database `pgbouncer`) answers SHOW POOLS / SHOW SERVERS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.server import end_process, free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
ADMIN, ADMIN_PASSWORD = "pgbouncer_admin", "pgbouncer-admin-password"
# PgBouncer refuses to run as root; under root it is started as this user (PostgreSQL's, there on any server).
UNPRIVILEGED_USER = "postgres"


def installed() -> bool:
    return Path(PGBOUNCER).exists()


class PgBouncer:
    """pgbouncer in front of the server at host:port, for `logins` ({user: password}); start() and stop()."""

    def __init__(self, host: str, port: int, logins: dict[str, str], *, pool_size: int = 20) -> None:
        self.server = (host, port)
        self.logins = logins
        self.pool_size = pool_size
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: Path | None = None

    def url(self, user: str, dbname: str) -> str:
        return f"postgresql://{user}:{self.logins[user]}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        # Readable by the unprivileged user pgbouncer runs as under root (mkdtemp makes it private to us).
        self.dir = Path(tempfile.mkdtemp(prefix="notifyd-pgbouncer-"))
        self.dir.chmod(0o755)
        users = {**self.logins, ADMIN: ADMIN_PASSWORD}
        (self.dir / "userlist.txt").write_text("".join(f'"{u}" "{p}"\n' for u, p in users.items()))
        host, port = self.server
        (self.dir / "pgbouncer.ini").write_text(
            f"""[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {self.dir / "userlist.txt"}
admin_users = {ADMIN}
pool_mode = transaction
default_pool_size = {self.pool_size}
max_client_conn = 1000
"""
        )
        for made in self.dir.iterdir():
            made.chmod(0o644)
        as_user = ["-u", UNPRIVILEGED_USER] if os.geteuid() == 0 else []
        with (self.dir / "pgbouncer.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [PGBOUNCER, *as_user, str(self.dir / "pgbouncer.ini")], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.show("VERSION")
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    said = self.log()
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not start: {said[-2000:]}") from None
                time.sleep(0.05)

    def show(self, what: str) -> list[dict[str, Any]]:
        """SHOW `what` on the admin console, as dicts."""
        with psycopg.connect(
            host="127.0.0.1", port=self.port, dbname="pgbouncer", user=ADMIN, password=ADMIN_PASSWORD, autocommit=True
        ) as console:
            return console.cursor(row_factory=dict_row).execute(f"SHOW {what}").fetchall()

    def log(self) -> str:
        return (self.dir / "pgbouncer.log").read_text(errors="replace") if self.dir is not None else ""

    def stop(self) -> None:
        if self.proc is not None:
            end_process(self.proc)
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
