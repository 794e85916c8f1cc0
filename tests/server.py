"""Real notifyd processes (`serve` under uvicorn on a free port, `worker`), tokens for them, polling."""

from __future__ import annotations

import abc
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256"


def end_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not exited 10 s later."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Below the kernel's ephemeral range: a port the OS hands out for bind(0) may be taken by any outgoing
# connection (a client of PostgreSQL, say) before the server that was meant to have it binds it, or between
# its stop and its restart on the same port.
PORTS = range(15000, max(15001, min(_ephemeral_low(), 32768)))
_ports = random.Random()


def free_port() -> int:
    """A loopback port free now, outside the ephemeral range."""
    for _ in range(200):
        port = _ports.choice(PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def make_token(
    sub: str | uuid.UUID, *, role: str | None = None, exp_in: float = 3600, secret: str = JWT_SECRET, **claims: Any
) -> str:
    payload: dict[str, Any] = {"sub": str(sub), "exp": int(time.time() + exp_in), **claims}
    if role is not None:
        payload["role"] = role
    return jwt.encode(payload, secret, algorithm="HS256")


# The same secrets for every notifyd process of a test, so that what serve encrypts the worker opens.
ENCRYPTION_KEY = "bm90aWZ5ZC10ZXN0LWtleS0zMi1ieXRlcy1sb25nISE="
TEST_ENV = {
    "JWT_SECRET": JWT_SECRET,
    "NOTIFICATION_ENCRYPTION_KEY": ENCRYPTION_KEY,
    "VAPID_SUBJECT": "mailto:ops@example.com",
    # The stand-ins listen on plain http on 127.0.0.1.
    "PUSH_ENDPOINT_ALLOWLIST": "http://127.0.0.1:*",
    "WEBHOOK_ENDPOINT_ALLOWLIST": "http://127.0.0.1:*",
    "SLACK_WEBHOOK_HOSTS": "http://127.0.0.1:*",
    "TEAMS_WEBHOOK_HOSTS": "http://127.0.0.1:*",
    "DISCORD_WEBHOOK_HOSTS": "http://127.0.0.1:*",
}

# A worker that finds a stalled job, and gives up on a provider that does not answer, within a test's time.
QUICK_WORKER_ENV = {"WORKER_HEARTBEAT_INTERVAL": "1", "WORKER_STALLED_AFTER": "3", "PROVIDER_TIMEOUT": "1"}


class NotifydProcess(abc.ABC):
    """A `python -m notifyd <command>` child process with the test environment and a log file."""

    command = ""
    arguments: tuple[str, ...] = ()

    def __init__(self, database_url: str, log_path: Path, **env: str) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        # Another interpreter (an installed wheel's venv) and working directory than the tests' own.
        self.python = sys.executable
        self.cwd: Path | None = None

    def spawn(self, **env: str) -> subprocess.Popen[bytes]:
        inherited = dict(os.environ)
        if self.python != sys.executable:
            inherited.pop("PYTHONPATH", None)  # another interpreter imports its own install, never the checkout
        full_env = {**inherited, "DATABASE_URL": self.database_url, **TEST_ENV, **env, **self.env}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv(), env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd)
        return self.proc

    def argv(self) -> list[str]:
        return [self.python, "-m", "notifyd", self.command, *self.arguments]

    def stop(self) -> None:
        if self.proc is not None:
            end_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def start(self) -> None:
        proc = self.spawn(**self.start_env())
        # Generous: several processes starting at once on a loaded machine take their time.
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"notifyd {self.command} exited: {self.log()[-2000:]}")
            if self.ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"notifyd {self.command} did not start: {self.log()[-2000:]}")

    def start_env(self) -> dict[str, str]:
        return {}

    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether the started process is ready for the test."""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class WorkerProcess(NotifydProcess):
    """notifyd worker as a child process, started once Procrastinate says it is running."""

    command = "worker"

    def ready(self) -> bool:
        return "Starting worker" in self.log()

    def kill(self) -> None:
        """SIGKILL: no cleanup, its running jobs stay 'doing' until recovered."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None


class ServerProcess(NotifydProcess):
    """notifyd serve as a child process; start/stop/restart keep the same port."""

    command = "serve"

    def __init__(self, database_url: str, log_path: Path, **env: str) -> None:
        super().__init__(database_url, log_path, **env)
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/notifications/ws"

    def start_env(self) -> dict[str, str]:
        return {"NOTIFYD_PORT": str(self.port), "NOTIFYD_HOST": "127.0.0.1"}

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def wait_for(predicate: Any, timeout: float = 15, interval: float = 0.05, what: str = "condition") -> Any:
    """Polls predicate() until it returns something truthy; fails the test with `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
