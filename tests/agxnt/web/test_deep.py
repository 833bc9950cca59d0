"""Deep Internet: the model plans queries, pages are read, the synthesis cites what was read."""

from __future__ import annotations

import pytest

from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.web.deep import DeepInternetAgent
from tests.agxnt.web.conftest import make_ctx, web_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_research_cites_the_pages_it_read(ctx: AgentContext, site: str) -> None:
    out = await DeepInternetAgent()({"question": "When was Acme founded and what is the Gizmo made of?"}, ctx)
    assert out.queries == ["Acme founded", "Gizmo brass"]
    by_url = {s.url: s for s in out.sources}
    about, gizmo = by_url[f"{site}/about"], by_url[f"{site}/products/gizmo"]
    assert f"founded in 1999 [{about.n}]" in out.answer
    assert f"made of brass [{gizmo.n}]" in out.answer
    assert out.cited == sorted({about.n, gizmo.n})
    assert [s.n for s in out.sources] == list(range(1, len(out.sources) + 1))
    assert about.query == "Acme founded"


async def test_unreachable_model_is_a_clear_error(site: str) -> None:
    ctx = make_ctx(web_settings(site, "http://127.0.0.1:9"))
    with pytest.raises(AgentError) as err:
        await DeepInternetAgent()({"question": "anything"}, ctx)
    assert err.value.field == "question" and err.value.status_code == 502
