"""Browser Use: scripted actions and model-driven steps in Chromium, a screenshot per step."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.web.browser_use import BrowserUseAgent

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.browser]


async def test_actions_fill_a_form_and_read_a_table(ctx: AgentContext, site: str) -> None:
    out = await BrowserUseAgent()(
        {
            "start_url": f"{site}/form",
            "actions": [
                {"type": "type", "selector": "input[name=q]", "text": "gizmo"},
                {"type": "select", "selector": "select[name=color]", "value": "Blue"},
                {"type": "click", "selector": "button[type=submit]"},
                {"type": "wait_for", "selector": "#result"},
                {"type": "extract_text", "selector": "#result"},
                {"type": "goto", "url": f"{site}/table"},
                {"type": "extract_table", "selector": "#prices"},
                {"type": "goto", "url": f"{site}/js"},
                {"type": "wait_for", "text": "secret number"},
                {"type": "extract_text", "selector": "#secret"},
                {"type": "scroll", "pixels": 300},
                {"type": "screenshot", "full_page": True},
            ],
        },
        ctx,
    )
    assert out.ok, [s.error for s in out.steps]
    assert len(out.steps) == 13  # the start page plus the twelve actions
    assert all(s.screenshot and s.screenshot.startswith("data:image/jpeg;base64,") for s in out.steps)
    assert out.extracted[0] == "Found 3 blue gizmo items."
    assert out.extracted[1] == {"headers": ["Product", "Price"], "rows": [["Gizmo", "12"], ["Sprocket", "30"]]}
    assert "4217" in out.extracted[2]
    assert out.steps[3].url.startswith(f"{site}/submit?q=gizmo&color=blue")
    assert out.final_url == f"{site}/js"


async def test_failed_step_is_logged_and_stops(ctx: AgentContext, site: str) -> None:
    out = await BrowserUseAgent()(
        {
            "start_url": f"{site}/",
            "actions": [{"type": "wait_for", "selector": "#absent", "timeout_seconds": 0.3}, {"type": "extract_text"}],
        },
        ctx,
    )
    assert not out.ok
    assert len(out.steps) == 2 and out.steps[1].error and out.steps[1].screenshot
    assert out.extracted == []


async def test_instruction_is_turned_into_actions_by_the_model(ctx: AgentContext, site: str) -> None:
    out = await BrowserUseAgent()(
        {
            "start_url": f"{site}/",
            "instruction": "Search the catalogue for gizmo in green and tell me what it found.",
            "max_steps": 8,
        },
        ctx,
    )
    assert out.ok  # the model recovered from its prose reply and finished
    assert out.answer == "Found 3 green gizmo items."
    kinds = [s.action.get("type") for s in out.steps]
    assert kinds == ["goto", None, "click", "type", "select", "click", "done"]
    assert "not a valid action" in out.steps[1].error
    assert all(s.screenshot for s in out.steps if s.action.get("type"))


async def test_bad_input_names_the_field(ctx: AgentContext, site: str) -> None:
    with pytest.raises(AgentError) as err:
        await BrowserUseAgent()({"start_url": site}, ctx)
    assert err.value.field == "actions"
    with pytest.raises(ValidationError, match="actions.0"):
        await BrowserUseAgent()({"actions": [{"type": "fly"}]}, ctx)
    with pytest.raises(ValidationError, match="selector or a text"):
        await BrowserUseAgent()({"actions": [{"type": "wait_for"}]}, ctx)
    with pytest.raises(AgentError) as err:
        await BrowserUseAgent()({"actions": [{"type": "goto", "url": "file:///etc/passwd"}]}, ctx)
    assert err.value.field == "actions.0.url"


async def test_unreachable_page_is_a_failed_step(ctx: AgentContext) -> None:
    import socket

    # Bound, never listening, and held through the call: connections are refused, and no server started by
    # another test can take the port meanwhile (one did, and answered 400).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        out = await BrowserUseAgent()(
            {"actions": [{"type": "goto", "url": f"http://127.0.0.1:{port}/"}, {"type": "extract_text"}]}, ctx
        )
    assert not out.ok and len(out.steps) == 1
    assert "HTTP 502" in out.steps[0].error
