"""Debian's Chromium driven by Playwright's sync API, as every browser suite starts it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator:
    """A headless browser. Start one per module, not per session: while Playwright's sync API is started, the
    main thread has an event loop running, so every later test of the session that runs asyncio (an async
    test, asyncio.run) would fail."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def new_page(browser, base_url: str) -> Iterator:
    """A page in a fresh context (its own storage) at the builder's screenshot size."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1500, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        context.close()
