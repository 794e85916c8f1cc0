"""The settings of the notifyd process, read from the environment (names from seed 001 §4.2)."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"notifyd: {name} must be a whole number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    database_url: str
    jwt_secret: str
    jwt_audience: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    ws_heartbeat_interval: int = 30
    ws_max_connections: int = 10_000
    public_base_url: str = "http://127.0.0.1:8000"
    # Seconds of clock skew tolerated on exp/nbf/iat.
    jwt_leeway: int = 30

    @classmethod
    def from_env(cls, database_url: str | None = None, jwt_secret: str | None = None) -> Settings:
        """The settings of the environment; `dev` passes the database and secret it made itself."""
        url = database_url or os.environ.get("DATABASE_URL")
        if not url:
            raise SystemExit("notifyd: DATABASE_URL is not set")
        secret = jwt_secret or os.environ.get("JWT_SECRET")
        if not secret:
            raise SystemExit("notifyd: JWT_SECRET is not set")
        host = os.environ.get("NOTIFYD_HOST", "127.0.0.1")
        port = _int("NOTIFYD_PORT", 8000)
        return cls(
            database_url=url,
            jwt_secret=secret,
            jwt_audience=os.environ.get("JWT_AUDIENCE") or None,
            host=host,
            port=port,
            ws_heartbeat_interval=_int("WS_HEARTBEAT_INTERVAL", 30),
            ws_max_connections=_int("WS_MAX_CONNECTIONS", 10_000),
            public_base_url=os.environ.get("PUBLIC_BASE_URL", f"http://{host}:{port}"),
        )
