"""Web console: the market page with 10,000 provisions and the runs page with 10,000 runs, each against the same
page empty, in Debian's headless Chromium against the platform served by uvicorn on 127.0.0.1 in this run.

The console's bundle comes from the platform; the provision and run lists it reads are answered by the browser
(Playwright routes, paged by the request's limit and offset as the API pages them), so the figures are the
page's own: loading the pages of the list, drawing it, and filtering it. Empty and full pages take turns."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from bench.bench_builder import _serve
from bench.results import table, write_section
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

ITEMS = int(os.environ.get("CXMPUTE_BENCH_CONSOLE_ITEMS", "10000"))
REPEATS = int(os.environ.get("CXMPUTE_BENCH_CONSOLE_REPEATS", "5"))
TARGET_MS = 1000
KINDS = ["vm", "container", "function", "inference", "agent"]
STATES = ["completed", "failed", "running", "pending", "cancelled"]

# Sets a form control as a person would (React reads the native setter's value on the input or change event),
# then waits for the next frame to be painted; the time from the change to that paint.
FILTER = """async ([label, value]) => {
  const input = document.querySelector(`[aria-label="${label}"]`);
  const setter = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(input), "value").set;
  const start = performance.now();
  setter.call(input, value);
  input.dispatchEvent(new Event(input.tagName === "SELECT" ? "change" : "input", { bubbles: true }));
  await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
  return performance.now() - start;
}"""


def provisions(n: int) -> list[dict]:
    now = datetime.now(UTC).isoformat()
    out = []
    for i in range(n):
        gpus = 1 + i % 8 if i % 4 == 0 else 0
        res = {
            "cpu": 1 + i % 64,
            "memory_mb": 1024 * (1 + i % 256),
            "gpu_count": gpus,
            "gpu_model": "H100" if gpus else "",
            "disk_gb": 100,
        }
        out.append(
            {
                "id": f"prov-{i:06d}",
                "provider": f"0x{i:040x}",
                "kind": KINDS[i % 5],
                "resources": res,
                "free": res,
                "price_gwei": 10 + (i * 7919) % 5000,
                "models": [f"model-{i % 50}"] if i % 5 == 3 else [],
                "images": [],
                "region": f"region-{i % 12}",
                "available_until": None,
                "status": "active",
                "capacity_group": f"g{i}",
                "updated_at": now,
            }
        )
    return out


def runs(n: int) -> list[dict]:
    start = datetime.now(UTC)
    return [
        {
            "id": f"run-{i:06d}",
            "workflow": f"workflow-{i % 40}",
            "state": STATES[i % 5],
            "workflow_id": None,
            "workflow_version": None,
            "created_at": (start - timedelta(minutes=i)).isoformat(),
        }
        for i in range(n)
    ]


# Each page of each list serialised once: the browser's time is measured, not this side's.
_answers: dict[tuple[int, int, int], str] = {}


def _route(page, pattern: str, items: list[dict], paged_object: bool) -> None:
    def answer(route):
        query = parse_qs(urlparse(route.request.url).query)
        limit, offset = int(query.get("limit", ["50"])[0]), int(query.get("offset", ["0"])[0])
        key = (id(items), limit, offset)
        if key not in _answers:
            chunk = items[offset : offset + limit]
            body = {"items": chunk, "total": len(items), "limit": limit, "offset": offset} if paged_object else chunk
            _answers[key] = json.dumps(body)
        route.fulfill(status=200, content_type="application/json", body=_answers[key])

    page.route(pattern, answer)


def _measure(browser, url: str, pattern: str, items: list[dict], paged_object: bool, count_id: str, flt) -> tuple:
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    try:
        _route(page, pattern, items, paged_object)
        page.goto(url)
        shown = f"{len(items)} of {len(items)} "
        count = f"document.querySelector('[data-testid={count_id}]')?.textContent"
        probe = f"() => ({count} ?? '').startsWith({shown!r}) && performance.now()"
        drawn = page.wait_for_function(probe, timeout=60_000).json_value()
        filtered = page.evaluate(FILTER, list(flt))
        return drawn, filtered
    finally:
        page.close()


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cxmpute-bench-console-"))
    os.environ["CXMPUTE_HOME"] = str(home)
    from playwright.sync_api import sync_playwright

    server, thread, base = _serve()
    pages = {
        "market": (
            f"{base}/console#/market",
            "**/v1/market/provisions*",
            provisions,
            False,
            "provision-count",
            ("Min vCPU", "32"),
        ),
        "runs": (f"{base}/console#/runs", "**/v1/runs?*", runs, True, "run-count", ("State", "failed")),
    }
    times: dict[tuple[str, int], list[tuple[float, float]]] = {(p, n): [] for p in pages for n in (0, ITEMS)}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            data = {(p, n): spec[2](n) for p, spec in pages.items() for n in (0, ITEMS)}
            for p, n in times:  # warm the server and the browser's caches alike for every case
                url, pattern, _, paged, count, flt = pages[p]
                _measure(browser, url, pattern, data[p, n], paged, count, flt)
            for _ in range(REPEATS):
                for p, n in times:
                    url, pattern, _, paged, count, flt = pages[p]
                    times[p, n].append(_measure(browser, url, pattern, data[p, n], paged, count, flt))
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)

    rows, verdicts = [], []
    for p in pages:
        empty_draw = statistics.median(t[0] for t in times[p, 0])
        empty_filter = statistics.median(t[1] for t in times[p, 0])
        for n in (0, ITEMS):
            draw = statistics.median(t[0] for t in times[p, n])
            filt = statistics.median(t[1] for t in times[p, n])
            label = f"{p}, empty (baseline)" if n == 0 else f"{p}, {n:,} items"
            rows.append(
                [label, f"{draw:.0f}", f"{draw / empty_draw:.2f}×", f"{filt:.0f}", f"{filt / empty_filter:.2f}×"]
            )
            if n:
                verdicts.append(
                    f"{p} with {n:,}: shown in {draw:.0f} ms ({'met' if draw < TARGET_MS else 'not met'}), "
                    f"filtered in {filt:.0f} ms ({'met' if filt < TARGET_MS else 'not met'})"
                )
    body = (
        "Navigation start → the whole list loaded (every page of it) and drawn, then one filter changed → the next "
        f"painted frame (`performance.now()` in the page); median of {REPEATS} loads per case, cases taking turns. "
        f"Filters: market `Min vCPU` 32, runs `State` failed. Target: under {TARGET_MS} ms each.\n\n"
        + table(["page", "shown ms", "vs empty", "filter ms", "vs empty"], rows)
        + "\n\n"
        + "; ".join(verdicts)
        + ".\n\n`CXMPUTE_BENCH_CONSOLE_ITEMS` and `CXMPUTE_BENCH_CONSOLE_REPEATS` scale the run."
    )
    write_section("Web console", body)


if __name__ == "__main__":
    main()
