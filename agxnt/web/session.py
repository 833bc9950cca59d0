"""One job's access to the web: a guarded HTTP client, a browser context on demand, and budgets."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
from playwright.async_api import Error as PlaywrightError

from agxnt.context import MAX_REDIRECTS, AgentContext
from agxnt.errors import AgentError
from agxnt.web.browser import BrowserJob, browsers
from agxnt.web.egress import EgressDenied
from agxnt.web.pages import Page, normalize_url, page_from_html, page_from_text

_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
)


class FetchFailed(AgentError):
    status_code = 502


class WebSession:
    """Use as ``async with WebSession(ctx) as web:``; everything it opened is closed on exit."""

    def __init__(self, ctx: AgentContext):
        self.ctx = ctx
        self.settings = ctx.settings
        self.policy = ctx.services.egress
        self.max_bytes = ctx.settings.web_max_page_bytes
        self.timeout = ctx.settings.web_timeout_seconds
        self._stack = AsyncExitStack()
        self._browser: BrowserJob | None = None
        self.client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> WebSession:
        self.client = await self._stack.enter_async_context(self.ctx.services.http(timeout=self.timeout))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def browser(self) -> BrowserJob:
        """This job's browser context, started on first use."""
        if self._browser is None:
            self._browser = await self._stack.enter_async_context(browsers.context(self.settings, self.policy))
        return self._browser

    @property
    def blocked(self) -> list[str]:
        """URLs this job's browser tried to reach and the policy refused."""
        return self._browser.blocked if self._browser is not None else []

    def refusal(self, page_url: str, error: PlaywrightError | None = None) -> str | None:
        """Why the browser's page is not a page: it landed on (or its tunnel was cut for) a refused URL."""
        if not self.blocked:
            return None
        if error is not None and "ERR_TUNNEL_CONNECTION_FAILED" in error.message:
            return f"the browser was led to a refused address: {self.blocked[-1]}"
        landed = normalize_url(page_url) if page_url.startswith(("http://", "https://")) else page_url
        if any(normalize_url(u) == landed for u in self.blocked):
            return f"the browser was led to a refused address: {page_url}"
        return None

    async def get_text(self, url: str, field: str = "url") -> tuple[httpx.Response, str, bool]:
        """GET a URL within the byte budget: (response, body text, whether it was cut)."""
        assert self.client is not None, "use WebSession as an async context manager"
        self.policy.check_scheme(url, field)
        try:
            async with self.client.stream("GET", url) as resp:
                chunks: list[bytes] = []
                size = 0
                truncated = False
                async for chunk in resp.aiter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= self.max_bytes:
                        truncated = True
                        break
                body = b"".join(chunks)[: self.max_bytes]
        except EgressDenied as exc:
            raise EgressDenied(exc.message, field=field) from None
        except httpx.TooManyRedirects:
            raise FetchFailed(f"{url}: more than {MAX_REDIRECTS} redirects", field=field) from None
        except httpx.HTTPError as exc:
            raise FetchFailed(f"fetching {url} failed: {type(exc).__name__}: {exc}", field=field) from None
        return resp, body.decode(resp.encoding or "utf-8", errors="replace"), truncated

    async def page(self, url: str, *, render: bool = False, field: str = "url") -> Page:
        """Fetch a page and extract its main text; ``render`` reads it from the browser after scripts ran."""
        if render:
            return await self._rendered_page(url, field)
        resp, body, truncated = await self.get_text(url, field)
        if resp.status_code >= 400:
            raise FetchFailed(f"{url} answered HTTP {resp.status_code}", field=field)
        content_type = resp.headers.get("content-type", "").split(";")[0].strip().lower() or "text/html"
        final_url = str(resp.url)  # the host the caller named, after redirects; the pinned address stays inside
        if content_type in ("text/html", "application/xhtml+xml"):
            return page_from_html(
                body, final_url, status=resp.status_code, content_type=content_type, truncated=truncated
            )
        if content_type.startswith(_TEXT_TYPES):
            return page_from_text(
                body, final_url, status=resp.status_code, content_type=content_type, truncated=truncated
            )
        raise FetchFailed(f"{url} is {content_type}, not a text page", field=field, status_code=415)

    async def _rendered_page(self, url: str, field: str) -> Page:
        await self.policy.check(url, field)
        job = await self.browser()
        html, final_url, status = await browsers.call(self._render(job, url, field))
        return page_from_html(
            html[: self.max_bytes], final_url, status=status, rendered=True, truncated=len(html) > self.max_bytes
        )

    async def _render(self, job: BrowserJob, url: str, field: str) -> tuple[str, str, int]:
        """On the browser's loop: load the page, let its scripts settle, return (html, final URL, status)."""
        page = await job.context.new_page()
        try:
            try:
                response = await page.goto(url, wait_until="load", timeout=self.timeout * 1000)
                await page.wait_for_load_state("networkidle", timeout=self.timeout * 1000)
            except PlaywrightError as exc:
                if refused := self.refusal(page.url, exc):
                    raise EgressDenied(refused, field=field) from None
                raise FetchFailed(f"loading {url} in the browser failed: {exc.message}", field=field) from None
            if refused := self.refusal(page.url):
                raise EgressDenied(refused, field=field)
            status = response.status if response is not None else 200
            if status >= 400:
                raise FetchFailed(f"{url} answered HTTP {status}", field=field)
            return await page.content(), page.url, status
        finally:
            await page.close()
