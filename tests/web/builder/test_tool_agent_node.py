"""The tool-using agent's node in headless Chromium: its tools picked from the catalogue, shown on the card, saved."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.web.builder.canvas import drag_agent, export, node, select

pytestmark = pytest.mark.browser

SAVED = """async () => {
  const id = new URLSearchParams(location.hash.slice(1)).get("w");
  return (await fetch(`/v1/workflows/${encodeURIComponent(id)}`)).json();
}"""


def test_pick_tools_show_on_card_and_save(page: Page):
    page.goto("/")
    expect(page.locator(".palette-item")).not_to_have_count(0)
    drag_agent(page, "agent.tools", 300, 120)
    select(page, "tools_1")
    page.locator("#param-prompt").fill("Greet the caller by name")

    # the picker offers the catalogue's agents, less those refused as tools (itself, a pause for a person,
    # one needing what the tool-using agent lacks: a browser)
    picker = page.locator("#param-tools")
    offered = picker.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert {"io.template", "http.request", "util.wait"} <= set(offered)
    assert not {"agent.tools", "hitl.approve", "web.browser"} & set(offered)

    picker.select_option("io.template")
    picker.select_option("http.request")
    expect(picker.locator('option[value="io.template"]')).to_have_count(0)  # a picked agent is not offered again
    page.get_by_label("new tools function").fill("fn:lookup")
    page.get_by_role("button", name="+ fn").click()
    expect(page.get_by_label("new tools function")).to_have_value("")
    page.get_by_label("new tools function").fill("notify")  # the fn: prefix is added when left out
    page.get_by_role("button", name="+ fn").click()
    page.get_by_role("button", name="remove http.request").click()
    page.locator("#param-tool_choice").select_option("required")

    chips = node(page, "tools_1").get_by_test_id("node-chips").locator(".chip")
    expect(chips).to_have_text(["io.template", "fn:lookup", "fn:notify"])

    page.get_by_label("Workflow name").fill("tool-agent")
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("toast")).to_contain_text("Saved tool-agent (version 1)")
    saved = next(n for n in page.evaluate(SAVED)["document"]["nodes"] if n["id"] == "tools_1")
    assert saved["params"]["tools"] == ["io.template", "fn:lookup", "fn:notify"]
    assert saved["params"]["tool_choice"] == "required"
    exported = next(n for n in json.loads(export(page, "Export JSON"))["nodes"] if n["id"] == "tools_1")
    assert exported["params"] == saved["params"]

    # reopened from the server, the card shows the same tools
    page.reload()
    expect(node(page, "tools_1").get_by_test_id("node-chips").locator(".chip")).to_have_text(
        ["io.template", "fn:lookup", "fn:notify"]
    )
