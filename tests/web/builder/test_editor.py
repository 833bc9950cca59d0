"""End to end in headless Chromium: draw a workflow from the palette, run it, save, reload, export/import."""

from __future__ import annotations

import json

import pytest
import yaml
from playwright.sync_api import Page, expect

from tests.web.builder.canvas import SCREENSHOTS, connect, drag_agent, export, handle, node, run_completes, select

pytestmark = pytest.mark.browser


def test_draw_run_save_reload_export(page: Page, tmp_path):
    page.goto("/")
    expect(page.locator(".palette-item")).not_to_have_count(0)

    # palette search narrows the agents, grouped by family
    page.get_by_label("Search agents").fill("template")
    expect(page.locator(".palette-item")).to_have_count(1)
    page.get_by_label("Search agents").fill("")

    drag_agent(page, "io.input", 60, 120)
    drag_agent(page, "io.template", 380, 120)
    drag_agent(page, "util.wait", 720, 120)
    expect(page.locator(".react-flow__node")).to_have_count(3)

    # the server's validation names the template node: its required template is neither set nor connected
    problems = node(page, "template_1").get_by_test_id("node-problems")
    expect(problems).to_contain_text("template")
    expect(node(page, "input_1").get_by_test_id("node-problems")).to_have_count(0)

    select(page, "input_1")
    page.locator("#param-name").fill("who")
    select(page, "template_1")
    page.locator("#param-template").fill("Hello {{ who }}!")
    page.get_by_label("new variables port").fill("who")
    page.get_by_role("button", name="+ port").click()
    expect(handle(page, "template_1", "in:variables.who")).to_have_count(1)
    select(page, "wait_1")
    page.locator("#param-seconds").fill("-1")
    expect(page.locator('[data-field="param.seconds"] .field-error')).to_contain_text("≥ 0")
    page.locator("#param-seconds").fill("0")
    expect(page.locator('[data-field="param.seconds"] .field-error')).to_have_count(0)
    page.get_by_text("Run options").click()
    page.locator("#option-retries").fill("2")

    connect(page, "input_1", "value", "template_1", "variables.who")
    connect(page, "template_1", "text", "wait_1", "value")
    expect(page.locator(".react-flow__edge")).to_have_count(2)

    # text (a string) cannot feed seconds (a number): refused, and the editor says why
    connect(page, "template_1", "text", "wait_1", "seconds")
    expect(page.get_by_test_id("toast")).to_contain_text("Connection refused")
    expect(page.get_by_test_id("toast")).to_contain_text("cannot feed seconds")
    expect(page.locator(".react-flow__edge")).to_have_count(2)
    expect(page.locator("[data-testid=node-problems]")).to_have_count(0)

    page.get_by_label("Workflow name").fill("greeting")
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("toast")).to_contain_text("Saved greeting (version 1)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "editor.png"))

    page.get_by_test_id("run").click()
    page.locator("#input-who").fill("world")
    page.get_by_test_id("start-run").click()
    run_completes(page)
    for node_id in ("input_1", "template_1", "wait_1"):
        expect(node(page, node_id).locator(".node")).to_have_attribute("data-state", "completed", timeout=60_000)
    expect(page.get_by_test_id("final-output")).to_contain_text("Hello world!")
    # the node's last run: its inputs and output
    select(page, "template_1")
    expect(page.get_by_test_id("last-run")).to_contain_text("Hello world!")
    page.locator(".react-flow__pane").click(position={"x": 400, "y": 500})  # deselect: the run panel in view
    expect(page.get_by_test_id("final-output")).to_be_in_viewport()
    page.screenshot(path=str(SCREENSHOTS / "run.png"))

    page.reload()
    expect(page.locator(".react-flow__node")).to_have_count(3)
    expect(page.get_by_label("Workflow name")).to_have_value("greeting")
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_role("dialog")).to_contain_text("greeting")
    page.keyboard.press("Escape")

    exported = export(page, "Export JSON")
    (tmp_path / "greeting.json").write_text(exported)
    page.get_by_test_id("import").set_input_files(str(tmp_path / "greeting.json"))
    expect(page.get_by_test_id("toast")).to_contain_text("Imported greeting.json")
    assert json.loads(export(page, "Export JSON")) == json.loads(exported)
    assert yaml.safe_load(export(page, "Export YAML")) == json.loads(exported)
    doc = json.loads(exported)
    assert {(e["source"], e["source_field"], e["target"], e["target_field"]) for e in doc["edges"]} == {
        ("input_1", "value", "template_1", "variables.who"),
        ("template_1", "text", "wait_1", "value"),
    }
    assert next(n for n in doc["nodes"] if n["id"] == "wait_1")["options"]["retries"] == 2


def test_duplicate_and_delete(page: Page):
    page.goto("/")
    page.get_by_role("button", name="Templates").click()
    page.locator('[data-template="diamond"]').click()
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("toast")).to_contain_text("Saved diamond (version 1)")
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("toast")).to_contain_text("Saved diamond (version 2)")
    page.get_by_role("button", name="Duplicate").click()
    expect(page.get_by_label("Workflow name")).to_have_value("diamond copy")
    expect(page.get_by_test_id("saved-version")).to_have_text("v1")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_test_id("toast")).to_have_text("Deleted")
    expect(page.locator(".react-flow__node")).to_have_count(0)
    page.get_by_role("button", name="Open").click()
    names = page.get_by_test_id("workflow-item")
    expect(names.filter(has_text="diamond")).not_to_have_count(0)
    expect(names.filter(has_text="diamond copy")).to_have_count(0)
