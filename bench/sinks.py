"""Fast provider sinks for scenario 5 only: Resend's `POST /emails` and a Web Push service, answered cheaply.

The test suite's stand-ins (tests/standins) are thread-per-request Python servers that decrypt every push:
they top out at a few hundred requests/s, below what the worker is measured against. A sink is one uvloop
process with a minimal HTTP/1.1 parser (keep-alive, Content-Length bodies) that checks what a provider
would refuse and answers as it would:

- Resend: `Authorization: Bearer <key>` (401/403), a JSON body with from, to, subject and html or text
  (422), 200 `{"id"}`; the same Idempotency-Key answers the first id again and is counted as a repeat.
- Web Push: `Authorization: vapid t=<JWT>, k=<key>` whose ES256 signature is verified once per distinct
  token (the same token string has the same signature: a cache keyed by it checks every request's
  signature without redoing the arithmetic), aud this origin, exp within 24 h, sub mailto:/https: (403);
  TTL, Urgency, Topic, body size and aes128gcm (400/413/415); 201 with a Location. Bodies are NOT
  decrypted, except one in `decrypt_every` when the sink is given the subscriptions' (shared) private key:
  that sample must decrypt to JSON (400 otherwise).

`latency` holds each answer back that long (a provider's round trip: requests in flight, not CPU, then
bound the rate). `GET /_sink/stats` says what it saw; `GET /_sink/recorded` returns the accepted requests,
which `replay` sends again straight at the sink from a process of its own over keep-alive connections: the
sink's own ceiling, the floor of scenario 5.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import json
import multiprocessing
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, Self, cast

import http_ece
import httpx
import uvloop
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import jwt as vapid_jwt

MAX_PUSH_BODY = 4096
URGENCIES = frozenset({"very-low", "low", "normal", "high"})
TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           411: "Length Required", 413: "Payload Too Large", 415: "Unsupported Media Type",
           422: "Unprocessable Entity"}  # fmt: skip
RECORDED_LIMIT = 20_000  # accepted requests kept for the replay

Answer = tuple[int, dict[str, str], bytes]


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(status: int, body: dict[str, Any], **headers: str) -> Answer:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


class Sink(abc.ABC):
    """What both sinks share: counting, recording accepted requests, the control paths."""

    latency = 0.0  # seconds before each answer goes out: a real provider's round trip

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.counts: Counter[str] = Counter()
        self.recorded: list[tuple[bytes, bytes]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], head: bytes, body: bytes) -> Answer:
        if path == "/_sink/stats":
            return _json(200, dict(self.counts))
        if path == "/_sink/recorded":
            pairs = [[base64.b64encode(h).decode(), base64.b64encode(b).decode()] for h, b in self.recorded]
            return _json(200, {"requests": pairs})
        self.counts["requests"] += 1
        answer = self.route(method, path, headers, body)
        if answer[0] < 300:
            self.counts["accepted"] += 1
            if len(self.recorded) < RECORDED_LIMIT:
                self.recorded.append((head, body))
        else:
            self.counts[f"refused {answer[0]}"] += 1
        return answer

    @abc.abstractmethod
    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """The provider's answer to one request."""


class ResendSink(Sink):
    def __init__(self, origin: str, api_key: str) -> None:
        super().__init__(origin)
        self.api_key = api_key
        self.ids: dict[str, str] = {}

    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if method != "POST" or path != "/emails":
            return _json(404, {"statusCode": 404, "name": "not_found", "message": "no such endpoint"})
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not key:
            return _json(401, {"statusCode": 401, "name": "missing_api_key", "message": "Missing API key"})
        if key != self.api_key:
            return _json(403, {"statusCode": 403, "name": "invalid_api_key", "message": "API key is invalid"})
        try:
            params = json.loads(body)
        except ValueError:
            params = None
        if (
            not isinstance(params, dict)
            or not all(params.get(f) for f in ("from", "to", "subject"))
            or not (params.get("html") or params.get("text"))
        ):
            return _json(422, {"statusCode": 422, "name": "missing_required_field", "message": "a field is missing"})
        idempotency_key = headers.get("idempotency-key")
        if idempotency_key is not None and idempotency_key in self.ids:
            self.counts["repeats"] += 1
            return _json(200, {"id": self.ids[idempotency_key]})
        email_id = str(uuid.uuid4())
        if idempotency_key is not None:
            self.ids[idempotency_key] = email_id
        self.counts["emails"] += 1
        return _json(200, {"id": email_id})


class PushSink(Sink):
    def __init__(self, origin: str, private_key: str | None, auth: str | None, decrypt_every: int) -> None:
        super().__init__(origin)
        self.private_key = (
            ec.derive_private_key(int.from_bytes(_b64url_decode(private_key), "big"), ec.SECP256R1())
            if private_key
            else None
        )
        self.auth = _b64url_decode(auth) if auth else None
        self.decrypt_every = decrypt_every
        self.verified: dict[str, int] = {}  # JWT → its exp, once its signature and claims were checked
        self.endpoints: set[str] = set()

    def _vapid_problem(self, header: str) -> tuple[int, str] | None:
        scheme, _, rest = header.partition(" ")
        params = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
        token, key = params.get("t"), params.get("k")
        if scheme.lower() != "vapid" or not token or not key:
            return 401, "missing VAPID authorization"
        exp = self.verified.get(token)
        if exp is None:
            try:
                claims = vapid_jwt.decode(token, key)
            except InvalidSignature:
                return 403, "invalid VAPID JWT signature"
            self.counts["jwt signatures verified"] += 1
            exp, sub = claims.get("exp"), claims.get("sub")
            if claims.get("aud") != self.origin:
                return 403, f"VAPID aud must be {self.origin}"
            if not isinstance(exp, int) or exp > time.time() + 86400:
                return 403, "VAPID exp must be within 24 h"
            if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
                return 403, "VAPID sub must be mailto: or https:"
            self.verified[token] = exp
        return (403, "VAPID JWT expired") if exp <= time.time() else None

    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if method != "POST" or not path.startswith("/push/"):
            return _json(404, {"code": 404, "error": "no such subscription"})
        ttl, urgency, topic = headers.get("ttl", ""), headers.get("urgency", "normal"), headers.get("topic")
        problem = self._vapid_problem(headers.get("authorization", "")) or next(
            (
                (status, message)
                for bad, status, message in (
                    (not ttl.isdigit(), 400, "missing or invalid TTL"),
                    (urgency not in URGENCIES, 400, "invalid Urgency"),
                    (topic is not None and not TOPIC.fullmatch(topic), 400, "invalid Topic"),
                    (len(body) > MAX_PUSH_BODY, 413, "payload too large"),
                    (bool(body) and headers.get("content-encoding") != "aes128gcm", 415, "use aes128gcm"),
                )
                if bad
            ),
            None,
        )
        if problem is None and self.private_key is not None and (self.counts["requests"] - 1) % self.decrypt_every == 0:
            try:
                json.loads(http_ece.decrypt(body, private_key=self.private_key, auth_secret=self.auth,
                                            version="aes128gcm"))  # fmt: skip
                self.counts["bodies decrypted"] += 1
            except (http_ece.ECEException, InvalidTag, ValueError):
                problem = (400, "payload could not be decrypted to JSON")
        if problem is not None:
            return _json(problem[0], {"code": problem[0], "error": problem[1]})
        self.endpoints.add(path)
        self.counts["endpoints"] = len(self.endpoints)
        return 201, {"Location": f"{self.origin}/message/{secrets.token_urlsafe(16)}"}, b""


class _HttpConnection(asyncio.Protocol):
    """HTTP/1.1 server side: keep-alive, Content-Length bodies (no chunked ones: 411), answers in order."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass of asyncio's

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end])
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", ""):
                self._write(411, {}, b"", close=True)
                return
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            status, extra, payload = self.sink.handle(method, target.partition("?")[0], headers, head, body)
            close = headers.get("connection", "").lower() == "close"
            if self.sink.latency and not target.startswith("/_sink/"):
                # Equal delays fire in order: answers on one connection keep the order of its requests.
                asyncio.get_running_loop().call_later(self.sink.latency, self._write, status, extra, payload, close)
            else:
                self._write(status, extra, payload, close)
            if close:
                return

    def _write(self, status: int, headers: dict[str, str], payload: bytes, close: bool) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return  # the client gave up while a delayed answer waited
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}", f"Content-Length: {len(payload)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if close:
            lines.append("Connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        if close:
            self.transport.close()


def _serve(kind: str, latency: float, options: dict[str, Any], pipe: Connection) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        holder: list[Sink] = []
        server = await loop.create_server(lambda: _HttpConnection(holder[0]), "127.0.0.1", 0)
        origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        holder.append(ResendSink(origin, **options) if kind == "resend" else PushSink(origin, **options))
        holder[0].latency = latency
        pipe.send(origin)
        await loop.run_in_executor(None, pipe.recv)  # anything (or the parent gone) stops the sink
        server.close()

    uvloop.run(main())


class SinkProcess:
    """A sink in a process of its own (so that it shares no interpreter lock with the bench or notifyd)."""

    def __init__(self, kind: str, latency: float = 0.0, **options: Any) -> None:
        self.kind, self.latency, self.options = kind, latency, options
        self.url = ""
        self._pipe: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> Self:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(self.kind, self.latency, self.options, child), daemon=True)
        self._process.start()
        if not self._pipe.poll(30):
            raise RuntimeError(f"the {self.kind} sink did not start")
        self.url = self._pipe.recv()
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None and self._process.pid is not None
        return self._process.pid

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/_sink/stats", timeout=10).json())

    def recorded(self) -> list[tuple[bytes, bytes]]:
        pairs = httpx.get(f"{self.url}/_sink/recorded", timeout=60).json()["requests"]
        return [(base64.b64decode(h), base64.b64decode(b)) for h, b in pairs]

    def stop(self) -> None:
        if self._process is None or self._pipe is None:
            return
        self._pipe.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process = self._pipe = None


def replay(url: str, requests: list[tuple[bytes, bytes]], connections: int) -> float:
    """Requests/s of `requests` sent again to the sink over `connections` keep-alive connections, one request
    in flight on each (as the worker's clients do), from a process of its own; every answer must be < 300."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_replay, url, requests, connections).result(timeout=300)


def _replay(url: str, requests: list[tuple[bytes, bytes]], connections: int) -> float:
    host, port = url.removeprefix("http://").split(":")
    keep_alive = re.compile(rb"\r\nconnection:[^\r]*", re.IGNORECASE)
    wire = [keep_alive.sub(b"", head) + b"\r\n\r\n" + body for head, body in requests]
    statuses: list[int] = []

    async def client(next_index: Callable[[], int | None]) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while (i := next_index()) is not None:
            writer.write(wire[i])
            head = await reader.readuntil(b"\r\n\r\n")
            statuses.append(int(head.split(b" ", 2)[1]))
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
        writer.close()

    async def main() -> float:
        counter = iter(range(len(wire)))
        started = time.monotonic()
        await asyncio.gather(*(client(lambda: next(counter, None)) for _ in range(connections)))
        return len(wire) / (time.monotonic() - started)

    rate = uvloop.run(main())
    refused = [s for s in statuses if s >= 300]
    assert not refused, f"the sink refused its own replay: {refused[:5]}"
    return rate
