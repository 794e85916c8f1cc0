"""Scenario headers: what capping request heads costs, beside uvicorn's httptools protocol without a cap.

Three serve processes in turn, the same app under each protocol (bench/http_serve.py): notifyd's own
(httptools with MAX_HEADER_BYTES / MAX_HEADER_COUNT, notifyd/http/headlimit.py), uvicorn's httptools as
before the cap (the floor), and uvicorn's h11 with its limit (the alternative not taken). Each gets
CONNECTIONS keep-alive clients sending GET /healthz with a browser-like head (~1.4 KB, a 1 KB bearer
token) for SECONDS; figures: requests/s and the server's CPU (user + system, /proc) per request. Then
four requests at once with a 16 MB Authorization header: the server's peak RSS growth while they are
read (sampled every 5 ms) and its CPU for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from pathlib import Path

from bench.common import Database, Row, Scale, Table, cpu_seconds, rss_kb
from tests.server import ServerProcess

CONNECTIONS = 16
SECONDS = 8.0
ATTACKERS = 4
HUGE = 16 * 2**20
MODES = ("notifyd", "httptools", "h11")
REQUEST = (
    "GET /healthz HTTP/1.1\r\nHost: notifyd.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36\r\n"
    "Accept: application/json\r\nAccept-Language: en-GB,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n"
    "Origin: https://app.example.com\r\nReferer: https://app.example.com/inbox\r\n"
    f"Authorization: Bearer {'j' * 1024}\r\n\r\n"
).encode()
_LENGTH = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)


class ModeServer(ServerProcess):
    def __init__(self, mode: str, database_url: str, log_path: Path, **env: str) -> None:
        super().__init__(database_url, log_path, **env)
        self.mode = mode

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "bench.http_serve", self.mode]


async def load(port: int, seconds: float) -> int:
    """Answers received by CONNECTIONS keep-alive clients in `seconds`, each sending as soon as answered."""
    done = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < deadline:
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            found = _LENGTH.search(head)
            assert found is not None and head.startswith(b"HTTP/1.1 200"), head[:200]
            await reader.readexactly(int(found.group(1)))
            done += 1
        writer.close()

    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    return done


async def attack(port: int) -> str:
    """One request with a 16 MB Authorization header; the status line of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    status = b""
    with contextlib.suppress(ConnectionError):
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {'a' * HUGE}\r\n\r\n".encode())
        await writer.drain()
    with contextlib.suppress(ConnectionError):
        status = await reader.readline()
    writer.close()
    return status.decode().strip() or "no answer: connection reset"


async def measure(db: Database, mode: str) -> dict[str, float | str]:
    proc = ModeServer(mode, db.login_url, db.cluster.log_dir / f"{db.name}-{mode}.log", WS_MAX_CONNECTIONS="50000")
    db.processes.append(proc)
    await asyncio.to_thread(proc.start)
    assert proc.proc is not None
    pid = proc.proc.pid
    try:
        await load(proc.port, 1.0)  # warm-up
        cpu, began = cpu_seconds(pid), time.monotonic()
        answered = await load(proc.port, SECONDS)
        elapsed, used = time.monotonic() - began, cpu_seconds(pid) - cpu
        await asyncio.sleep(0.5)
        rss, cpu = rss_kb(pid), cpu_seconds(pid)
        peak = rss
        attacks = asyncio.gather(*(attack(proc.port) for _ in range(ATTACKERS)))
        while not attacks.done():  # the peak: large buffers go back to the system once freed
            peak = max(peak, rss_kb(pid))
            await asyncio.sleep(0.005)
        statuses = await attacks
        return {
            "rps": answered / elapsed,
            "us": used / answered * 1e6,
            "rss_mb": (peak - rss) / 1024,
            "attack_cpu": cpu_seconds(pid) - cpu,
            "statuses": ", ".join(sorted(set(statuses))),
        }
    finally:
        proc.stop()


async def run(db: Database, scale: Scale, table: Table) -> None:
    figures = {mode: await measure(db, mode) for mode in MODES}
    base = figures["httptools"]
    for mode, label in (("notifyd", "notifyd (httptools + head cap)"), ("h11", "h11 with its limit")):
        got = figures[mode]
        table.add(
            Row("headers", f"{label}: server CPU per request (floor: httptools)", float(got["us"]),
                float(base["us"]), "µs"),
            Row("headers", f"{label}: requests/s, {CONNECTIONS} keep-alive clients", float(got["rps"]),
                float(base["rps"]), "req/s"),
            Row("headers", f"{label}: peak RSS growth, {ATTACKERS}× 16 MB Authorization at once ({got['statuses']})",
                float(got["rss_mb"]), float(base["rss_mb"]), "MB"),
            Row("headers", f"{label}: server CPU for those {ATTACKERS} requests (httptools: {base['statuses']})",
                float(got["attack_cpu"]), float(base["attack_cpu"]), "s"),
        )  # fmt: skip
