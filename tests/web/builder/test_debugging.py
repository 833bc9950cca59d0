"""Templates, runs from a chosen node, approvals asked in the page and the run history, in headless Chromium."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.web.builder.canvas import node, run_completes, select

pytestmark = pytest.mark.browser

APPROVAL = {
    "version": 1,
    "name": "needs a yes",
    "inputs": {"draft": {"type": "string", "default": "first draft"}},
    "nodes": [
        {"id": "src", "agent": "io.input", "params": {"name": "draft"}, "position": {"x": 0, "y": 0}},
        {"id": "ok", "agent": "hitl.approve", "params": {"prompt": "Publish this?"}, "position": {"x": 320, "y": 0}},
    ],
    "edges": [{"source": "src", "source_field": "value", "target": "ok", "target_field": "value"}],
}


def completed(page: Page, *ids: str) -> None:
    for node_id in ids:
        expect(node(page, node_id).locator(".node")).to_have_attribute("data-state", "completed", timeout=60_000)


def test_template_run_then_run_from_here_and_history(page: Page):
    page.goto("/")
    page.get_by_role("button", name="Templates").click()
    page.locator('[data-template="diamond"]').click()
    expect(page.locator(".react-flow__node")).to_have_count(4)
    page.get_by_test_id("run").click()
    expect(page.locator("#input-topic")).to_have_value("compute markets")
    page.get_by_test_id("start-run").click()
    run_completes(page)
    completed(page, "a", "b", "c", "d")
    expect(page.get_by_test_id("final-output")).to_contain_text("B saw 'compute markets' and C saw 'compute markets'")
    first = page.get_by_test_id("run-panel").get_attribute("data-run")

    select(page, "c")
    page.get_by_test_id("run-from-here").click()
    expect(page.get_by_test_id("run-panel")).not_to_have_attribute("data-run", first)
    run_completes(page)
    completed(page, "a", "b", "c", "d")
    expect(page.get_by_test_id("run-panel")).to_contain_text("cached")  # upstream outputs were reused
    second = page.get_by_test_id("run-panel").get_attribute("data-run")

    page.get_by_role("button", name="History").click()
    expect(page.get_by_test_id("run-item")).not_to_have_count(0)
    page.get_by_test_id("run-item").first.click()
    expect(page.get_by_test_id("run-panel")).to_have_attribute("data-run", second)
    expect(page.get_by_test_id("final-output")).to_contain_text("B saw")


def test_an_approval_node_asks_in_the_page(page: Page, tmp_path):
    (tmp_path / "approval.json").write_text(json.dumps(APPROVAL))
    page.goto("/")
    page.get_by_test_id("import").set_input_files(str(tmp_path / "approval.json"))
    expect(page.locator(".react-flow__node")).to_have_count(2)
    page.get_by_test_id("run").click()
    page.get_by_test_id("start-run").click()
    approval = page.get_by_test_id("approval")
    expect(approval).to_contain_text("Publish this?", timeout=60_000)
    approval.get_by_placeholder("Replacement value (optional)").fill("final draft")
    approval.get_by_role("button", name="Approve").click()
    run_completes(page)
    completed(page, "src", "ok")
    expect(page.get_by_test_id("final-output")).to_contain_text("final draft")


PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)
RENDERED = {
    "version": 1,
    "name": "rendered",
    "nodes": [
        {"id": "md", "agent": "io.template", "params": {"template": "# Report\n- **bold** point\n- see [docs](/docs)"}},
        {"id": "img", "agent": "io.template", "params": {"template": PIXEL}, "position": {"x": 0, "y": 200}},
        {
            "id": "data",
            "agent": "io.json",
            "params": {"data": {"rows": [1, 2]}, "path": ""},
            "position": {"x": 0, "y": 400},
        },
    ],
    "edges": [],
}


def test_outputs_render_by_kind(page: Page, tmp_path):
    (tmp_path / "rendered.json").write_text(json.dumps(RENDERED))
    page.goto("/")
    page.get_by_test_id("import").set_input_files(str(tmp_path / "rendered.json"))
    page.get_by_test_id("run").click()
    page.get_by_test_id("start-run").click()
    run_completes(page)
    out = page.get_by_test_id("final-output")
    expect(out.locator(".markdown h3")).to_have_text("Report")
    expect(out.locator(".markdown li strong")).to_have_text("bold")
    expect(out.locator('.markdown a[href="/docs"]')).to_have_text("docs")
    expect(out.locator("img.out-image")).to_have_attribute("src", PIXEL)
    expect(out.locator("pre.out-json")).to_contain_text('"rows"')
