"""Sequential Internet: each step's params use what the steps before it produced."""

from __future__ import annotations

import pytest

from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.web.sequential import SequentialInternetAgent

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.browser
async def test_search_then_read_then_browse(ctx: AgentContext, site: str) -> None:
    out = await SequentialInternetAgent()(
        {
            "context": "gizmo brass",
            "steps": [
                {"agent": "web.internet", "params": {"query": "{{ context }}"}},
                {"agent": "web.internet", "params": {"url": "{{ prev.results[0].url }}"}},
                {"agent": "web.dive", "params": {"start_url": "{{ steps[1].page.url }}", "max_depth": 1}},
                {
                    "agent": "web.browser",
                    "params": {
                        "start_url": "{{ steps[0].results[0].url }}",
                        "actions": [{"type": "extract_text", "selector": "h1"}],
                        "screenshots": False,
                    },
                },
            ],
        },
        ctx,
    )
    assert out.steps[1].params == {"url": f"{site}/products/gizmo"}
    assert "made of brass" in out.steps[1].output["page"]["text"]
    assert {p["url"] for p in out.steps[2].output["pages"]} == {f"{site}/products/gizmo", f"{site}/products"}
    assert out.last["extracted"] == ["Gizmo"]


async def test_template_errors_name_the_step(ctx: AgentContext) -> None:
    with pytest.raises(AgentError) as err:
        await SequentialInternetAgent()(
            {"steps": [{"agent": "web.internet", "params": {"url": "{{ prev.page.url }}"}}]}, ctx
        )
    assert err.value.field == "steps.0.params.url"


async def test_failing_step_names_its_field(ctx: AgentContext) -> None:
    with pytest.raises(AgentError) as err:
        await SequentialInternetAgent()(
            {"steps": [{"agent": "web.internet", "params": {"url": "file:///etc/hosts"}}]}, ctx
        )
    assert err.value.field == "steps.0.params.url"
    assert "step 1 (web.internet)" in err.value.message
