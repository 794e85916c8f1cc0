"""The memory floor: a bare `websockets` server that greets each socket and then only holds it.

python -m bench.bare_ws PORT     # prints "ready" once listening on 127.0.0.1:PORT
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve


async def hold(ws: ServerConnection) -> None:
    await ws.send('{"type": "authenticated"}')
    await ws.wait_closed()


async def main(port: int) -> None:
    # As notifyd's uvicorn: no per-message deflate, no pings during a measurement.
    async with serve(hold, "127.0.0.1", port, compression=None, ping_interval=None, max_size=4096):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
