"""Web search backends, plug-ins in the ``cxmpute.search_backends`` entry-point group.

The backend and its URL and key come from settings (``CXMPUTE_SEARCH_BACKEND``, ``CXMPUTE_SEARCH_URL``,
``CXMPUTE_SEARCH_API_KEY``). The search service is the operator's choice, so its address is trusted;
the pages it returns are fetched under the egress policy like any other URL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from importlib.metadata import entry_points
from typing import Any, ClassVar
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import lxml.html
from lxml.etree import ParserError
from pydantic import BaseModel

from agxnt.errors import AgentError
from cxmpute.settings import Settings

GROUP = "cxmpute.search_backends"


class SearchResult(BaseModel):
    title: str
    url: str
    snippet: str = ""
    source: str = ""


class SearchUnavailable(AgentError):
    status_code = 502


def _plain(html_fragment: str) -> str:
    """Brave and SearxNG mark matches with <strong>; keep the words only."""
    if not html_fragment or "<" not in html_fragment:
        return html_fragment or ""
    try:
        return lxml.html.fromstring(f"<div>{html_fragment}</div>").text_content().strip()
    except (ParserError, ValueError):
        return html_fragment


class SearchBackend(ABC):
    name: ClassVar[str]
    default_url: ClassVar[str | None] = None
    needs_key: ClassVar[bool] = False

    def __init__(self, settings: Settings):
        self.base_url = (settings.search_url or self.default_url or "").rstrip("/")
        self.api_key = settings.search_api_key
        if not self.base_url:
            raise SearchUnavailable(
                f"search backend {self.name!r} needs CXMPUTE_SEARCH_URL", field="search_url", status_code=503
            )
        if self.needs_key and not self.api_key:
            raise SearchUnavailable(
                f"search backend {self.name!r} needs CXMPUTE_SEARCH_API_KEY", field="search_api_key", status_code=503
            )

    async def search(self, client: httpx.AsyncClient, query: str, limit: int) -> list[SearchResult]:
        try:
            resp = await self._request(client, query, limit)
        except httpx.HTTPError as exc:
            raise SearchUnavailable(f"{self.name} search failed: {type(exc).__name__}: {exc}", field="query") from None
        if resp.status_code >= 400:
            raise SearchUnavailable(f"{self.name} search answered HTTP {resp.status_code}", field="query")
        return self._parse(resp)[:limit]

    @abstractmethod
    async def _request(self, client: httpx.AsyncClient, query: str, limit: int) -> httpx.Response: ...

    @abstractmethod
    def _parse(self, resp: httpx.Response) -> list[SearchResult]: ...

    def _json(self, resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise SearchUnavailable(
                f"{self.name} search answered with something other than JSON", field="query"
            ) from None


class SearxngBackend(SearchBackend):
    """A SearxNG instance's JSON API (``format=json`` must be enabled on the instance)."""

    name = "searxng"

    async def _request(self, client: httpx.AsyncClient, query: str, limit: int) -> httpx.Response:
        return await client.get(f"{self.base_url}/search", params={"q": query, "format": "json", "pageno": 1})

    def _parse(self, resp: httpx.Response) -> list[SearchResult]:
        return [
            SearchResult(
                title=_plain(r.get("title", "")),
                url=r["url"],
                snippet=_plain(r.get("content", "")),
                source=r.get("engine", self.name),
            )
            for r in self._json(resp).get("results", [])
            if isinstance(r, dict) and r.get("url")
        ]


class BraveBackend(SearchBackend):
    """The Brave Search web API."""

    name = "brave"
    default_url = "https://api.search.brave.com"
    needs_key = True

    async def _request(self, client: httpx.AsyncClient, query: str, limit: int) -> httpx.Response:
        return await client.get(
            f"{self.base_url}/res/v1/web/search",
            params={"q": query, "count": min(limit, 20)},
            headers={"Accept": "application/json", "X-Subscription-Token": self.api_key or ""},
        )

    def _parse(self, resp: httpx.Response) -> list[SearchResult]:
        results = (self._json(resp).get("web") or {}).get("results", [])
        return [
            SearchResult(
                title=_plain(r.get("title", "")),
                url=r["url"],
                snippet=_plain(r.get("description", "")),
                source=self.name,
            )
            for r in results
            if isinstance(r, dict) and r.get("url")
        ]


class DuckDuckGoBackend(SearchBackend):
    """DuckDuckGo's HTML results page (no key); result links arrive wrapped in a ``/l/?uddg=`` redirect."""

    name = "duckduckgo"
    default_url = "https://html.duckduckgo.com"

    async def _request(self, client: httpx.AsyncClient, query: str, limit: int) -> httpx.Response:
        return await client.post(f"{self.base_url}/html/", data={"q": query, "b": ""})

    def _parse(self, resp: httpx.Response) -> list[SearchResult]:
        try:
            doc = lxml.html.fromstring(resp.text)
        except (ParserError, ValueError):
            return []
        results = []
        for node in doc.xpath("//div[contains(concat(' ', normalize-space(@class), ' '), ' result ')]"):
            if "result--ad" in (node.get("class") or ""):
                continue
            anchors = node.xpath(".//a[contains(@class, 'result__a')]")
            if not anchors:
                continue
            url = self._target(anchors[0].get("href", ""))
            if not url:
                continue
            snippet = node.xpath(".//*[contains(@class, 'result__snippet')]")
            results.append(
                SearchResult(
                    title=anchors[0].text_content().strip(),
                    url=url,
                    snippet=snippet[0].text_content().strip() if snippet else "",
                    source=self.name,
                )
            )
        return results

    def _target(self, href: str) -> str | None:
        absolute = urljoin(self.base_url + "/", href)
        parts = urlsplit(absolute)
        wrapped = parse_qs(parts.query).get("uddg")
        if parts.path.startswith("/l/") and wrapped:
            return wrapped[0]
        return absolute if parts.scheme in ("http", "https") else None


def backend_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def search_backend(settings: Settings, name: str | None = None) -> SearchBackend:
    """The configured backend (or ``name``), loaded from the entry-point group."""
    wanted = name or settings.search_backend
    for ep in entry_points(group=GROUP):
        if ep.name == wanted:
            return ep.load()(settings)
    raise AgentError(f"unknown search backend {wanted!r} (installed: {', '.join(backend_names())})", field="backend")
