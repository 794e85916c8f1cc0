"""CORS: pages on the origins of CORS_ALLOWED_ORIGINS may call the API from the browser; nobody else, and by
default nobody (no CORS headers at all). Bearer tokens, never cookies: credentials are not allowed."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from notifyd.core.config import Settings
from tests.server import ServerProcess, make_token

APP, OTHER_APP = "https://app.example.com", "http://localhost:3000"
STRANGER = "https://evil.example.net"
LIST = "/api/v1/notifications"


def preflight(base: str, origin: str, method: str = "PATCH", headers: str = "authorization, idempotency-key") -> Any:
    return httpx.options(
        f"{base}{LIST}/{uuid.uuid4()}/read",
        headers={"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
    )


def listing(base: str, origin: str) -> httpx.Response:
    auth = {"Authorization": f"Bearer {make_token(uuid.uuid4())}", "Origin": origin}
    return httpx.get(f"{base}{LIST}", headers=auth)


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def test_allowed_origins_get_cors_headers_and_others_none(own_server: Any) -> None:
    server = own_server(CORS_ALLOWED_ORIGINS=f" {APP}, {OTHER_APP} ")
    for origin in (APP, OTHER_APP):
        answer = preflight(server.url, origin)
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == origin
        allowed_methods = {m.strip() for m in answer.headers["access-control-allow-methods"].split(",")}
        assert allowed_methods == {"GET", "POST", "PUT", "PATCH", "DELETE"}
        allowed_headers = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "idempotency-key", "last-event-id"} <= allowed_headers
        assert "access-control-allow-credentials" not in answer.headers

        simple = listing(server.url, origin)
        assert simple.status_code == 200 and simple.headers["access-control-allow-origin"] == origin
        assert simple.headers["access-control-expose-headers"] == "Retry-After"
        assert "access-control-allow-credentials" not in simple.headers
        assert "origin" in simple.headers["vary"].lower()

    # A header the API does not take is refused in the preflight.
    assert preflight(server.url, APP, headers="x-custom").status_code == 400

    refused = preflight(server.url, STRANGER)
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    answer = listing(server.url, STRANGER)
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
    # Answers stay the same without an Origin (servers, curl).
    assert cors_headers(httpx.get(f"{server.url}/readyz")) == {}

    # The static files are for every origin, as they always were.
    script = httpx.get(f"{server.url}/static/notifyd-client.d.ts", headers={"Origin": STRANGER})
    assert script.status_code == 200 and script.headers["access-control-allow-origin"] == "*"


def test_by_default_there_are_no_cors_headers(server: ServerProcess) -> None:
    answer = preflight(server.url, APP)
    assert answer.status_code == 405 and cors_headers(answer) == {}
    simple = listing(server.url, APP)
    assert simple.status_code == 200 and cors_headers(simple) == {}


@pytest.mark.parametrize("value", ["*", "app.example.com", "https://app.example.com/", "https://a.example/path"])
def test_cors_allowed_origins_takes_exact_origins_only(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", f"{APP},{value}")
    with pytest.raises(SystemExit, match="CORS_ALLOWED_ORIGINS takes origins such as https://app.example.com"):
        Settings.from_env("postgresql://unused", "secret")


def test_cors_allowed_origins_default_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORS_ALLOWED_ORIGINS", raising=False)
    assert Settings.from_env("postgresql://unused", "secret").cors_allowed_origins == ()
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", f"{APP}, {OTHER_APP},")
    assert Settings.from_env("postgresql://unused", "secret").cors_allowed_origins == (APP, OTHER_APP)
