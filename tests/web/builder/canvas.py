"""Driving the builder's canvas from Playwright: nodes, ports, drags and runs."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

# The README shows one of these; every browser test run refreshes them.
SCREENSHOTS = Path(__file__).resolve().parents[3] / "web" / "builder" / "screenshots"


def node(page: Page, node_id: str):
    return page.locator(f'.react-flow__node[data-id="{node_id}"]')


def handle(page: Page, node_id: str, port: str):
    return node(page, node_id).locator(f'.react-flow__handle[data-handleid="{port}"]')


def _frames(page: Page, n: int = 2) -> None:
    """Let the page render ``n`` frames: what the pointer's last events scheduled has been rendered by then."""
    page.evaluate(
        "n => new Promise(done => { const step = k => k ? requestAnimationFrame(() => step(k - 1)) : done(); "
        "step(n); })",
        n,
    )


def connect(page: Page, src: str, src_port: str, tgt: str, tgt_port: str) -> None:
    target = handle(page, tgt, f"in:{tgt_port}")
    a = handle(page, src, f"out:{src_port}").bounding_box()
    b = target.bounding_box()
    page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    # A card's ports become live handles when the pointer enters it; on a loaded machine a press in the same
    # instant could land before that render, as no hand is that fast.
    _frames(page)
    page.mouse.down()
    bx, by = b["x"] + b["width"] / 2, b["y"] + b["height"] / 2
    page.mouse.move(bx, by, steps=12)
    # The canvas marks the handle under a dragged connection once it has handled a move over its live handle; a
    # release before that (on a loaded machine) drops the connection on the pane, and neither an edge nor a
    # refusal follows. A hand keeps moving a little, so the next moves find the target card's handle live.
    for _ in range(50):
        _frames(page)
        if re.search(r"\bconnectingto\b", target.get_attribute("class") or ""):
            break
        page.mouse.move(bx + 1, by)
        page.mouse.move(bx, by)
    expect(target).to_have_class(re.compile(r"\bconnectingto\b"))
    page.mouse.up()


def drag_agent(page: Page, agent: str, x: int, y: int) -> None:
    page.locator(f'.palette-item[data-agent="{agent}"]').drag_to(
        page.locator(".react-flow__pane"), target_position={"x": x, "y": y}
    )


def select(page: Page, node_id: str) -> None:
    node(page, node_id).locator(".node-head").click()
    expect(page.get_by_test_id("inspector")).to_contain_text(node(page, node_id).locator(".node-title").inner_text())


def run_completes(page: Page) -> None:
    state = page.get_by_test_id("run-state")
    expect(state).to_have_text(re.compile("completed|failed|cancelled"), timeout=60_000)
    assert state.inner_text() == "completed", page.get_by_test_id("run-panel").inner_text()


def export(page: Page, label: str) -> str:
    with page.expect_download() as info:
        page.get_by_role("button", name=label).click()
    return open(info.value.path()).read()
