"""Cancelling a run from the builder's run panel: asked first, refused with the API's message when the run has
already finished, and shown as cancelled in the panel and the run history."""

from __future__ import annotations

import json

import httpx
import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

# Waits for a person's answer, so the run stays unfinished until the test decides.
WAITING = {
    "version": 1,
    "name": "waits to be cancelled",
    "nodes": [
        {"id": "src", "agent": "io.template", "params": {"template": "draft"}, "position": {"x": 0, "y": 0}},
        {"id": "ok", "agent": "hitl.approve", "params": {"prompt": "Publish this?"}, "position": {"x": 320, "y": 0}},
    ],
    "edges": [{"source": "src", "source_field": "text", "target": "ok", "target_field": "value"}],
}


def start_waiting_run(page: Page, tmp_path) -> str:
    (tmp_path / "waiting.json").write_text(json.dumps(WAITING))
    page.goto("/")
    page.get_by_test_id("import").set_input_files(str(tmp_path / "waiting.json"))
    expect(page.locator(".react-flow__node")).to_have_count(2)
    page.get_by_test_id("run").click()
    page.get_by_test_id("start-run").click()
    expect(page.get_by_test_id("approval")).to_contain_text("Publish this?", timeout=60_000)
    expect(page.get_by_test_id("run-state")).to_have_text("waiting")
    return page.get_by_test_id("run-panel").get_attribute("data-run")


def test_a_run_waiting_for_approval_is_cancelled_and_shows_so_in_the_history(page: Page, tmp_path):
    run_id = start_waiting_run(page, tmp_path)
    page.get_by_role("button", name="Cancel run").click()
    confirm = page.get_by_role("alertdialog", name="Cancel run")
    expect(confirm).to_contain_text(run_id)
    confirm.get_by_role("button", name="Cancel run").click()
    expect(confirm).to_have_count(0)

    expect(page.get_by_test_id("run-state")).to_have_text("cancelled", timeout=60_000)
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    expect(page.get_by_test_id("approval")).to_have_count(0)

    page.get_by_role("button", name="History").click()
    row = page.locator(".list li").filter(has_text=run_id[:8])
    badge = row.get_by_test_id("run-item-state")
    expect(badge).to_have_text("cancelled")
    expect(badge).to_have_class("badge badge-cancelled")
    # Distinct from the plain badge that states without a style of their own get.
    plain = page.evaluate("""() => { const b = document.createElement("span"); b.className = "badge";
        document.body.append(b); const c = getComputedStyle(b).backgroundColor; b.remove(); return c; }""")
    assert badge.evaluate("b => getComputedStyle(b).backgroundColor") != plain


def test_cancelling_asks_first_and_a_refusal_shows_the_api_message(page: Page, tmp_path, api_url):
    run_id = start_waiting_run(page, tmp_path)
    cancel = page.get_by_role("button", name="Cancel run")

    # By keyboard: the safe answer has the focus, and Escape keeps the run.
    cancel.focus()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("alertdialog", name="Cancel run")
    expect(confirm.get_by_role("button", name="Keep running")).to_be_focused()
    page.keyboard.press("Escape")
    expect(confirm).to_have_count(0)
    expect(page.get_by_test_id("run-state")).to_have_text("waiting")

    # The run finishes while the question is open: the API refuses, and the panel says why, naming the field.
    cancel.click()
    expect(confirm).to_be_visible()
    answered = httpx.post(f"{api_url}/v1/runs/{run_id}/resume", json={"approved": True}, timeout=30)
    assert answered.status_code == 202, answered.text
    expect(page.get_by_test_id("run-state")).to_have_text("completed", timeout=60_000)
    confirm.get_by_role("button", name="Cancel run").click()
    toast = page.get_by_test_id("toast")
    expect(toast).to_contain_text("Not cancelled: run_id: ")
    expect(toast).to_have_class("toast toast-error")
    expect(page.get_by_test_id("run-state")).to_have_text("completed")
