"""What the builder shows of runs: messages instead of tracebacks, imported documents laid out, run history
with names and states, and no engine internals among the nodes."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.web.builder.canvas import node

pytestmark = pytest.mark.browser

FAILING = {
    "version": 1,
    "name": "fails",
    "nodes": [
        {"id": "pick", "agent": "io.json", "params": {"data": {"a": 1}, "path": "nope"}, "options": {"retries": 0}}
    ],
    "edges": [],
}
UNPLACED = {
    "version": 1,
    "name": "unplaced",
    "nodes": [{"id": n, "agent": "io.template", "params": {"template": n}} for n in ("a", "b", "c", "d")],
    "edges": [
        {"source": "a", "source_field": "text", "target": "b", "target_field": "template"},
        {"source": "b", "source_field": "text", "target": "c", "target_field": "template"},
    ],
}
TRACEBACK = (
    'Flow run encountered an exception: Traceback (most recent call last):\n  File "/x/engine.py", '
    "line 12, in run\n    raise AgentError(msg)\nagxnt.errors.AgentError: path 'nope' not found"
)


def test_a_failed_run_shows_the_message_not_the_traceback(page: Page, tmp_path):
    (tmp_path / "fails.json").write_text(json.dumps(FAILING))
    page.goto("/")
    page.get_by_test_id("import").set_input_files(str(tmp_path / "fails.json"))
    page.get_by_test_id("run").click()
    page.get_by_test_id("start-run").click()
    panel = page.get_by_test_id("run-panel")
    expect(page.get_by_test_id("run-state")).to_have_text("failed", timeout=60_000)
    expect(page.get_by_test_id("logs")).to_contain_text("not found", timeout=30_000)
    expect(panel).to_contain_text("path 'nope' not found")
    assert "Traceback" not in panel.inner_text() and 'File "' not in panel.inner_text()


def test_an_imported_document_without_positions_is_laid_out_by_its_edges(page: Page, tmp_path):
    (tmp_path / "unplaced.json").write_text(json.dumps(UNPLACED))
    page.goto("/")
    page.get_by_test_id("import").set_input_files(str(tmp_path / "unplaced.json"))
    expect(page.locator(".react-flow__node")).to_have_count(4)
    box = {n: node(page, n).bounding_box() for n in "abcd"}
    assert box["a"]["x"] < box["b"]["x"] < box["c"]["x"]  # left to right along the edges
    assert box["d"]["x"] == box["a"]["x"] and box["d"]["y"] > box["a"]["y"] + box["a"]["height"]


def test_run_history_names_workflows_and_states_and_hides_engine_tasks(page: Page):
    # The history's fields (the workflow's name as workflow_name or workflow, the state) and an engine-internal
    # task, answered by the page's network layer so that the fields and their absence are both shown.
    items = [
        {
            "id": "11111111-0000-0000-0000-000000000000",
            "workflow_id": "wf",
            "workflow_version": 2,
            "created_at": "2026-01-02T03:04:05Z",
            "workflow_name": "Nightly report",
            "state": "failed",
        },
        {
            "id": "22222222-0000-0000-0000-000000000000",
            "workflow_id": None,
            "workflow_version": None,
            "created_at": "2026-01-02T03:04:05Z",
            "workflow": "Ad hoc",
            "state": "completed",
        },
        {
            "id": "33333333-0000-0000-0000-000000000000",
            "workflow_id": None,
            "workflow_version": None,
            "created_at": "2026-01-02T03:04:05Z",
        },
    ]
    view = {
        "id": items[0]["id"],
        "name": "r",
        "state": "failed",
        "inputs": {},
        "error": TRACEBACK,
        "waiting_for": [],
        "nodes": {
            "pick": {"node": "pick", "state": "failed", "error": TRACEBACK},
            "run_node-3f2a": {"node": "run_node-3f2a", "state": "completed"},
        },
    }
    page.route("**/v1/runs?*", lambda route: route.fulfill(json={"items": items, "total": 3, "limit": 50, "offset": 0}))
    page.route(f"**/v1/runs/{items[0]['id']}", lambda route: route.fulfill(json=view))
    page.goto("/")
    page.get_by_role("button", name="History").click()
    rows = page.locator(".list li")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Nightly report")
    expect(rows.nth(0).get_by_test_id("run-item-state")).to_have_text("failed")
    expect(rows.nth(1)).to_contain_text("Ad hoc")
    expect(rows.nth(1).get_by_test_id("run-item-state")).to_have_text("completed")
    expect(rows.nth(2).get_by_test_id("run-item")).to_be_visible()  # neither field: the time alone
    expect(rows.nth(2).get_by_test_id("run-item-state")).to_have_count(0)
    rows.nth(0).get_by_test_id("run-item").click()
    panel = page.get_by_test_id("run-panel")
    expect(panel).to_contain_text("agxnt.errors.AgentError: path 'nope' not found")
    expect(panel).to_contain_text("pick")
    assert "run_node" not in panel.inner_text() and "Traceback" not in panel.inner_text()
