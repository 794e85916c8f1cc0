"""Scenario 4, memory: RSS per idle socket of notifyd at 10,000 and 20,000 sockets vs a bare `websockets` server.

Each server's RSS (VmRSS) is read 2 s after start, then 3 s after the first N sockets are open and
authenticated (one user each), then 3 s after N more; per socket = growth / sockets. The floor is
bench/bare_ws.py (websockets' own server, no deflate, greets and holds); the peer is bench/relay.py (the same
server with a LISTEN connection and each socket filed under its user), measured the same way. Clients are child
processes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

from bench.common import Database, Row, Scale, Table, rss_kb
from bench.sockets import LIVE, Fleet
from tests.server import free_port

SETTLE = 3.0


async def per_socket_kb(
    pid: int, ws_url: str, counts: tuple[int, int], per_process: int, live: str = LIVE
) -> list[float]:
    """KB of RSS growth per socket at each count of counts (each fleet kept open until the end)."""
    await asyncio.sleep(2)
    before = rss_kb(pid)
    fleets: list[Fleet] = []
    out = []
    try:
        opened = 0
        for count in counts:
            fleet = Fleet(ws_url, [uuid.uuid4() for _ in range(count - opened)], per_process, live=live)
            fleets.append(fleet)
            await asyncio.to_thread(fleet.wait_open)
            opened = count
            await asyncio.sleep(SETTLE)
            out.append((rss_kb(pid) - before) / count)
    finally:
        for fleet in fleets:
            fleet.close()
    return out


def start_peer(module: str, log: Path, *args: str, listen: bool = True) -> tuple[subprocess.Popen[str], int]:
    """`python -m module *args PORT` on a free port (without PORT when not listen), once it prints "ready";
    (the process, its port or 0)."""
    port = free_port() if listen else 0
    argv = [sys.executable, "-m", module, *args, *([str(port)] if listen else [])]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                            stderr=log.open("ab"), text=True, cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"{module} did not start (see {log})")
    return proc, port


def stop_peer(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(10)


async def run(db: Database, scale: Scale, table: Table) -> None:
    server = db.server()
    assert server.proc is not None
    notifyd = await per_socket_kb(server.proc.pid, server.ws_url, scale.memory_sockets, scale.sockets_per_process)
    server.stop()
    bare_proc, port = start_peer("bench.bare_ws", db.cluster.log_dir / "bare_ws.log")
    try:
        bare = await per_socket_kb(bare_proc.pid, f"ws://127.0.0.1:{port}/", scale.memory_sockets,
                                   scale.sockets_per_process, live="authenticated")  # fmt: skip
    finally:
        stop_peer(bare_proc)
    relay_proc, port = start_peer("bench.relay", db.cluster.log_dir / "relay.log", db.owner_url)
    try:
        relay = await per_socket_kb(relay_proc.pid, f"ws://127.0.0.1:{port}/", scale.memory_sockets,
                                    scale.sockets_per_process, live="authenticated")  # fmt: skip
    finally:
        stop_peer(relay_proc)
    for count, kb, floor, peer in zip(scale.memory_sockets, notifyd, bare, relay, strict=True):
        # The target's count (or the most the open files limit lets one process hold, which the figure names);
        # a smaller run prints its figure without a verdict.
        last = count >= 20_000 or (scale.memory_cap is not None and count == scale.memory_cap)
        capped = " (capped: open files limit)" if scale.memory_cap is not None and count == scale.memory_cap else ""
        table.add(
            Row("4", f"RSS per idle socket at {count:,} sockets{capped}", kb, floor, "KB",
                target="≤ 20 KB at 20,000" if last else "—", met=kb <= 20 if last else None),
            Row("4", f"  the same vs the LISTEN → websockets relay (bench/relay.py) at {count:,}", kb, peer, "KB"),
        )  # fmt: skip
