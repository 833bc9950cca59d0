"""Visual builder: first meaningful paint of the editor with 3-, 200- and 1,000-node workflows against an empty
canvas, and frame times while dragging a node of a 1,000-node workflow against a 3-node one, in Debian's headless
Chromium against the platform served by uvicorn on 127.0.0.1 in this run. Baseline and subjects take turns, load
by load and drag by drag, so that other work on the machine weighs on both alike."""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.results import table, write_section
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

NODES = int(os.environ.get("CXMPUTE_BENCH_BUILDER_NODES", "1000"))
SIZES = sorted({3, 200, NODES})
REPEATS = int(os.environ.get("CXMPUTE_BENCH_BUILDER_REPEATS", "5"))
DRAGS = int(os.environ.get("CXMPUTE_BENCH_BUILDER_DRAGS", "3"))
DRAG_STEPS = 60
PAINT_TARGET_MS = 1000
FRAME_TARGET_MS = 20

# Records every animation frame's duration until stopped, so a drag's smoothness can be read back.
FRAME_PROBE = """() => { window.__frames = []; let last = performance.now(); window.__probing = true;
  const tick = (t) => { window.__frames.push(t - last); last = t; if (window.__probing) requestAnimationFrame(tick); };
  requestAnimationFrame(tick); }"""


def grid_document(n: int) -> dict:
    """A chain of n template nodes laid out on a grid, each feeding the next one's variables.x."""
    nodes = [
        {
            "id": f"n{i}",
            "agent": "io.template",
            "params": {"template": "{{ x }}."},
            "position": {"x": (i % 20) * 300, "y": (i // 20) * 180},
        }
        for i in range(n)
    ]
    nodes[0]["params"]["variables"] = {"x": "seed"}
    edges = [
        {"source": f"n{i}", "source_field": "text", "target": f"n{i + 1}", "target_field": "variables.x"}
        for i in range(n - 1)
    ]
    return {"name": f"grid of {n}", "nodes": nodes, "edges": edges}


def _serve():
    import httpx
    import uvicorn

    from cxmpute.ports import free_port
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
        dragged = page.locator(f'.react-flow__node[data-id="{node_id}"]')
        box = dragged.locator(".node-head").bounding_box()
        before = dragged.bounding_box()
        x, y = box["x"] + 10, box["y"] + box["height"] / 2
        page.evaluate(FRAME_PROBE)
        page.mouse.move(x, y)
        page.mouse.down()
        for i in range(1, DRAG_STEPS + 1):
            page.mouse.move(x + i * 4, y + i * 2)
            page.evaluate("new Promise(requestAnimationFrame)")
        page.mouse.up()
        page.evaluate("window.__probing = false")
        after = dragged.bounding_box()
        # a drag that moved nothing would time an idle canvas
        if after["x"] - before["x"] < DRAG_STEPS * 2 or after["y"] - before["y"] < DRAG_STEPS:
            raise RuntimeError(f"the drag did not move {node_id}: {before} -> {after}")
        return page.evaluate("window.__frames")[1:]
    finally:
        page.close()


def q(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(p * len(values)))]


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cxmpute-bench-builder-"))
    os.environ["CXMPUTE_HOME"] = str(home)
    import httpx
    from playwright.sync_api import sync_playwright

    server, thread, base = _serve()
    load_before = os.getloadavg()
    try:
        urls = {0: base + "/"}
        for n in SIZES:
            wf = httpx.post(base + "/v1/workflows", json=grid_document(n), timeout=60).raise_for_status().json()
            urls[n] = f"{base}/#w={wf['id']}"
        paints: dict[int, list[float]] = {n: [] for n in urls}
        drags: dict[int, list[float]] = {3: [], NODES: []}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            _load_ms(browser, base + "/")  # warm the server and the browser's caches alike for every case
            for _ in range(REPEATS):
                for n, url in urls.items():
                    paints[n].append(_load_ms(browser, url))
            for _ in range(DRAGS):
                for n in drags:
                    drags[n] += _drag_frames(browser, urls[n], f"n{n // 2}")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    load_after = os.getloadavg()

    e = statistics.median(paints[0])
    rows = [["empty canvas (baseline)", f"{e:.0f}", f"{min(paints[0]):.0f}", "1.00×"]]
    rows += [
        [
            f"{n:,}-node workflow",
            f"{statistics.median(paints[n]):.0f}",
            f"{min(paints[n]):.0f}",
            f"{statistics.median(paints[n]) / e:.2f}×",
        ]
        for n in SIZES
    ]
    base_p50, base_p95 = statistics.median(drags[3]), q(drags[3], 0.95)
    frames = []
    for n, label in ((3, "3-node workflow (baseline)"), (NODES, f"{NODES:,}-node workflow")):
        f = drags[n]
        p50, p95 = statistics.median(f), q(f, 0.95)
        frames.append(
            [
                label,
                f"{p50:.1f}",
                f"{p95:.1f}",
                f"{max(f):.1f}",
                len(f),
                f"{p50 / base_p50:.2f}×",
                f"{p95 / base_p95:.2f}×",
            ]
        )
    big_paint, big_p95 = statistics.median(paints[NODES]), q(drags[NODES], 0.95)
    verdict = (
        f"With {NODES:,} nodes: first paint {big_paint:.0f} ms (target under {PAINT_TARGET_MS} ms: "
        f"{'met' if big_paint < PAINT_TARGET_MS else 'not met'}), drag p95 {big_p95:.1f} ms per frame "
        f"(target {FRAME_TARGET_MS} ms or less: {'met' if big_p95 <= FRAME_TARGET_MS else 'not met'})."
    )
    body = (
        f"First meaningful paint of the editor (navigation start → palette loaded and every node of the opened "
        f"workflow drawn, `performance.now()` in the page), Debian Chromium headless with `--disable-gpu`, median "
        f"and best of {REPEATS} loads of each page, the pages taking turns.\n\n"
        + table(["page", "median ms", "best ms", "vs empty"], rows)
        + f"\n\nFrame times while dragging the middle node {DRAG_STEPS} mouse steps with every node on screen "
        f"(zoomed to fit), {DRAGS} drags of each canvas taking turns, frames pooled (requestAnimationFrame "
        "deltas: 16.7 ms is 60 fps, a frame that misses one vsync reads 33.3 ms).\n\n"
        + table(
            ["canvas", "median frame ms", "p95 ms", "max ms", "frames", "median vs 3-node", "p95 vs 3-node"], frames
        )
        + f"\n\n{verdict}\n\nLoad average at the start {load_before[0]:.1f} / {load_before[1]:.1f} / "
        f"{load_before[2]:.1f} and at the end {load_after[0]:.1f} / {load_after[1]:.1f} / {load_after[2]:.1f} "
        f"(1/5/15 min) on {os.cpu_count()} cores: absolute page timings grow with other work on the machine, "
        "the ratios carry over better.\n\n`CXMPUTE_BENCH_BUILDER_NODES` (the largest workflow), "
        "`CXMPUTE_BENCH_BUILDER_REPEATS` (loads per page) and `CXMPUTE_BENCH_BUILDER_DRAGS` (drags per canvas) "
        "scale the run."
    )
    write_section("Visual builder", body)
