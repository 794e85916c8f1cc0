"""Health, readiness and metrics of a running notifyd."""

from __future__ import annotations

import httpx

from tests.server import ServerProcess


def test_healthz_and_readyz(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": True, "listen": True}}


def test_metrics_are_prometheus_text(server: ServerProcess) -> None:
    body = httpx.get(f"{server.url}/metrics").text
    for name in (
        "notifyd_open_sockets",
        "notifyd_events_sent",
        "notifyd_listen_reconnects",
        "notifyd_catch_up_lag_seconds",
    ):
        assert f"# TYPE {name}" in body


def test_unknown_route_is_a_json_404(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
