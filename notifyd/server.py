"""Runs the app under uvicorn with WebSocket settings chosen for many idle sockets, tokens kept out of logs."""

from __future__ import annotations

import logging
import re

import uvicorn
from starlette.routing import BaseRoute

from notifyd.app import create_app
from notifyd.config import Settings

# Browsers can only put a WebSocket token in the query string; uvicorn logs the full path.
_TOKEN_IN_QUERY = re.compile(r"(token=)[^&\s\"]+")

# Inbound WebSocket frames are small JSON commands: anything larger is refused (close 1009).
WS_MAX_MESSAGE_BYTES = 4096


class RedactTokens(logging.Filter):
    """Replaces token=... in log records with token=[redacted]."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_QUERY.sub(r"\1[redacted]", record.msg)
        return True


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("uvicorn.access", "uvicorn.error", "notifyd"):
        logging.getLogger(name).addFilter(RedactTokens())


def config(settings: Settings, extra_routes: list[BaseRoute] | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings, extra_routes),
        host=settings.host,
        port=settings.port,
        # Measured (FIELD-NOTES): per-message deflate costs ~70 KB per idle socket.
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        ws_ping_interval=settings.ws_heartbeat_interval,
        ws_ping_timeout=settings.ws_heartbeat_interval,
        log_config=None,
        timeout_graceful_shutdown=5,
    )


def run(settings: Settings, extra_routes: list[BaseRoute] | None = None) -> None:
    configure_logging()
    uvicorn.Server(config(settings, extra_routes)).run()
