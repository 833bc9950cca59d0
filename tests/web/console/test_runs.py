"""The runs page against the platform served for real: the list with its filters, then one run followed over
its event stream to completion on a timeline with one bar per node."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

import flows
from flows.spec import load_document
from tests.support import console

pytestmark = pytest.mark.browser

DIAMOND = load_document(Path(flows.__file__).parent / "templates" / "diamond.yaml")


def test_list_filter_and_follow_a_run(page: Page, api):
    run_id = api.post("/v1/runs", json={"document": DIAMOND, "inputs": {"topic": "console"}}).json()["id"]

    page.goto("/console#/runs")
    row = page.locator(f'[data-run="{run_id}"]')
    expect(row).to_contain_text(DIAMOND["name"])
    page.get_by_label("State").select_option("failed")
    expect(row).to_have_count(0)
    page.get_by_label("State").select_option("")
    page.get_by_label("Started within").select_option("hour")
    page.get_by_label("Workflow").fill(DIAMOND["name"][:4])
    expect(row).to_have_count(1)
    page.get_by_label("Workflow").fill("no such workflow")
    expect(row).to_have_count(0)
    page.get_by_label("Workflow").fill("")

    row.get_by_role("link").first.click()
    expect(page.get_by_test_id("run-state")).to_have_text("completed", timeout=120_000)
    lanes = page.locator("[data-testid=timeline] .lane")
    expect(lanes).to_have_count(len(DIAMOND["nodes"]))
    for node in DIAMOND["nodes"]:
        lane = page.locator(f'.lane[data-node="{node["id"]}"]')
        expect(lane).to_have_attribute("data-state", "completed")
        # hovering a bar names its node, state, duration and placement
        hover = re.compile(rf"^{node['id']} \({re.escape(node['agent'])}\): completed, [\d.]+ s, on ")
        expect(lane.locator(".bar")).to_have_attribute("title", hover)
    expect(page.get_by_test_id("logs")).not_to_be_empty()
    console.screenshot(page, "run")

    page.goto("/console#/runs")
    page.get_by_label("State").select_option("completed")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(3)).to_have_text(re.compile(r"^[\d.]+ s$"))  # its duration
    console.screenshot(page, "runs")
