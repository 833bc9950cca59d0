"""One shared Chromium per worker process, a fresh context per job whose every connection goes through
an egress proxy (agxnt.web.proxy) holding that job's policy.

Playwright objects belong to the event loop that created them, and a workflow engine may give every
run its own loop; so the browser lives on a loop thread of its own, and callers hand it the
coroutines that touch pages with :meth:`BrowserPool.call`.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from cxmpute.settings import Settings

from agxnt.errors import AgentError
from agxnt.web.egress import EgressPolicy
from agxnt.web.proxy import EgressProxy

log = logging.getLogger("cxmpute.agxnt.web.browser")

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    # no speculative DNS lookups or preconnects: nothing should leave the browser that a page did not ask for
    "--dns-prefetch-disable", "--disable-features=NetworkPrediction",
]
VIEWPORT = {"width": 1024, "height": 768}


T = TypeVar("T")


@dataclass
class BrowserJob:
    context: BrowserContext
    proxy: EgressProxy

    @property
    def blocked(self) -> list[str]:
        """URLs the page tried to reach and the egress policy refused."""
        return self.proxy.blocked


@dataclass
class _Running:
    playwright: Playwright
    browser: Browser


class BrowserPool:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_lock = threading.Lock()
        self._launch_lock: asyncio.Lock | None = None
        self._running: _Running | None = None

    def _browser_loop(self) -> asyncio.AbstractEventLoop:
        with self._thread_lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="cxmpute-browser", daemon=True).start()
                self._loop = loop
            return self._loop

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine that touches the browser on the browser's loop and await its result here."""
        loop = self._browser_loop()
        try:
            if asyncio.get_running_loop() is loop:
                return await coro
        except RuntimeError:
            pass
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    async def _browser(self, settings: Settings) -> Browser:
        if self._launch_lock is None:
            self._launch_lock = asyncio.Lock()
        async with self._launch_lock:
            if self._running is None or not self._running.browser.is_connected():
                self._running = await self._launch(settings)
            return self._running.browser

    async def _launch(self, settings: Settings) -> _Running:
        playwright = await async_playwright().start()
        try:
            browser = await playwright.chromium.launch(
                executable_path=settings.browser_executable, headless=True, args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            await playwright.stop()
            raise AgentError(f"cannot start the browser at {settings.browser_executable}: {exc.message}",
                             status_code=503) from None
        log.info("started Chromium %s", browser.version)
        return _Running(playwright, browser)

    async def _open(self, settings: Settings, policy: EgressPolicy) -> BrowserJob:
        browser = await self._browser(settings)
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
        return BrowserJob(context, proxy)

    async def _close_job(self, job: BrowserJob) -> None:
        try:
            await job.context.close()
        except PlaywrightError:  # the browser may already be gone; the context went with it
            log.debug("browser context close failed", exc_info=True)
        await job.proxy.close()

    @asynccontextmanager
    async def context(self, settings: Settings, policy: EgressPolicy) -> AsyncIterator[BrowserJob]:
        """A fresh, isolated browser context for one job; closed when the job ends. Touch it through call()."""
        job = await self.call(self._open(settings, policy))
        try:
            yield job
        finally:
            await asyncio.shield(self.call(self._close_job(job)))

    async def _stop(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            try:
                await running.browser.close()
            finally:
                await running.playwright.stop()

    def shutdown(self, timeout: float = 15.0) -> None:
        """Close the browser and stop its loop (worker exit, end of a test session)."""
        with self._thread_lock:
            loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)


browsers = BrowserPool()
atexit.register(browsers.shutdown)
