"""Internet Dive (`web.dive`): crawl a site breadth-first to a depth and page budget."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from pydantic import BaseModel, Field

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.web.egress import EgressDenied
from agxnt.web.pages import Page, normalize_url
from agxnt.web.session import WebSession
from cxmpute.errors import CxmputeError

ROBOTS_AGENT = "cxmpute"


class CrawledPage(BaseModel):
    url: str
    depth: int
    status: int
    title: str | None = None
    text: str = ""
    links: list[str] = Field(default_factory=list)


class Skipped(BaseModel):
    url: str
    reason: str


def origin(url: str) -> str:
    parts = urlsplit(normalize_url(url))
    return f"{parts.scheme}://{parts.netloc}"


class Robots:
    """robots.txt per origin, fetched once under the egress policy; a missing file allows everything."""

    def __init__(self, web: WebSession):
        self.web = web
        self._parsers: dict[str, RobotFileParser] = {}
        self._lock = asyncio.Lock()

    async def allows(self, url: str) -> bool:
        site = origin(url)
        async with self._lock:
            if site not in self._parsers:
                self._parsers[site] = await self._load(site)
        return self._parsers[site].can_fetch(ROBOTS_AGENT, url)

    async def _load(self, site: str) -> RobotFileParser:
        parser = RobotFileParser(f"{site}/robots.txt")
        try:
            resp, body, _ = await self.web.get_text(f"{site}/robots.txt")
        except CxmputeError:
            parser.parse([])
            return parser
        if resp.status_code in (401, 403):
            parser.disallow_all = True
        elif resp.status_code >= 400:
            parser.parse([])
        else:
            parser.parse(body.splitlines())
        return parser


class DiveAgent(Agent):
    """Crawl one site from a start URL: same-origin, robots.txt respected, each page once."""

    id = "web.dive"
    name = "Internet Dive"
    family = "Web"
    resources = Resources(network=True, browser=True, memory_mb=512)

    class Input(BaseModel):
        start_url: str = Field(..., max_length=4000, description="Where the crawl starts")
        max_depth: int = Field(2, ge=0, le=6, description="Links followed from the start page")
        max_pages: int = Field(20, ge=1, le=500, description="Pages fetched at most")
        same_origin: bool = Field(True, description="Only follow links to the start URL's scheme, host and port")
        respect_robots: bool = Field(True, description="Skip what the site's robots.txt disallows")
        render: bool = Field(False, description="Read pages in the browser, after their scripts ran")
        concurrency: int = Field(4, ge=1, le=16, description="Pages fetched at once")
        max_chars: int = Field(20_000, ge=0, le=500_000, description="Text kept per page")

    class Output(BaseModel):
        pages: list[CrawledPage] = Field(default_factory=list, description="Pages read, in crawl order")
        graph: dict[str, list[str]] = Field(default_factory=dict, description="Each page's outgoing links")
        skipped: list[Skipped] = Field(default_factory=list, description="Links not read, with why")
        unvisited: int = Field(0, description="In-scope links left when the page budget ran out")

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        async with WebSession(ctx) as web:
            await web.policy.check(input.start_url, field="start_url")
            return await Crawl(web, input, ctx).run()


class Crawl:
    def __init__(self, web: WebSession, input: DiveAgent.Input, ctx: AgentContext):
        self.web, self.input, self.ctx = web, input, ctx
        self.start = normalize_url(input.start_url)
        self.robots = Robots(web)
        self.out = DiveAgent.Output()
        self.seen: set[str] = {self.start}
        self.gate = asyncio.Semaphore(input.concurrency)
        self.start_error: AgentError | None = None

    def in_scope(self, url: str) -> bool:
        return not self.input.same_origin or origin(url) == origin(self.start)

    async def run(self) -> DiveAgent.Output:
        frontier = [self.start]
        fetched = 0
        for depth in range(self.input.max_depth + 1):
            self.ctx.check_cancelled()
            batch = frontier[: self.input.max_pages - fetched]
            left = len(frontier) - len(batch)
            fetched += len(batch)
            results = await asyncio.gather(*(self.visit(url, depth) for url in batch))
            frontier = [link for page in results if page is not None for link in self.follow(page, depth)]
            self.ctx.progress(fetched / self.input.max_pages, f"depth {depth}: {fetched} pages")
            if not frontier or fetched >= self.input.max_pages:
                self.out.unvisited = left + len(frontier)
                break
        if self.start_error is not None:
            raise type(self.start_error)(
                f"cannot read the start page: {self.start_error.message}",
                field="start_url",
                status_code=self.start_error.status_code,
            )
        return self.out

    async def visit(self, url: str, depth: int) -> Page | None:
        async with self.gate:
            if self.input.respect_robots and not await self.robots.allows(url):
                self.out.skipped.append(Skipped(url=url, reason="disallowed by robots.txt"))
                return None
            try:
                page = await self.web.page(url, render=self.input.render)
            except CxmputeError as exc:
                if url == self.start:
                    self.start_error = exc
                reason = f"refused: {exc.message}" if isinstance(exc, EgressDenied) else exc.message
                self.out.skipped.append(Skipped(url=url, reason=reason))
                return None
        final = normalize_url(page.url)
        if final != url and (final in self.seen or not self.in_scope(final)):
            # a redirect onto a page already read (or off the site) is not a new page
            self.out.skipped.append(Skipped(url=url, reason=f"redirects to {page.url}"))
            return None
        self.seen.add(final)
        self.out.pages.append(
            CrawledPage(
                url=page.url,
                depth=depth,
                status=page.status,
                title=page.title,
                text=page.text[: self.input.max_chars],
                links=page.links,
            )
        )
        self.out.graph[page.url] = page.links
        return page

    def follow(self, page: Page, depth: int) -> list[str]:
        if depth >= self.input.max_depth:
            return []
        links = []
        for link in page.links:
            if link in self.seen:
                continue
            self.seen.add(link)
            if self.in_scope(link):
                links.append(link)
            else:
                self.out.skipped.append(Skipped(url=link, reason="outside the start URL's origin"))
        return links
