"""Internet: search through each backend's wire format, fetch and extract a page."""

from __future__ import annotations

import pytest

from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.web.internet import InternetAgent
from tests.agxnt.web.conftest import make_ctx, web_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_fetch_extracts_main_text_and_metadata(ctx: AgentContext, site: str) -> None:
    out = await InternetAgent()({"url": f"{site}/about"}, ctx)
    assert out.page.title == "About Acme"
    assert "founded in 1999 in Lisbon" in out.page.text
    assert f"{site}/products" in out.page.links
    assert out.results == []


@pytest.mark.parametrize(
    "backend,extra",
    [
        ("searxng", {}),
        ("brave", {"search_api_key": "brave-key"}),
        ("duckduckgo", {}),
    ],
)
async def test_search_backends_read_their_wire_format(site: str, model_url: str, backend: str, extra: dict) -> None:
    ctx = make_ctx(web_settings(site, model_url, search_backend=backend, **extra))
    out = await InternetAgent()({"query": "brass gizmo", "read_results": 1}, ctx)
    assert [r.url for r in out.results] == [f"{site}/products/gizmo"]
    assert out.results[0].title == "Gizmo"  # Brave's <strong> markup is gone
    assert "made of brass" in out.pages[0].text


async def test_brave_without_key_names_the_setting(site: str, model_url: str) -> None:
    ctx = make_ctx(web_settings(site, model_url, search_backend="brave"))
    with pytest.raises(AgentError) as err:
        await InternetAgent()({"query": "gizmo"}, ctx)
    assert err.value.field == "search_api_key"


@pytest.mark.browser
async def test_render_reads_script_made_content(ctx: AgentContext, site: str) -> None:
    plain = await InternetAgent()({"url": f"{site}/js"}, ctx)
    assert "4217" not in plain.page.text
    rendered = await InternetAgent()({"url": f"{site}/js", "render": True}, ctx)
    assert "secret number is 4217" in rendered.page.text
    assert rendered.page.rendered


@pytest.mark.parametrize(
    "payload,field",
    [
        ({}, "url"),
        ({"query": "x", "url": "http://example.com/"}, "query"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "/relative"}, "url"),
    ],
)
async def test_bad_input_names_the_field(ctx: AgentContext, payload: dict, field: str) -> None:
    with pytest.raises(AgentError) as err:
        await InternetAgent()(payload, ctx)
    assert err.value.field == field
    assert 400 <= err.value.status_code < 500


async def test_missing_page_is_a_clear_error(ctx: AgentContext, site: str) -> None:
    with pytest.raises(AgentError, match="404") as err:
        await InternetAgent()({"url": f"{site}/nope"}, ctx)
    assert err.value.field == "url"
