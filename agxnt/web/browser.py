"""One shared Chromium per worker, a fresh context per job whose every connection goes through an
egress proxy (agxnt.web.proxy) holding that job's policy.

Playwright objects belong to the event loop that created them, so the pool keeps one browser per
running loop (a worker runs one loop; tests may run several) and drops browsers whose loop is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright

from cxmpute.settings import Settings

from agxnt.errors import AgentError
from agxnt.web.egress import EgressPolicy
from agxnt.web.proxy import EgressProxy

log = logging.getLogger("cxmpute.agxnt.web.browser")

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    # Chromium must not resolve or connect on its own before the request hook has checked the host.
    "--dns-prefetch-disable", "--disable-features=NetworkPrediction",
]
VIEWPORT = {"width": 1024, "height": 768}


@dataclass
class BrowserJob:
    context: BrowserContext
    blocked: list[str]  # URLs the page tried to reach and the egress policy refused


@dataclass
class _Running:
    playwright: Playwright
    browser: Browser


class BrowserPool:
    def __init__(self) -> None:
        self._running: dict[asyncio.AbstractEventLoop, _Running] = {}
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    async def browser(self, settings: Settings) -> Browser:
        loop = asyncio.get_running_loop()
        self._forget_closed_loops()
        lock = self._locks.setdefault(loop, asyncio.Lock())
        async with lock:
            running = self._running.get(loop)
            if running is None or not running.browser.is_connected():
                running = await self._launch(settings)
                self._running[loop] = running
            return running.browser

    async def _launch(self, settings: Settings) -> _Running:
        playwright = await async_playwright().start()
        try:
            browser = await playwright.chromium.launch(
                executable_path=settings.browser_executable, headless=True, args=CHROMIUM_ARGS)
        except Exception as exc:
            await playwright.stop()
            raise AgentError(f"cannot start the browser at {settings.browser_executable}: {exc}",
                             status_code=503) from None
        log.info("started Chromium %s", browser.version)
        return _Running(playwright, browser)

    def _forget_closed_loops(self) -> None:
        for loop in [lp for lp in self._running if lp.is_closed()]:
            self._running.pop(loop, None)
            self._locks.pop(loop, None)

    @asynccontextmanager
    async def context(self, settings: Settings, policy: EgressPolicy) -> AsyncIterator[BrowserJob]:
        """A fresh, isolated browser context for one job; closed when the job ends."""
        browser = await self.browser(settings)
        proxy = EgressProxy(policy, settings.web_timeout_seconds)
        # "<-loopback>" stops Chromium from sending localhost past the proxy, where no policy would see it
        proxy_settings = {"server": await proxy.start(), "bypass": "<-loopback>"}
        try:
            context = await browser.new_context(viewport=VIEWPORT, service_workers="block", accept_downloads=False,
                                                proxy=proxy_settings)
        except BaseException:
            await proxy.close()
            raise
        context.set_default_timeout(settings.web_timeout_seconds * 1000)
        try:
            yield BrowserJob(context, proxy.blocked)
        finally:
            try:
                await context.close()
            except PlaywrightError:  # the browser may already be gone; the context went with it
                log.debug("browser context close failed", exc_info=True)
            await proxy.close()

    async def close(self) -> None:
        """Close the current loop's browser (worker shutdown, end of a test session)."""
        running = self._running.pop(asyncio.get_running_loop(), None)
        if running is not None:
            try:
                await running.browser.close()
            finally:
                await running.playwright.stop()


browsers = BrowserPool()
