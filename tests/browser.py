"""Playwright driving Debian's Chromium against a real notifyd: fixtures and page helpers for browser tests.

Pages are served on notifyd's own origin (Playwright answers one made-up path with the test's HTML), so
the modules, the REST routes, the WebSocket and the service worker are the server's real ones.
Screenshots go to ARTIFACTS_DIR (default test-artifacts/), which CI keeps.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tools import missing

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR", Path(__file__).resolve().parent.parent / "test-artifacts"))
PAGE_PATH = "/__test__/page.html"


@pytest.fixture(scope="module")
def browser(postgresql_noproc: Any) -> Iterator[Any]:
    """One Chromium per test module (sync Playwright: browser tests are plain functions, not coroutines).

    After the database template: preparing it runs asyncio.run(), which sync Playwright's loop forbids.
    """
    if not Path(CHROMIUM).exists():
        missing(
            f"CI needs Debian's chromium at {CHROMIUM}: run scripts/setup.sh as root",
            "Debian's chromium is not installed (scripts/setup.sh installs it when run as root)",
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile per test (its own storage, service workers and permissions).

    local-network-access: Chromium counts a page Playwright answers as public and blocks its WebSocket to
    127.0.0.1 (fetch and EventSource still pass, so a client would silently fall back to SSE).
    """
    # bypass_csp: Playwright's wait_for_function evaluates its expressions in the page, which a strict
    # Content-Security-Policy (the demo's) forbids.
    made = browser.new_context(
        viewport={"width": 1200, "height": 800}, permissions=["local-network-access"], bypass_csp=True
    )
    yield made
    made.close()


def page_html(body: str, *, head: str = "") -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>App</title>'
        f"{head}</head><body>{body}</body></html>"
    )


def open_page(context: Any, base_url: str, body: str, *, head: str = "", path: str = PAGE_PATH) -> Any:
    """A new tab showing `body` at base_url + path, on notifyd's origin; console errors fail loudly in tests."""
    html = page_html(body, head=head)

    def answer(route: Any) -> None:
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)

    context.route(f"{base_url}{path}*", answer)
    page = context.new_page()
    page.errors = []  # uncaught exceptions of the page, for assertions
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(f"{base_url}{path}")
    return page


def screenshot(page: Any, name: str, **options: Any) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), **options)
    return path
