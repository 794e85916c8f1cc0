"""notifyd: user notifications where PostgreSQL does the work."""

from __future__ import annotations

__version__ = "0.1.0"
