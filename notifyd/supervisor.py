"""`notifyd serve --workers N`: N serve processes sharing one listening socket, each started again if it dies.

Each child is a whole `notifyd serve` (its own pool, LISTEN hub and graceful shutdown); the parent only binds
the socket, passes it down, restarts a child that died and forwards SIGTERM/SIGINT. A child that failed
before it served (a bad setting, the database unreachable at startup) would fail again: the parent stops.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from notifyd.core.config import env

log = logging.getLogger("notifyd.supervisor")

# Set by the parent for its children: the file descriptor of the socket they accept on.
LISTEN_FD_ENV = "NOTIFYD_LISTEN_FD"
# The exit status of a serve process whose startup failed (uvicorn's own number for it).
STARTUP_FAILURE = 3
CHECK_INTERVAL = 0.5
# A child that dies again this soon after its start is restarted after a pause, not in a tight loop.
RESTART_PAUSE = 1.0


def inherited_socket() -> socket.socket | None:
    """In a child: the parent's listening socket; None in a process started on its own."""
    fd = env(LISTEN_FD_ENV)
    return socket.socket(fileno=int(fd)) if fd else None


def run(host: str, port: int, workers: int) -> int:
    listener = socket.create_server((host, port), backlog=2048)
    listener.set_inheritable(True)
    env = {**os.environ, LISTEN_FD_ENV: str(listener.fileno())}
    stopping: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start() -> tuple[subprocess.Popen[bytes], float]:
        child = subprocess.Popen([sys.executable, "-m", "notifyd", "serve"], env=env, pass_fds=[listener.fileno()])
        log.info("serve process %d started", child.pid)
        return child, time.monotonic()

    children = [start() for _ in range(workers)]
    status = 0
    while not stopping:
        time.sleep(CHECK_INTERVAL)
        for i, (child, started) in enumerate(children):
            code = child.poll()
            if code is None or stopping:
                continue
            if code == STARTUP_FAILURE:
                log.error("serve process %d failed to start; stopping the others", child.pid)
                stopping.append(signal.SIGTERM)
                status = STARTUP_FAILURE
                break
            log.warning("serve process %d exited with status %d; starting another", child.pid, code)
            if time.monotonic() - started < RESTART_PAUSE:
                time.sleep(RESTART_PAUSE)
            children[i] = start()
    for child, _ in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)  # each shuts down gracefully, as a lone serve does
    for child, _ in children:
        child.wait()
    listener.close()
    return status
