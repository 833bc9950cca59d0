"""Internet (`web.internet`): search the web, or fetch one URL and extract its main text and metadata."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.web.pages import Page
from agxnt.web.search import SearchResult, search_backend
from agxnt.web.session import WebSession
from cxmpute.errors import CxmputeError


class ReadError(BaseModel):
    url: str
    message: str


async def search(ctx: AgentContext, query: str, limit: int, backend: str | None = None) -> list[SearchResult]:
    engine = search_backend(ctx.settings, backend)
    async with ctx.services.http(timeout=ctx.settings.web_timeout_seconds) as client:
        return await engine.search(client, query, limit)


async def read_pages(
    web: WebSession, urls: list[str], *, render: bool, max_chars: int, concurrency: int = 4
) -> tuple[list[Page], list[ReadError]]:
    """Fetch several pages at once, in the given order; a page that fails is reported, not fatal."""
    gate = asyncio.Semaphore(concurrency)

    async def one(url: str) -> Page | ReadError:
        async with gate:
            try:
                page = await web.page(url, render=render)
            except CxmputeError as exc:
                return ReadError(url=url, message=exc.message)
        page.text = page.text[:max_chars]
        return page

    done = await asyncio.gather(*(one(u) for u in urls))
    return [p for p in done if isinstance(p, Page)], [e for e in done if isinstance(e, ReadError)]


class InternetAgent(Agent):
    """Search the web through the configured backend, or fetch a URL and extract its main text."""

    id = "web.internet"
    name = "Internet"
    family = "Web"
    resources = Resources(network=True, browser=True, memory_mb=512)

    class Input(BaseModel):
        query: str | None = Field(None, max_length=500, description="What to search for (give this or url)")
        url: str | None = Field(None, max_length=4000, description="A page to fetch (give this or query)")
        max_results: int = Field(5, ge=1, le=20, description="Search results to return")
        read_results: int = Field(0, ge=0, le=10, description="How many top results to fetch and extract")
        render: bool = Field(False, description="Read pages in the browser, after their scripts ran")
        backend: str | None = Field(None, description="Search backend; the configured one when empty")
        max_chars: int = Field(20_000, ge=100, le=500_000, description="Text kept per page")

    class Output(BaseModel):
        results: list[SearchResult] = Field(default_factory=list, description="Search results, best first")
        page: Page | None = Field(None, description="The fetched URL's page")
        pages: list[Page] = Field(default_factory=list, description="Pages read from the top results")
        errors: list[ReadError] = Field(default_factory=list, description="Results that could not be read")

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        if bool(input.query and input.query.strip()) == bool(input.url):
            raise AgentError("give exactly one of query or url", field="query" if input.query else "url")
        async with WebSession(ctx) as web:
            if input.url:
                page = await web.page(input.url, render=input.render, field="url")
                page.text = page.text[: input.max_chars]
                return self.Output(page=page)
            results = await search(ctx, input.query.strip(), input.max_results, input.backend)
            ctx.progress(0.5, f"{len(results)} results")
            pages, errors = await read_pages(
                web, [r.url for r in results[: input.read_results]], render=input.render, max_chars=input.max_chars
            )
        return self.Output(results=results, pages=pages, errors=errors)
