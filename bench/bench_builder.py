"""Visual builder: first meaningful paint of the editor with a 200-node workflow against an empty canvas,
and frame times while dragging a node on each, in Debian's headless Chromium against the platform served
by uvicorn on 127.0.0.1 in this run."""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.results import table, write_section

NODES = int(os.environ.get("CXMPUTE_BENCH_BUILDER_NODES", "200"))
REPEATS = int(os.environ.get("CXMPUTE_BENCH_BUILDER_REPEATS", "5"))
DRAG_STEPS = 60
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Records every animation frame's duration until stopped, so a drag's smoothness can be read back.
FRAME_PROBE = """() => { window.__frames = []; let last = performance.now(); window.__probing = true;
  const tick = (t) => { window.__frames.push(t - last); last = t; if (window.__probing) requestAnimationFrame(tick); };
  requestAnimationFrame(tick); }"""


def grid_document(n: int) -> dict:
    """A chain of n template nodes laid out on a grid, each feeding the next one's variables.x."""
    nodes = [{"id": f"n{i}", "agent": "io.template", "params": {"template": "{{ x }}."},
              "position": {"x": (i % 20) * 300, "y": (i // 20) * 180}} for i in range(n)]
    nodes[0]["params"]["variables"] = {"x": "seed"}
    edges = [{"source": f"n{i}", "source_field": "text", "target": f"n{i + 1}", "target_field": "variables.x"}
             for i in range(n - 1)]
    return {"name": f"grid of {n}", "nodes": nodes, "edges": edges}


def _serve():
    import httpx
    import uvicorn

    from flows.server import free_port
    from web.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            if httpx.get(base + "/healthz", timeout=0.5).status_code == 200:
                return server, thread, base
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the platform API did not start")


def _load_ms(browser, url: str) -> float:
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    try:
        page.goto(url)
        page.wait_for_function("window.__editorReady !== undefined", timeout=30_000)
        return page.evaluate("window.__editorReady")
    finally:
        page.close()


def _drag_frames(browser, url: str, node_id: str) -> list[float]:
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    try:
        page.goto(url)
        page.wait_for_function("window.__editorReady !== undefined", timeout=30_000)
        page.keyboard.press("1")  # zoom to fit: every node on screen while dragging
        page.wait_for_timeout(500)
        box = page.locator(f'.react-flow__node[data-id="{node_id}"] .node-head').bounding_box()
        x, y = box["x"] + 10, box["y"] + box["height"] / 2
        page.evaluate(FRAME_PROBE)
        page.mouse.move(x, y)
        page.mouse.down()
        for i in range(1, DRAG_STEPS + 1):
            page.mouse.move(x + i * 4, y + i * 2)
            page.evaluate("new Promise(requestAnimationFrame)")
        page.mouse.up()
        page.evaluate("window.__probing = false")
        return page.evaluate("window.__frames")[1:]
    finally:
        page.close()


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cxmpute-bench-builder-"))
    os.environ["CXMPUTE_HOME"] = str(home)
    import httpx
    from playwright.sync_api import sync_playwright

    server, thread, base = _serve()
    try:
        big = httpx.post(base + "/v1/workflows", json=grid_document(NODES), timeout=60).raise_for_status().json()
        small = httpx.post(base + "/v1/workflows", json=grid_document(3), timeout=60).raise_for_status().json()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
            _load_ms(browser, base + "/")  # warm the server and the browser's caches alike for both cases
            empty = [_load_ms(browser, base + "/") for _ in range(REPEATS)]
            loaded = [_load_ms(browser, f"{base}/#w={big['id']}") for _ in range(REPEATS)]
            drag_small = _drag_frames(browser, f"{base}/#w={small['id']}", "n1")
            drag_big = _drag_frames(browser, f"{base}/#w={big['id']}", f"n{NODES // 2}")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)

    def q(values: list[float], p: float) -> float:
        return sorted(values)[min(len(values) - 1, int(p * len(values)))]

    load = os.getloadavg()
    e, b = statistics.median(empty), statistics.median(loaded)
    rows = [
        ["empty canvas (baseline)", f"{e:.0f}", f"{min(empty):.0f}", "1.00×"],
        [f"{NODES}-node workflow", f"{b:.0f}", f"{min(loaded):.0f}", f"{b / e:.2f}×"],
    ]
    frames = [
        ["3-node workflow (baseline)", f"{statistics.median(drag_small):.1f}", f"{q(drag_small, 0.95):.1f}",
         f"{max(drag_small):.1f}", len(drag_small)],
        [f"{NODES}-node workflow", f"{statistics.median(drag_big):.1f}", f"{q(drag_big, 0.95):.1f}",
         f"{max(drag_big):.1f}", len(drag_big)],
    ]
    body = (
        f"First meaningful paint of the editor (navigation start → palette loaded and every node of the opened "
        f"workflow drawn, `performance.now()` in the page), Debian Chromium headless with `--disable-gpu`, median "
        f"of {REPEATS} loads. Issue target: under 1 s with {NODES} nodes.\n\n"
        + table(["page", "median ms", "best ms", "vs empty"], rows)
        + f"\n\nFrame times while dragging one node {DRAG_STEPS} mouse steps with every node on screen "
          "(requestAnimationFrame deltas; 16.7 ms is 60 fps).\n\n"
        + table(["canvas", "median frame ms", "p95 ms", "max ms", "frames"], frames)
        + f"\n\nLoad average during the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) on "
          f"{os.cpu_count()} cores; page timings scale with it.\n\n`CXMPUTE_BENCH_BUILDER_NODES` and `CXMPUTE_BENCH_BUILDER_REPEATS` scale the run."
    )
    write_section("Visual builder", body)
