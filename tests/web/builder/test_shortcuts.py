"""Node-editor conventions in headless Chromium: multi-select, copy/paste, delete, undo/redo, auto-layout."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.web.builder.canvas import connect, drag_agent, node

pytestmark = pytest.mark.browser


def test_copy_paste_delete_undo_redo_layout(page: Page):
    page.goto("/")
    expect(page.locator(".palette-item")).not_to_have_count(0)
    drag_agent(page, "io.input", 60, 100)
    drag_agent(page, "io.output", 420, 300)
    connect(page, "input_1", "value", "output_1", "value")
    nodes, edges = page.locator(".react-flow__node"), page.locator(".react-flow__edge")
    expect(edges).to_have_count(1)

    node(page, "input_1").locator(".node-head").click()
    node(page, "output_1").locator(".node-head").click(modifiers=["Shift"])
    expect(page.locator(".react-flow__node.selected")).to_have_count(2)
    page.keyboard.press("Control+c")
    page.keyboard.press("Control+v")
    expect(nodes).to_have_count(4)
    expect(edges).to_have_count(2)  # the edge between the copied nodes came along
    expect(node(page, "input_2")).to_have_count(1)

    page.keyboard.press("Delete")  # the pasted pair is the selection
    expect(nodes).to_have_count(2)
    expect(edges).to_have_count(1)
    page.keyboard.press("Control+z")
    expect(nodes).to_have_count(4)
    page.keyboard.press("Control+Shift+z")
    expect(nodes).to_have_count(2)

    page.get_by_role("button", name="Auto-layout").click()
    # flow coordinates, read from the nodes' transforms: the viewport may still be easing to fit
    expect(node(page, "input_1")).to_have_css("transform", "matrix(1, 0, 0, 1, 0, 0)")
    expect(node(page, "output_1")).to_have_css("transform", "matrix(1, 0, 0, 1, 300, 0)")
    page.keyboard.press("Control+z")
    expect(page.locator(".react-flow__minimap")).to_be_visible()
