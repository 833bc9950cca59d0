"""One shared Chromium per worker process, a fresh context per job whose every connection goes through
an egress proxy (agxnt.web.proxy) holding that job's policy.

Pages are untrusted, so Chromium keeps its own sandbox on (namespaces and seccomp; it needs unprivileged
user namespaces) and, when the platform runs as root, runs as ``untrusted_user`` through a launcher that
drops every privilege first. It gets no environment beyond what it needs (the platform's holds secrets),
and WebRTC may send nothing but through the proxy: its UDP (STUN, TURN, host candidates) would pass
beside the proxy and so beside the policy.

Playwright objects belong to the event loop that created them, and a workflow engine may give every
run its own loop; so the browser lives on a loop thread of its own, and callers hand it the
coroutines that touch pages with :meth:`BrowserPool.call`.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shlex
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from agxnt.errors import AgentError
from agxnt.untrusted import Identity, drop_to
from agxnt.web.egress import EgressPolicy
from agxnt.web.proxy import EgressProxy
from cxmpute.logging import get_logger
from cxmpute.settings import Settings

log = get_logger(__name__)

CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # no speculative DNS lookups or preconnects: nothing should leave the browser that a page did not ask for
    "--dns-prefetch-disable",
    "--disable-features=NetworkPrediction",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
]
# Pages get no peer connections at all: the flag above already keeps WebRTC behind the proxy, and this
# leaves no ICE gathering to rely on it for. Playwright runs it in every frame before the page's scripts.
NO_WEBRTC = """for (const name of ["RTCPeerConnection", "webkitRTCPeerConnection", "RTCIceTransport"]) {
  try { delete globalThis[name]; } catch (e) {}
}"""
_ENV_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")

# Written to <data dir>/browser/chromium when the platform runs as root; Playwright runs it in Chromium's place.
LAUNCHER = """#!/bin/sh
# Chromium as {user}, with no capabilities and its own sandbox; written by cxmpute for the web agents.
set -e
for arg do
  case "$arg" in --user-data-dir=*) profile="${{arg#--user-data-dir=}}" ;; esac
done
[ -n "$profile" ] || {{ echo "the browser profile directory is missing" >&2; exit 1; }}
chown -hR {uid}:{gid} "$profile"
export HOME="$profile" XDG_CONFIG_HOME="$profile" XDG_CACHE_HOME="$profile"
exec {setpriv} --reuid={uid} --regid={gid} --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs \
  -- {chromium} "$@"
"""
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
        user = drop_to(settings)
        executable = launcher(settings, user) if user is not None else settings.browser_executable
        playwright = await async_playwright().start()
        try:
            browser = await playwright.chromium.launch(
                executable_path=executable,
                headless=True,
                args=CHROMIUM_ARGS,
                chromium_sandbox=True,
                env={k: v for k, v in os.environ.items() if k in _ENV_KEPT},
            )
        except PlaywrightError as exc:
            await playwright.stop()
            hint = (
                " (Chromium's sandbox needs unprivileged user namespaces: allow them to this user, "
                "e.g. with a seccomp profile that permits them)"
                if "sandbox" in exc.message.lower()
                else ""
            )
            raise AgentError(
                f"cannot start the browser at {settings.browser_executable}: {exc.message}{hint}", status_code=503
            ) from None
        log.info("started Chromium %s", browser.version)
        return _Running(playwright, browser)

    async def _open(self, settings: Settings, policy: EgressPolicy) -> BrowserJob:
        browser = await self._browser(settings)
        proxy = EgressProxy(policy, settings.web_timeout_seconds)
        # "<-loopback>" stops Chromium from sending localhost past the proxy, where no policy would see it
        proxy_settings = {"server": await proxy.start(), "bypass": "<-loopback>"}
        try:
            context = await browser.new_context(
                viewport=VIEWPORT, service_workers="block", accept_downloads=False, proxy=proxy_settings
            )
        except BaseException:
            await proxy.close()
            raise
        context.set_default_timeout(settings.web_timeout_seconds * 1000)
        await context.add_init_script(NO_WEBRTC)
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


def launcher(settings: Settings, user: Identity) -> str:
    """The launcher that starts Chromium as ``user``; rewritten when the settings change it."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise AgentError(
            "setpriv (util-linux) is needed to start the browser as an unprivileged user",
            field="untrusted_user",
            status_code=503,
        )
    script = LAUNCHER.format(
        user=user.name, uid=user.uid, gid=user.gid, setpriv=setpriv, chromium=shlex.quote(settings.browser_executable)
    )
    folder = settings.data_dir / "browser"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / "chromium"
    if not path.exists() or path.read_text() != script:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".chromium-")
        with os.fdopen(fd, "w") as f:
            f.write(script)
        os.chmod(tmp, 0o700)
        os.replace(tmp, path)
    return str(path)


browsers = BrowserPool()
atexit.register(browsers.shutdown)
