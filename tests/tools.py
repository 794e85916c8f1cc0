"""Tools the tests run that pip does not install (Chromium, TypeScript, promtool, pgbouncer, systemd-analyze)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(ci_needs: str, skip_reason: str) -> NoReturn:
    """A tool a test needs is not installed: a failure under CI, whose set-up installs every one; a skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(ci_needs)
    pytest.skip(skip_reason)
