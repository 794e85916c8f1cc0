"""Limits at the edge, over real uvicorn: request heads (431, memory flat), seq numbers out of range in the
WebSocket and SSE protocol (INVALID_MESSAGE with the socket kept, or 422), and open sessions per user (4008 / 429)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from notifyd.core.config import Settings
from notifyd.realtime.session import BAD_AFTER, SEQ_MAX, parse_after
from tests.server import ServerProcess, make_token
from tests.test_realtime import closed_with, quiet, recv, settle, ws_for
from tests.test_sse import PATH as STREAM
from tests.test_sse import Sse

LIMIT = 16 * 1024  # MAX_HEADER_BYTES' default
TOKEN = make_token(uuid.uuid4())


# --- a raw HTTP/1.1 client: heads exactly as big as a test wants them -------------------------------------------


def head(target: str = "/healthz", fields: list[tuple[str, str]] | None = None, size: int | None = None) -> bytes:
    """A GET head; with `size`, an X-Pad field makes the whole head (blank line included) exactly that long."""
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *(f"{n}: {v}" for n, v in fields or [])]
    text = "\r\n".join(lines) + "\r\n\r\n"
    if size is not None:
        pad = size - len(text) - len("X-Pad: \r\n")
        assert pad >= 0
        text = "\r\n".join([*lines, f"X-Pad: {'p' * pad}"]) + "\r\n\r\n"
        assert len(text) == size
    return text.encode()


def exchange(port: int, pieces: list[bytes], timeout: float = 20, pause: float = 0) -> bytes:
    """Sends the pieces (`pause` s apart; stopping if the server closes), then reads until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received.append(chunk)
    return b"".join(received)


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The answers in a byte stream (each with a Content-Length, as notifyd's JSON answers have)."""
    out = []
    while raw:
        top, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *lines = top.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers["content-length"])
        out.append((int(status_line.split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return out


def assert_431(answer: tuple[int, dict[str, str], bytes], setting: str) -> None:
    status, headers, body = answer
    assert status == 431, (status, body)
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"
    error = json.loads(body)["error"]
    assert error["code"] == "HEADERS_TOO_LARGE" and setting in error["message"], error


def assert_no_errors(proc: ServerProcess) -> None:
    log = proc.log()
    assert " ERROR " not in log and "Traceback" not in log, log[-3000:]


def rss_kb(proc: ServerProcess) -> int:
    assert proc.proc is not None
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --- request heads ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param([head(fields=[("Authorization", "Bearer " + "a" * 1024 * 1024)])], id="1MB-authorization"),
        pytest.param([head(size=LIMIT + 1)], id="one-byte-over"),
        pytest.param([head(fields=[(f"X-Field-{i}", "v" * 500) for i in range(40)])], id="40-fields-of-500-bytes"),
        pytest.param([head(target="/healthz?q=" + "q" * 20_000)], id="20KB-request-line"),
        pytest.param(
            [b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Drip: ", *[b"d" * 1024] * 24], id="dripped-in-1KB-writes"
        ),
        pytest.param([head(fields=[("Cookie", "c=" + "k" * 100_000)])[:-4]], id="never-ending-head"),
    ],
)
def test_a_head_over_max_header_bytes_is_431_with_the_json_error(server: ServerProcess, pieces: list[bytes]) -> None:
    [answer] = responses(exchange(server.port, pieces))
    assert_431(answer, "MAX_HEADER_BYTES")
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert_no_errors(server)


def test_more_than_max_header_count_fields_is_431_and_the_limit_itself_is_served(server: ServerProcess) -> None:
    # Host and Connection are two fields: 98 more make 100.
    at_limit = head(fields=[("Connection", "close"), *((f"X-F{i}", "1") for i in range(98))])
    [(status, _, _)] = responses(exchange(server.port, [at_limit]))
    assert status == 200
    for count in (99, 100, 1000):
        [answer] = responses(
            exchange(server.port, [head(fields=[("Connection", "close")] + [(f"X-F{i}", "1") for i in range(count)])])
        )
        assert_431(answer, "MAX_HEADER_COUNT")
    assert_no_errors(server)


def test_a_head_of_exactly_max_header_bytes_is_served(server: ServerProcess) -> None:
    for size in (LIMIT, LIMIT - 1, 12_000):
        [(status, _, body)] = responses(exchange(server.port, [head(fields=[("Connection", "close")], size=size)]))
        assert status == 200 and json.loads(body) == {"status": "ok"}, size


def test_a_keep_alive_connection_is_served_then_refused_then_closed(server: ServerProcess) -> None:
    ok = head()
    big = head(fields=[("Authorization", "Bearer " + "a" * 40_000)])
    first, second = responses(exchange(server.port, [ok + big]))
    assert first[0] == 200
    assert_431(second, "MAX_HEADER_BYTES")
    # Sent as two writes, after the first answer came back: the same.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(ok)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(big)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    [answer] = responses(raw)
    assert_431(answer, "MAX_HEADER_BYTES")


def test_an_ordinary_client_reads_the_431_of_a_16MB_header(server: ServerProcess) -> None:
    # The rest of the request is read and dropped, so the client finishes sending and gets the answer.
    answer = httpx.get(f"{server.url}/api/v1/notifications", headers={"Authorization": "Bearer " + "a" * 16 * 2**20})
    assert answer.status_code == 431
    assert answer.json()["error"]["code"] == "HEADERS_TOO_LARGE"


async def test_a_websocket_handshake_over_the_limit_is_431(server: ServerProcess) -> None:
    user = uuid.uuid4()
    for url, extra in [
        (f"{server.ws_url}?token={make_token(user)}", {"X-Pad": "p" * 20_000}),
        (f"{server.ws_url}?token={'t' * 20_000}", {}),
        (f"{server.ws_url}?token={make_token(user)}", {f"X-F{i}": "1" for i in range(120)}),
    ]:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers=extra, compression=None):
                pass
        assert refused.value.response.status_code == 431
        assert json.loads(refused.value.response.body or b"")["error"]["code"] == "HEADERS_TOO_LARGE"
    # A handshake with a big but allowed head is served (websockets' own limit is 8 KiB per line).
    async with ws_for(server, user, additional_headers={"X-Pad": "p" * 7000}) as ws:
        await settle(ws)
    assert_no_errors(server)


def test_chunked_trailers_over_the_limit_are_dropped_and_the_body_is_served(
    server: ServerProcess, server_owner_url: str
) -> None:
    title = f"chunked {uuid.uuid4()}"
    body = json.dumps({"user_id": str(uuid.uuid4()), "type": "task", "title": title}).encode()
    start = (
        f"POST /api/v1/notifications HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        f"Authorization: Bearer {make_token('edge', role='service')}\r\nContent-Type: application/json\r\n\r\n"
        f"{len(body):x}\r\n"
    ).encode()
    # The trailer comes in reads of its own (0.05 s apart), as a slow client would send it.
    pieces = [start + body + b"\r\n0\r\nX-Trailer: ", *[b"t" * 8192] * 40, b"\r\n\r\n"]
    [(status, headers, answer)] = responses(exchange(server.port, pieces, pause=0.05))
    assert status == 202 and headers["connection"] == "close", answer
    with psycopg.connect(server_owner_url) as conn:
        assert conn.execute("SELECT count(*) FROM notify.notifications WHERE title = %s", (title,)).fetchone() == (1,)
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert_no_errors(server)


def test_oversized_heads_leave_memory_flat(own_server: Any) -> None:
    proc: ServerProcess = own_server()
    big = head(fields=[("Authorization", "Bearer " + "a" * 16 * 2**20)])
    # Warm up: the first refusals allocate what every later one reuses.
    assert_431(responses(exchange(proc.port, [big]))[0], "MAX_HEADER_BYTES")
    time.sleep(0.5)
    before = rss_kb(proc)
    answers: list[bytes] = []
    peak = before
    attacking = True

    def sample() -> None:  # the peak: what the heads cost while they are read (freed buffers go back at once)
        nonlocal peak
        while attacking:
            peak = max(peak, rss_kb(proc))
            time.sleep(0.005)

    def attack() -> None:
        answers.append(exchange(proc.port, [big]))

    sampler = threading.Thread(target=sample)
    sampler.start()
    for _ in range(3):
        threads = [threading.Thread(target=attack) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    attacking = False
    sampler.join()
    assert len(answers) == 12
    for raw in answers:
        assert_431(responses(raw)[0], "MAX_HEADER_BYTES")
    # Without the limit the peak was ~115 MB above the start (measured: 101 -> 216 MB); the slack is generous.
    assert peak - before < 16 * 1024, f"RSS {before} KB, peak {peak} KB during the requests"
    assert httpx.get(f"{proc.url}/healthz").status_code == 200
    assert_no_errors(proc)


def test_max_header_bytes_and_count_are_settings(own_server: Any) -> None:
    proc: ServerProcess = own_server(MAX_HEADER_BYTES="4096", MAX_HEADER_COUNT="10")
    [answer] = responses(exchange(proc.port, [head(size=4097)]))
    assert_431(answer, "MAX_HEADER_BYTES")
    assert "4096 bytes" in json.loads(answer[2])["error"]["message"]
    [answer] = responses(exchange(proc.port, [head(fields=[(f"X-F{i}", "1") for i in range(10)])]))
    assert_431(answer, "MAX_HEADER_COUNT")
    assert httpx.get(f"{proc.url}/healthz", headers={"X-Pad": "p" * 3000}).status_code == 200
    assert_no_errors(proc)


@pytest.mark.parametrize("name", ["MAX_HEADER_BYTES", "MAX_HEADER_COUNT", "WS_MAX_CONNECTIONS_PER_USER"])
def test_the_limits_have_defaults_and_refuse_nonsense(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused")
    monkeypatch.setenv("JWT_SECRET", "s" * 32)
    monkeypatch.delenv(name, raising=False)
    defaults = Settings.from_env()
    assert (defaults.max_header_bytes, defaults.max_header_count, defaults.ws_max_connections_per_user) == (
        16384,
        100,
        20,
    )
    for bad in ("0", "-1", "lots"):
        monkeypatch.setenv(name, bad)
        with pytest.raises(SystemExit, match=name):
            Settings.from_env()


# --- seq numbers out of range ----------------------------------------------------------------------------------

# JSON texts of `after` that are no seq and no notification id.
BAD_AFTER_JSON = [
    "99999999999999999999",
    str(SEQ_MAX + 1),
    str(2**64),
    "9" * 4000,
    "-1",
    "-9223372036854775808",
    "1e30",
    "1.5",
    "5.0",
    "-0.0",
    "NaN",
    "Infinity",
    "-Infinity",
    "true",
    "false",
    "null",
    "[1]",
    '{"seq": 1}',
    '"99999999999999999999"',
    '"-1"',
    '"1e3"',
    '" 1"',
    '"1 "',
    '"+1"',
    '"\\u00b2"',  # ² (str.isdigit says yes)
    '"\\u0661\\u0662"',  # Arabic-Indic digits
    '""',
]


def test_parse_after_takes_only_bigint_seqs_and_uuids() -> None:
    for text in BAD_AFTER_JSON:
        assert parse_after(json.loads(text)) is None, text
    assert parse_after(SEQ_MAX) == SEQ_MAX and parse_after(str(SEQ_MAX)) == SEQ_MAX
    assert parse_after(0) == 0 and parse_after("0") == 0 and parse_after("007") == 7
    nid = uuid.uuid4()
    assert parse_after(str(nid)) == str(nid)


async def test_out_of_range_numbers_in_messages_are_invalid_message_and_the_socket_stays(
    server: ServerProcess,
) -> None:
    nid = json.dumps(str(uuid.uuid4()))
    resumes = [f'{{"type": "resume", "after": {after}}}' for after in BAD_AFTER_JSON]
    messages = resumes + [
        f'{{"type": "{kind}", "notification_id": {value}}}'
        for kind in ("mark_read", "ack")
        for value in ("99999999999999999999", "1e30", "-1", "NaN", "true", "[1]")
    ] + [
        '{"type": "ping", "at": NaN}',  # NaN is no JSON anywhere
        '{"type": "ping", "at": -Infinity}',
        f'{{"type": "mark_read", "notification_id": {nid}, "n": Infinity}}',
        '{"type": 1}',
        '{"type": 1e400}',
        '{"type": true}',
        '{"type": "resume", "after": ' + "[" * 2000 + "]" * 2000 + "}",  # deeper than the parser goes
    ]  # fmt: skip
    async with ws_for(server, uuid.uuid4()) as ws:
        await settle(ws)
        for message in messages:
            await ws.send(message)
            error = await recv(ws)
            assert error["type"] == "error" and error["code"] == "INVALID_MESSAGE", (message, error)
            if message in resumes and "NaN" not in message and "Infinity" not in message:
                assert error["message"] == BAD_AFTER, message
            await asyncio.sleep(0.12)  # under the rate limit (10 a second)
        await ws.send('{"type": "ping"}')
        assert (await recv(ws))["type"] == "pong", "the socket stays usable"
        # The largest seq is a seq: nothing after it.
        await ws.send(json.dumps({"type": "resume", "after": SEQ_MAX}))
        assert await recv(ws) == {"type": "resumed", "count": 0}
    assert_no_errors(server)


@pytest.mark.parametrize("after", ["99999999999999999999", str(SEQ_MAX + 1), "-1", "1e30", "NaN", "1.5", "%C2%B2"])
async def test_an_out_of_range_after_in_the_websocket_url_is_invalid_message(server: ServerProcess, after: str) -> None:
    async with ws_for(server, uuid.uuid4(), query=f"after={after}") as ws:
        error = await recv(ws)
        assert error == {"type": "error", "code": "INVALID_MESSAGE", "message": BAD_AFTER}
        await settle(ws)
        await ws.send('{"type": "ping"}')
        assert (await recv(ws))["type"] == "pong"
    assert_no_errors(server)


async def test_the_largest_seq_in_the_websocket_url_resumes_nothing(server: ServerProcess) -> None:
    async with ws_for(server, uuid.uuid4(), query=f"after={SEQ_MAX}") as ws:
        assert await recv(ws) == {"type": "resumed", "count": 0}


@pytest.mark.parametrize("where", ["query", "last-event-id"])
@pytest.mark.parametrize("after", ["99999999999999999999", str(SEQ_MAX + 1), "-1", "1e30", "NaN", "1.5", "²", "+7"])
async def test_an_out_of_range_sse_resume_is_422(server: ServerProcess, where: str, after: str) -> None:
    params = {"token": make_token(uuid.uuid4())}
    headers: dict[str, Any] = {}
    if where == "query":
        params["after"] = after
    else:
        headers["Last-Event-ID"] = after.encode()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        answer = await client.get(STREAM, params=params, headers=headers)
    assert answer.status_code == 422
    assert answer.json() == {"error": {"code": "VALIDATION_ERROR", "message": BAD_AFTER}}
    assert_no_errors(server)


async def test_the_largest_seq_as_last_event_id_streams(server: ServerProcess) -> None:
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream("GET", STREAM, params={"token": TOKEN}, headers={"Last-Event-ID": str(SEQ_MAX)}) as response,
    ):
        assert response.status_code == 200
        sse = Sse(response)
        assert await sse.next() == {"retry": "3000"}
        assert json.loads((await sse.until("resumed"))[-1]["data"]) == {"type": "resumed", "count": 0}
        sse.reader.cancel()


# --- open sessions per user -------------------------------------------------------------------------------------


async def refused_socket(proc: ServerProcess, user: uuid.UUID) -> tuple[int | None, str, list[dict[str, Any]]]:
    async with connect(f"{proc.ws_url}?token={make_token(user)}", compression=None) as ws:
        code, events = await closed_with(ws)
        return code, ws.close_reason or "", events


def assert_refused(code: int | None, reason: str, events: list[dict[str, Any]], limit: int) -> None:
    assert code == 4008
    assert reason == f"at most {limit} open sockets and streams per user (WS_MAX_CONNECTIONS_PER_USER)"
    assert events == [{"type": "error", "code": "TOO_MANY_CONNECTIONS", "message": reason}]


async def sse_status(proc: ServerProcess, user: uuid.UUID) -> tuple[int, dict[str, str], Any]:
    async with (
        httpx.AsyncClient(base_url=proc.url, timeout=10) as client,
        client.stream("GET", STREAM, params={"token": make_token(user)}) as response,
    ):
        if response.status_code != 200:
            return response.status_code, dict(response.headers), json.loads(await response.aread())
        return 200, dict(response.headers), None


async def test_the_newest_socket_over_the_per_user_cap_is_refused_with_4008(own_server: Any) -> None:
    proc: ServerProcess = own_server(WS_MAX_CONNECTIONS_PER_USER="3")
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with ws_for(proc, alice) as first, ws_for(proc, alice), ws_for(proc, alice):
        assert_refused(*(await refused_socket(proc, alice)), limit=3)
        # An event stream counts the same: 429 with the same error code.
        status, headers, body = await sse_status(proc, alice)
        assert status == 429 and headers["retry-after"] == "30"
        assert (
            body["error"]["code"] == "TOO_MANY_CONNECTIONS"
            and "WS_MAX_CONNECTIONS_PER_USER" in body["error"]["message"]
        )
        # The open ones are untouched, and other users are not affected.
        await settle(first)
        await first.send('{"type": "ping"}')
        assert (await recv(first))["type"] == "pong"
        async with ws_for(proc, bob) as other:
            await settle(other)
    # The slots are free again once the server has seen the closes.
    await slots_free(proc, alice)
    assert_no_errors(proc)


async def test_streams_and_sockets_share_the_per_user_cap(own_server: Any) -> None:
    proc: ServerProcess = own_server(WS_MAX_CONNECTIONS_PER_USER="2")
    user = uuid.uuid4()
    async with (
        httpx.AsyncClient(base_url=proc.url, timeout=10) as client,
        client.stream("GET", STREAM, params={"token": make_token(user)}) as stream,
    ):
        assert stream.status_code == 200
        async with ws_for(proc, user) as ws:
            assert_refused(*(await refused_socket(proc, user)), limit=2)
            assert (await sse_status(proc, user))[0] == 429
            await settle(ws)
            assert await quiet(ws, 0.3) == []
    assert_no_errors(proc)


async def test_opened_at_once_exactly_the_cap_is_admitted(own_server: Any) -> None:
    proc: ServerProcess = own_server(WS_MAX_CONNECTIONS_PER_USER="3")
    user = uuid.uuid4()
    token = make_token(user)
    admitted = asyncio.Event()
    outcomes: list[Any] = []

    async def one() -> None:
        async with connect(f"{proc.ws_url}?token={token}", compression=None) as ws:
            first = await recv(ws)
            if first["type"] == "authenticated":
                outcomes.append("admitted")
                await admitted.wait()  # held open until all ten are decided
            else:
                code, _ = await closed_with(ws)
                outcomes.append((code, first["code"]))

    tasks = [asyncio.create_task(one()) for _ in range(10)]
    deadline = time.monotonic() + 15
    while len(outcomes) < 10:
        assert time.monotonic() < deadline, outcomes
        await asyncio.sleep(0.05)
    admitted.set()
    await asyncio.gather(*tasks)
    assert outcomes.count("admitted") == 3
    assert sorted(o for o in outcomes if o != "admitted") == [(4008, "TOO_MANY_CONNECTIONS")] * 7

    # Streams opened at once: the same.
    await slots_free(proc, user)
    release = asyncio.Event()
    statuses = asyncio.gather(*(held_stream(proc, user, release) for _ in range(6)))
    await asyncio.sleep(2)
    release.set()
    assert sorted(await statuses) == [200] * 3 + [429] * 3
    assert_no_errors(proc)


async def held_stream(proc: ServerProcess, user: uuid.UUID, release: asyncio.Event) -> int:
    """A stream's status; an admitted one is held open until `release`."""
    async with (
        httpx.AsyncClient(base_url=proc.url, timeout=10) as client,
        client.stream("GET", STREAM, params={"token": make_token(user)}) as response,
    ):
        if response.status_code == 200:
            await release.wait()
        return response.status_code


async def slots_free(proc: ServerProcess, user: uuid.UUID) -> None:
    """Waits until the server has seen the user's closes (a stream is admitted again)."""
    deadline = time.monotonic() + 5
    while (await sse_status(proc, user))[0] != 200:
        assert time.monotonic() < deadline, "the slots were not freed"
        await asyncio.sleep(0.1)
