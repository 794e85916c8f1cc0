"""notifyd serve under another HTTP protocol than its own, for the headers scenario's comparison.

python -m bench.http_serve MODE     # MODE: notifyd (what serve runs), httptools (uvicorn's, no head limit),
                                    # h11 (uvicorn's pure-Python parser with its head limit)
The environment is serve's (DATABASE_URL, JWT_SECRET, NOTIFYD_PORT, MAX_HEADER_BYTES, ...).
"""

from __future__ import annotations

import sys

from notifyd import server
from notifyd.core.config import Settings
from notifyd.core.requestid import configure_logging


def main(mode: str) -> None:
    settings = Settings.from_env()
    config = server.config(settings)
    if mode == "httptools":
        config.http = "httptools"
    elif mode == "h11":
        config.http = "h11"
        config.h11_max_incomplete_event_size = settings.max_header_bytes
    elif mode != "notifyd":
        raise SystemExit(f"unknown mode {mode!r}: notifyd, httptools or h11")
    configure_logging()
    server.Server(config).run()


if __name__ == "__main__":
    main(sys.argv[1])
