"""Internet Dive: depth and page budgets, same origin, robots.txt, de-duplication, link graph."""

from __future__ import annotations

import pytest

from agxnt.context import AgentContext
from agxnt.web.dive import DiveAgent

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_crawl_to_depth_respects_robots_and_origin(ctx: AgentContext, site: str) -> None:
    out = await DiveAgent()({"start_url": site, "max_depth": 2, "max_pages": 50}, ctx)
    urls = {p.url for p in out.pages}
    assert urls == {
        f"{site}/",
        f"{site}/about",
        f"{site}/products",
        f"{site}/js",
        f"{site}/form",
        f"{site}/table",
        f"{site}/products/gizmo",
        f"{site}/products/sprocket",
    }
    assert len(out.pages) == len(urls)  # /about and /about#team are one page
    reasons = {s.url: s.reason for s in out.skipped}
    assert reasons[f"{site}/private/secret"] == "disallowed by robots.txt"
    assert "origin" in reasons["http://offsite.invalid/page"]
    assert f"{site}/products/sprocket/spares" not in urls  # depth 3
    assert f"{site}/about" in out.graph[f"{site}/"]
    assert f"{site}/products/gizmo" in out.graph[f"{site}/products"]
    about = next(p for p in out.pages if p.url == f"{site}/about")
    assert about.depth == 1 and "founded in 1999" in about.text


async def test_page_budget_stops_the_crawl(ctx: AgentContext, site: str) -> None:
    out = await DiveAgent()({"start_url": site, "max_depth": 3, "max_pages": 3}, ctx)
    assert len(out.pages) == 3
    assert out.unvisited > 0


async def test_robots_can_be_ignored_when_asked(ctx: AgentContext, site: str) -> None:
    out = await DiveAgent()({"start_url": site, "max_depth": 1, "max_pages": 50, "respect_robots": False}, ctx)
    assert f"{site}/private/secret" in {p.url for p in out.pages}


@pytest.mark.browser
async def test_rendered_crawl_sees_script_content(ctx: AgentContext, site: str) -> None:
    out = await DiveAgent()({"start_url": f"{site}/js", "max_depth": 0, "render": True}, ctx)
    assert "secret number is 4217" in out.pages[0].text
