"""Request heads capped while they are read: MAX_HEADER_BYTES of request line and headers, MAX_HEADER_COUNT fields.

Why a subclass of uvicorn's httptools protocol, and not h11 or a middleware: httptools (what
uvicorn[standard] picks) has no limit, and it joins each header's pieces in Python as they arrive,
so a 16 MB Authorization header is held, and copied again on every read, before any ASGI code runs:
a middleware sees the headers only after that. uvicorn's h11 protocol does take a limit
(h11_max_incomplete_event_size), but it parses in pure Python at several times the CPU per request
(`python -m bench --only headers` prints both) and answers its limit with a plain-text 400. Here the
parser is fed no more than what is left of the head's allowance; once that is used up the answer is
431 with the JSON error, without reading the rest.

A head is the request line with its headers, and also a chunked body's trailers (header fields too,
joined the same way). Bytes that arrive in the same read as the end of the previous message are
counted from the next read on, so a head holds at most MAX_HEADER_BYTES plus one socket read
(256 KiB) in memory. A WebSocket handshake is an HTTP request of this protocol until its upgrade, so
it is capped the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from notifyd.http.errors import CODES
from notifyd.http.hygiene import EVERY_RESPONSE

log = logging.getLogger("notifyd.headlimit")

HEADERS_TOO_LARGE = 431
HEAD_TOO_LARGE = "the request line and headers are larger than {limit} bytes (MAX_HEADER_BYTES)"
TOO_MANY_HEADERS = "the request has more than {limit} header fields (MAX_HEADER_COUNT)"
# After the 431 what the client still sends is read and dropped for this long, then the connection is
# closed: closing at once, with its request unread, would reset the connection and lose the answer.
REFUSED_LINGER = 5.0


class _TooManyHeaders(Exception):
    """Raised in the parser's header callback: the only way to stop httptools mid-head."""


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a byte and a field limit on every request head (see the module)."""

    max_head_bytes = 16 * 1024
    max_header_count = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Whether what arrives now belongs to a head, and how much of that head has arrived.
        self.head_open = True
        self.head_bytes = 0
        self.header_count = 0
        self.upgraded = False
        # After a refusal: input is dropped; a 431 waiting for the answer before it (pipelining); the timer
        # that closes the connection once the 431 is out.
        self.dropping = False
        self.deferred: str | None = None
        self.linger: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self.dropping:
            return
        while self.head_open:
            room = self.max_head_bytes - self.head_bytes
            if len(data) <= room:
                self.head_bytes += len(data)
                break
            # More than the head may still take: the parser gets what it may, the rest only if the head ended.
            self.head_bytes += room
            super().data_received(data[:room])
            data = data[room:]
            if self.dropping or self.upgraded or self.transport.is_closing():
                return
            if self.head_open:
                self._refuse(HEAD_TOO_LARGE.format(limit=self.max_head_bytes))
                return
        super().data_received(data)

    # -- parser callbacks: where a head ends and the next begins ------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > self.max_header_count:
            raise _TooManyHeaders
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.head_open = False
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        # The last chunk's header is followed by the trailers: a head until the chunk's data (or its end) comes.
        self.head_open, self.head_bytes = True, 0

    def on_body(self, body: bytes) -> None:
        self.head_open = False
        super().on_body(body)

    def on_chunk_complete(self) -> None:
        self.head_open = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.head_open, self.head_bytes, self.header_count = True, 0, 0

    # -- the refusal ------------------------------------------------------------------------------------

    def handle_websocket_upgrade(self) -> None:
        self.upgraded = True
        super().handle_websocket_upgrade()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every error of a parser callback with 400; too many header fields gets its 431.
        if self.header_count > self.max_header_count:
            self._refuse(TOO_MANY_HEADERS.format(limit=self.max_header_count))
        else:
            super().send_400_response(msg)

    def _refuse(self, message: str) -> None:
        log.info("refused a request head with %d: %s", HEADERS_TOO_LARGE, message)
        self.dropping = True  # the rest of the request is dropped unread
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.more_body:
                # The trailers of a chunked body, which was whole at its last chunk: the app gets it, the
                # trailers are dropped, and the connection closes after the answer.
                cycle.more_body = False
                cycle.keep_alive = False
                cycle.message_event.set()
            else:
                # A head pipelined behind an answer still being written: the 431 follows that answer.
                self.deferred = message
            return
        self._answer_431(message)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.deferred is not None and not self.pipeline and not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self._answer_431(self.deferred)

    def _answer_431(self, message: str) -> None:
        body = json.dumps({"error": {"code": CODES[HEADERS_TOO_LARGE], "message": message}}).encode()
        head = [STATUS_LINE[HEADERS_TOO_LARGE]]
        headers = [
            *self.server_state.default_headers,
            *((name.encode(), value.encode()) for name, value in EVERY_RESPONSE.items()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        head += [b"%s: %s\r\n" % header for header in headers]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self.linger = self.loop.call_later(REFUSED_LINGER, self.transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.linger is not None:
            self.linger.cancel()
        super().connection_lost(exc)


def head_limited(max_head_bytes: int, max_header_count: int) -> type[HeadLimitedProtocol]:
    """The protocol class for uvicorn.Config(http=...) with these limits."""
    return type(
        "HeadLimitedProtocol",
        (HeadLimitedProtocol,),
        {"max_head_bytes": max_head_bytes, "max_header_count": max_header_count},
    )
