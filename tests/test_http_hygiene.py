"""HTTP hygiene: security headers on pages and nosniff on JSON, the request body limit, the
WebSocket Origin allow-list, and Starlette/uvicorn at versions past their known advisories."""

from __future__ import annotations

import re
import socket
import time
import tomllib
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from notifyd import dev
from notifyd.app import create_app
from notifyd.core.config import Settings
from notifyd.core.origins import websocket_origin_allowed
from tests.server import ServerProcess, make_token

ROOT = Path(__file__).resolve().parent.parent
USER = uuid.UUID("3b9d3c3e-1f57-4a38-9c55-7d3f4a9e2b61")
SERVICE = {"Authorization": f"Bearer {make_token('hygiene', role='service')}"}
API = "/api/v1/notifications"


def settings(**overrides: Any) -> Settings:
    return Settings(database_url="postgresql://unused", jwt_secret="s" * 32, **overrides)


def offline_client(s: Settings | None = None, *, dev_routes: bool = False) -> httpx.AsyncClient:
    """The app in process without its lifespan (no database): enough for pages, headers and the body limit."""
    s = s or settings()
    app = create_app(s, dev.routes(s) if dev_routes else None)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000")


def assert_page_headers(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert re.search(r"frame-ancestors 'none'", csp), csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] in ("no-referrer", "strict-origin")


# --- security headers ------------------------------------------------------------------------------------


def test_the_unsubscribe_page_has_the_security_headers(server: ServerProcess) -> None:
    for method in ("GET", "POST"):
        page = httpx.request(method, f"{server.url}/unsubscribe/not-a-token")
        assert page.status_code == 404
        assert_page_headers(page)
        assert "default-src 'none'" in page.headers["content-security-policy"]


async def test_dev_pages_have_the_security_headers() -> None:
    async with offline_client(dev_routes=True) as client:
        for path in ("/", "/dev/outbox", "/dev/outbox/no-such-email"):
            assert_page_headers(await client.get(path))
        # The demo keeps its own policy (its inline module and this origin's API), framing still refused.
        assert (await client.get("/")).headers["content-security-policy"] == dev.DEMO_CSP


async def test_an_email_in_the_dev_outbox_is_sandboxed() -> None:
    async with offline_client(dev_routes=True) as client:
        sent = await client.post(
            "/dev/resend/emails",
            json={"to": ["a@example.com"], "subject": "hi", "html": "<script>alert(1)</script>"},
            headers={"Authorization": f"Bearer {dev.OUTBOX_API_KEY}"},
        )
        page = await client.get(f"/dev/outbox/{sent.json()['id']}")
    assert_page_headers(page)
    assert page.headers["content-security-policy"].startswith("sandbox;")


def test_json_answers_and_errors_are_nosniff(server: ServerProcess) -> None:
    for answer in (
        httpx.get(f"{server.url}/openapi.json"),
        httpx.get(f"{server.url}{API}"),  # 401
        httpx.get(f"{server.url}/healthz"),
    ):
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" not in answer.headers  # pages only


# --- the request body limit ----------------------------------------------------------------------------


def error_code(answer: httpx.Response) -> str:
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return str(body["error"]["code"])


def test_a_body_over_the_limit_is_413_with_the_json_error(own_server: Any) -> None:
    proc = own_server(MAX_BODY_BYTES="2000")
    body = {"user_id": str(USER), "type": "task", "title": "x", "body": "y" * 3000}
    answer = httpx.post(f"{proc.url}{API}", json=body, headers=SERVICE)
    assert answer.status_code == 413 and error_code(answer) == "PAYLOAD_TOO_LARGE"
    assert "MAX_BODY_BYTES" in answer.json()["error"]["message"]
    # Under the limit the same route works.
    small = {"user_id": str(USER), "type": "task", "title": "x"}
    assert httpx.post(f"{proc.url}{API}", json=small, headers=SERVICE).status_code == 202
    assert "Traceback" not in proc.log()


def test_a_chunked_body_over_the_limit_is_413(own_server: Any) -> None:
    proc = own_server(MAX_BODY_BYTES="2000")

    def chunks() -> Any:
        yield b'{"user_id": "' + str(USER).encode() + b'", "type": "task", "title": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}'

    answer = httpx.post(f"{proc.url}{API}", content=chunks(), headers={**SERVICE, "Content-Type": "application/json"})
    assert answer.status_code == 413 and error_code(answer) == "PAYLOAD_TOO_LARGE"
    assert "Traceback" not in proc.log()


def test_the_limit_is_checked_before_the_body_is_read(own_server: Any) -> None:
    """A declared 1 GiB body is refused at once: the server answers without waiting for a byte of it."""
    proc = own_server()
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
        sock.sendall(
            f"POST {API} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: {SERVICE['Authorization']}\r\nContent-Length: {1 << 30}\r\n\r\n".encode()
        )
        started = time.monotonic()
        answer = b""
        while b"PAYLOAD_TOO_LARGE" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    text = answer.decode(errors="replace")
    assert text.startswith("HTTP/1.1 413") and '"PAYLOAD_TOO_LARGE"' in text, text
    assert time.monotonic() - started < 5


def test_max_body_bytes_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("JWT_SECRET", "s" * 32)
    assert Settings.from_env().max_body_bytes == 1024 * 1024
    monkeypatch.setenv("MAX_BODY_BYTES", "4096")
    assert Settings.from_env().max_body_bytes == 4096
    for bad in ("0", "-1", "lots"):
        monkeypatch.setenv("MAX_BODY_BYTES", bad)
        with pytest.raises(SystemExit, match="MAX_BODY_BYTES"):
            Settings.from_env()


async def test_the_body_limit_without_a_database() -> None:
    async with offline_client(settings(max_body_bytes=10)) as client:
        answer = await client.post(f"{API}/test", content=b"x" * 11, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and error_code(answer) == "PAYLOAD_TOO_LARGE"
    assert answer.headers["x-content-type-options"] == "nosniff"


# --- the WebSocket Origin allow-list ----------------------------------------------------------------------


def test_ws_allowed_origins_rule() -> None:
    allowed = settings(ws_allowed_origins=("https://app.example.com",), public_base_url="https://notify.example.com")
    assert websocket_origin_allowed(allowed, "https://app.example.com")
    assert websocket_origin_allowed(allowed, "HTTPS://APP.EXAMPLE.COM")
    assert websocket_origin_allowed(allowed, "https://notify.example.com")  # notifyd's own pages
    assert websocket_origin_allowed(allowed, None)  # not a browser
    for other in ("https://evil.example", "null", "http://app.example.com", "https://app.example.com:8443"):
        assert not websocket_origin_allowed(allowed, other), other
    assert websocket_origin_allowed(settings(), "https://evil.example")  # not set: any origin


def test_ws_allowed_origins_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("JWT_SECRET", "s" * 32)
    monkeypatch.setenv("WS_ALLOWED_ORIGINS", "https://a.example, https://b.example:8443")
    assert Settings.from_env().ws_allowed_origins == ("https://a.example", "https://b.example:8443")
    monkeypatch.setenv("WS_ALLOWED_ORIGINS", "a.example")
    with pytest.raises(SystemExit, match="WS_ALLOWED_ORIGINS"):
        Settings.from_env()


def test_a_websocket_from_another_origin_is_refused(own_server: Any) -> None:
    proc = own_server(WS_ALLOWED_ORIGINS="https://app.example.com")
    token = make_token(USER)
    url = f"{proc.ws_url}?token={token}"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin=Origin("https://evil.example"), open_timeout=10)
    assert refused.value.response.status_code == 403
    for origin in (Origin("https://app.example.com"), None):
        with connect(url, origin=origin, open_timeout=10) as ws:
            assert ws.recv(timeout=10)  # the session's first event: the socket is open and authenticated
    assert "Traceback" not in proc.log()


def test_a_websocket_handshake_has_a_request_id(server: ServerProcess) -> None:
    # The WebSocket is served before the HTTP middleware (notifyd.realtime.websocket): it takes the id itself.
    url = f"{server.ws_url}?token={make_token(USER)}"
    with connect(url, additional_headers={"X-Request-ID": "ws-handshake-1"}, open_timeout=10) as ws:
        assert ws.recv(timeout=10)
        assert ws.response is not None and ws.response.headers["X-Request-ID"] == "ws-handshake-1"
    with connect(url, additional_headers={"X-Request-ID": "not safe!"}, open_timeout=10) as ws:
        assert ws.response is not None and re.fullmatch(r"[0-9a-f]{32}", ws.response.headers["X-Request-ID"])
    # The session's log lines carry it, from uvicorn's own "accepted" line on.
    assert re.search(r"\[ws-handshake-1\].*WebSocket /api/v1/notifications/ws.*accepted", server.log())


# --- dependency floors ----------------------------------------------------------------------------------


def _floors() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {r.name: r for r in map(Requirement, project["dependencies"])}


@pytest.mark.parametrize(
    ("package", "fixed", "vulnerable"),
    [
        # Range-header DoS (0.49.1; 100-range cap 1.5.1), multipart DoS (0.40.0, 0.47.2), form limits (1.3.1)
        ("starlette", "1.5.1", "1.5.0"),
        ("uvicorn", "0.11.7", "0.11.6"),  # CVE-2020-7694, CVE-2020-7695
        ("h11", "0.16.0", "0.15.0"),  # CVE-2025-43859: request smuggling
    ],
)
def test_servers_are_past_their_advisories(package: str, fixed: str, vulnerable: str) -> None:
    floor = _floors()[package].specifier
    assert not floor.contains(vulnerable), f"pyproject.toml lets {package} {vulnerable} in: {floor}"
    installed = Version(version(package))
    assert installed >= Version(fixed), f"{package} {installed} is older than {fixed}"
    assert floor.contains(installed), f"{package} {installed} is outside {floor}"


def test_the_browser_modules_are_nosniff(server: ServerProcess) -> None:
    # Modules are imported cross-origin: a browser must never guess another type for them.
    modules = ("/static/notifyd-client.js", "/static/notifyd-elements.js", "/static/elements/base.js", "/notifyd-sw.js")
    for path in modules:
        answer = httpx.get(f"{server.url}{path}")
        assert answer.headers["content-type"].startswith("text/javascript")
        assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    ["/static/demo.html", "/static/elements", "/static/elements/", "/static/elements/nope.js",
     "/static/elements/..%2Fnotifyd-client.js", "/static/..%2Fbrowser.py", "/static/elements%2Fbase.js/x"],
)  # fmt: skip
def test_only_the_browser_modules_are_static(server: ServerProcess, path: str) -> None:
    """/static/{path} reaches into elements/, and only to the modules there: anything else is a plain 404."""
    answer = httpx.get(f"{server.url}{path}")
    assert (answer.status_code, answer.text) == (404, "not found")
