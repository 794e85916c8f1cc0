"""The fan-out peer: a minimal LISTEN → `websockets` relay, the least a PostgreSQL-backed push service does.

python -m bench.relay DATABASE_URL PORT     # prints "ready" once listening on 127.0.0.1:PORT

One asyncpg connection LISTENs on CHANNEL. A socket opens with ?token=<JWT> (HS256, the test suite's
secret, checked as notifyd checks it), is greeted with {"type": "authenticated"} and is then held. A NOTIFY's
payload is the recipient's id (36 characters) followed by the message itself: the relay reads nothing from
the database and writes the message as it came to every socket of that user.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import jwt
from websockets.asyncio.server import ServerConnection, broadcast, serve

from tests.server import JWT_SECRET

CHANNEL = "bench_relay"
USER_ID_LENGTH = 36
CLOSE_UNAUTHORIZED = 4401


async def main(database_url: str, port: int) -> None:
    sockets: dict[str, set[ServerConnection]] = defaultdict(set)

    async def hold(ws: ServerConnection) -> None:
        assert ws.request is not None
        token = parse_qs(urlsplit(ws.request.path).query).get("token", [""])[0]
        try:
            user = str(jwt.decode(token, JWT_SECRET, algorithms=["HS256"])["sub"])
        except (jwt.PyJWTError, KeyError):
            await ws.close(CLOSE_UNAUTHORIZED, "invalid token")
            return
        sockets[user].add(ws)
        try:
            await ws.send('{"type": "authenticated"}')
            await ws.wait_closed()
        finally:
            sockets[user].discard(ws)
            if not sockets[user]:
                del sockets[user]

    def relay(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        user = payload[:USER_ID_LENGTH]
        if user in sockets:
            broadcast(sockets[user], payload[USER_ID_LENGTH:])

    listener = await asyncpg.connect(database_url)
    await listener.add_listener(CHANNEL, relay)
    # As notifyd's uvicorn: no per-message deflate, no pings during a measurement.
    async with serve(hold, "127.0.0.1", port, compression=None, ping_interval=None, max_size=4096):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
