"""The part every stand-in shares: a threaded HTTP server on 127.0.0.1, request recording, scripted answers.

A stand-in subclasses `StandIn` and implements `route(request) -> Response`; sockets, threads, locking,
recording and scripting live here so that the provider modules only describe the provider's behaviour.

Scripting: `Response(status, headers=..., body=..., delay=seconds)` queued for a key (an endpoint, a device
token, a recipient) replaces the provider's answer to the next request for that key; a `Response(delay=s)`
without a status means "answer as the provider normally would (and record the delivery), but only after s
seconds", which is how a client timeout on a request that did reach the provider looks.
"""

from __future__ import annotations

import abc
import json
import socket
import struct
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

from requests.structures import CaseInsensitiveDict

T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """One HTTP request as the stand-in received it (headers are case-insensitive)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: CaseInsensitiveDict[str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Response:
    """An answer; `status=None` means the provider's normal answer, given after `delay` seconds."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | str | dict[str, Any] | list[Any] | None = None
    delay: float = 0.0
    reset: bool = False  # drop the connection (RST) after `delay` instead of answering

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, dict | list):
            headers.setdefault("Content-Type", "application/json")
            return json.dumps(self.body).encode(), headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return self.body.encode(), headers
        return self.body or b"", headers


class _Server(ThreadingHTTPServer):
    # Handler threads are joined on close, so no answer from one test lands in the next one.
    daemon_threads = False

    def __init__(self, standin: StandIn, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.standin = standin


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5  # a client that announces a body and never sends it cannot hang stop()

    def _serve(self) -> None:
        self.server.standin._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests assert on `requests`, not on stderr."""


class StandIn(abc.ABC):
    """Base of the provider stand-ins: `start()`, `stop()`, `url`, `requests`, scripting, `wait_until`."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._requests: list[Request] = []
        self._scripts: dict[str, deque[Response]] = {}
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0  # chosen by the first start(), kept by later ones
        self.errors: list[str] = []  # tracebacks of stand-in bugs; the fixtures fail the test on any

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen (again, on the same port after a `stop()`: an outage keeps endpoints and URLs valid)."""
        self._stopping.clear()
        self._server = _Server(self, self._port)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=type(self).__name__, daemon=True
        )  # a short poll interval keeps stop() fast
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; clients get connection refused until `start()`. Recorded traffic stays."""
        if self._server is None or self._thread is None:
            return
        self._stopping.set()  # wakes handlers sleeping on a scripted delay
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        assert self._port, "start() the stand-in first"
        return f"http://127.0.0.1:{self._port}"

    # --- what tests read -----------------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        """Every request received so far, in arrival order (a snapshot)."""
        return self._snapshot(self._requests)

    def clear(self) -> None:
        """Forget recorded traffic (subclasses add their own records); scripts and state stay."""
        with self._changed:
            self._requests.clear()

    def unscript(self) -> None:
        """Forget the scripted answers not given yet: every later request gets the provider's normal answer."""
        with self._changed:
            self._scripts.clear()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Block until `predicate()` holds, re-checking whenever a request was handled."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{type(self).__name__}: condition not met within {timeout} s")
                self._changed.wait(left)

    @abc.abstractmethod
    def route(self, request: Request) -> Response:
        """The provider's behaviour: subclasses answer every request here."""

    # --- for subclasses ------------------------------------------------------------------------------

    def _record(self, items: list[T], item: T) -> None:
        with self._changed:
            items.append(item)
            self._changed.notify_all()

    def _snapshot(self, items: list[T]) -> list[T]:
        with self._changed:
            return list(items)

    def _queue(self, key: str, responses: Iterable[Response]) -> None:
        with self._changed:
            self._scripts.setdefault(key, deque()).extend(responses)

    def _answer(self, keys: Iterable[str], normal: Callable[[float], Response]) -> Response:
        """The next scripted response for the first key that has one, else `normal(delay)`.

        `normal` gets the delay of a status-less scripted response (0 otherwise) for providers whose
        behaviour depends on it (Resend reports a request still in progress while it lasts).
        """
        with self._changed:
            queue = next((q for k in keys if (q := self._scripts.get(k))), None)
            scripted = queue.popleft() if queue else None
        if scripted is None:
            return normal(0.0)
        if scripted.status is None:
            return replace(normal(scripted.delay), delay=scripted.delay, reset=scripted.reset)
        return scripted

    # --- the server side -----------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        split = urlsplit(handler.path)
        request = Request(
            method=handler.command,
            path=split.path,
            query=parse_qs(split.query),
            headers=CaseInsensitiveDict(handler.headers.items()),
            body=body,
            at=time.time(),
        )
        self._record(self._requests, request)
        try:
            response = self.route(request)
        except Exception:
            self._record(self.errors, traceback.format_exc())
            response = Response(500, body="stand-in bug, see .errors")
        with self._changed:
            self._changed.notify_all()
        if response.delay:
            self._stopping.wait(response.delay)
        if response.reset:
            # Linger 0: closing sends RST, as a crashed provider or a middlebox would.
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()
            handler.close_connection = True
            return
        payload, headers = response.encoded()
        try:
            handler.send_response(response.status or 200)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up during a scripted delay, as intended
