"""A fetched page: main text (trafilatura), metadata and outgoing links."""

from __future__ import annotations

from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html
import trafilatura
from lxml.etree import ParserError
from pydantic import BaseModel, Field


class Page(BaseModel):
    url: str = Field(..., description="Final URL, after redirects")
    status: int = 200
    content_type: str = "text/html"
    title: str | None = None
    description: str | None = None
    author: str | None = None
    date: str | None = None
    sitename: str | None = None
    text: str = Field("", description="Main text of the page")
    links: list[str] = Field(default_factory=list, description="Absolute http(s) links on the page, in order")
    truncated: bool = Field(False, description="The body was cut at the byte budget")
    rendered: bool = Field(False, description="Read from a browser after scripts ran")


def normalize_url(url: str) -> str:
    """The form used to de-duplicate URLs: no fragment, lower-case scheme and host, a path of at least '/'."""
    url, _ = urldefrag(url)
    parts = urlsplit(url)
    path = parts.path or "/"
    netloc = parts.netloc.lower()
    for scheme, port in (("http", ":80"), ("https", ":443")):
        if parts.scheme.lower() == scheme and netloc.endswith(port):
            netloc = netloc[: -len(port)]
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme.lower()}://{netloc}{path}{query}"


def extract_links(html: str, base_url: str) -> list[str]:
    try:
        doc = lxml.html.fromstring(html)
    except (ParserError, ValueError):
        return []
    base = doc.xpath("string(//base/@href)") or base_url
    seen: dict[str, None] = {}
    for href in doc.xpath("//a/@href"):
        absolute = urljoin(urljoin(base_url, base), href.strip())
        if urlsplit(absolute).scheme in ("http", "https"):
            seen.setdefault(normalize_url(absolute), None)
    return list(seen)


def _fallback_text(html: str) -> str:
    # trafilatura returns nothing for pages with no prose block (a bare table, a form); keep their visible text
    try:
        doc = lxml.html.fromstring(html)
    except (ParserError, ValueError):
        return ""
    for bad in doc.xpath("//script|//style|//noscript|//template"):
        bad.drop_tree()
    return "\n".join(line.strip() for line in doc.text_content().splitlines() if line.strip())


def page_from_html(
    html: str,
    url: str,
    *,
    status: int = 200,
    content_type: str = "text/html",
    truncated: bool = False,
    rendered: bool = False,
) -> Page:
    # dates come from the page's markup only: hunting through the prose for date-like strings doubled the
    # cost of a page and mostly found dates the text mentions, not the page's own
    doc = trafilatura.bare_extraction(
        html,
        url=url,
        with_metadata=True,
        include_tables=True,
        favor_recall=True,
        date_extraction_params={"extensive_search": False},
    )
    text = (doc.text if doc is not None else None) or _fallback_text(html)
    meta = doc if doc is not None else trafilatura.extract_metadata(html, default_url=url)
    return Page(
        url=url,
        status=status,
        content_type=content_type,
        text=text.strip(),
        title=getattr(meta, "title", None),
        description=getattr(meta, "description", None),
        author=getattr(meta, "author", None),
        date=getattr(meta, "date", None),
        sitename=getattr(meta, "sitename", None),
        links=extract_links(html, url),
        truncated=truncated,
        rendered=rendered,
    )


def page_from_text(body: str, url: str, *, status: int, content_type: str, truncated: bool) -> Page:
    """A non-HTML text response (plain text, JSON, XML) kept as it is."""
    return Page(url=url, status=status, content_type=content_type, text=body, truncated=truncated)
