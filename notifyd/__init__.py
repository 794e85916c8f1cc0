"""notifyd: user notifications where PostgreSQL does the work."""

from __future__ import annotations

from importlib import metadata

# One version, pyproject.toml's, as the installed package's metadata states it.
__version__ = metadata.version("notifyd")
