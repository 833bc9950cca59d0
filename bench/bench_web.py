"""Web agents: Internet Dive pages/s against a plain httpx fetch loop over the same pages, and Browser Use
steps/s against the same actions done directly with Playwright. Everything is served on 127.0.0.1.

Scale with CXMPUTE_BENCH_WEB_PAGES (site size, default 200) and CXMPUTE_BENCH_WEB_STEPS (browser steps per
side, default 60).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.queues
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from agxnt.context import AgentContext, Services
from agxnt.web.browser import CHROMIUM_ARGS, browsers
from agxnt.web.browser_use import BrowserUseAgent
from agxnt.web.dive import DiveAgent
from agxnt.web.pages import page_from_html
from bench.results import table, write_section
from cxmpute.settings import Settings

PAGES = int(os.environ.get("CXMPUTE_BENCH_WEB_PAGES", "200"))
STEPS = int(os.environ.get("CXMPUTE_BENCH_WEB_STEPS", "60"))
ROUNDS = 2
FANOUT = 6
PARAGRAPH = (
    "Widgets are made in small workshops by people who care about them, and each one is tested "
    "before it leaves the bench. "
)


def page_html(n: int) -> str:
    children = [c for c in range(n * FANOUT + 1, n * FANOUT + FANOUT + 1) if c < PAGES]
    links = "".join(f'<li><a href="/p/{c}">Page {c}</a></li>' for c in children)
    body = "".join(f"<p>{PARAGRAPH * 3} (page {n}, paragraph {i})</p>" for i in range(8))
    form = (
        '<form action="/p/0"><input name="q"><select name="s"><option>a</option><option>b</option></select>'
        '<button id="go" type="button" onclick="document.getElementById(\'out\').textContent=\'clicked\'">Go'
        '</button></form><p id="out"></p>'
    )
    return (
        f"<!doctype html><html><head><title>Page {n}</title></head><body><main><h1>Page {n}</h1>{body}"
        f"{form}<ul>{links}<li><a href='/p/0'>Home</a></li></ul></main></body></html>"
    )


class Site(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body leave in one write; two small writes meet delayed ACKs and stall ~40 ms a response
    wbufsize = 1 << 16

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/robots.txt":
            data, ctype = b"User-agent: *\nAllow: /\n", "text/plain"
        else:
            try:
                n = int(self.path.split("?")[0].rsplit("/", 1)[1])
            except ValueError:
                n = PAGES
            if not 0 <= n < PAGES:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, ctype = page_html(n).encode(), "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _serve_forever(port_out: multiprocessing.queues.Queue) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    server.daemon_threads = True
    port_out.put(server.server_address[1])
    server.serve_forever()


def serve() -> tuple[multiprocessing.Process, str]:
    """The site in a process of its own, so serving pages does not share the crawler's interpreter lock."""
    mp = multiprocessing.get_context("fork")
    ports = mp.Queue()
    proc = mp.Process(target=_serve_forever, args=(ports,), daemon=True)
    proc.start()
    return proc, f"http://127.0.0.1:{ports.get(timeout=30)}"


def httpx_loop(urls: list[str], extract: bool = False) -> float:
    """The baseline: fetch the same pages one after another, bodies read, nothing parsed (or, for the
    reference row, each page put through the same extraction Dive does)."""
    start = time.perf_counter()
    with httpx.Client(timeout=30) as client:
        for url in urls:
            resp = client.get(url)
            resp.raise_for_status()
            if extract:
                page_from_html(resp.text, url)
    return time.perf_counter() - start


async def dive(ctx: AgentContext, base: str, concurrency: int) -> tuple[float, list[str]]:
    start = time.perf_counter()
    out = await DiveAgent()(
        {"start_url": f"{base}/p/0", "max_depth": 6, "max_pages": PAGES, "concurrency": concurrency, "max_chars": 2000},
        ctx,
    )
    return time.perf_counter() - start, [p.url for p in out.pages]


def actions(base: str) -> list[dict]:
    cycle = [
        lambda i: {"type": "goto", "url": f"{base}/p/{i % PAGES}"},
        lambda i: {"type": "type", "selector": "input[name=q]", "text": f"widget {i}"},
        lambda i: {"type": "select", "selector": "select[name=s]", "value": "b"},
        lambda i: {"type": "click", "selector": "#go"},
        lambda i: {"type": "extract_text", "selector": "h1"},
    ]
    return [cycle[i % len(cycle)](i // len(cycle)) for i in range(STEPS)]


async def playwright_direct(steps: list[dict], executable: str) -> float:
    """The baseline: the same actions with Playwright alone (no agent, proxy, step log or screenshots)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        page = await (await browser.new_context()).new_page()
        await page.goto(steps[0]["url"])
        start = time.perf_counter()
        for step in steps:
            match step["type"]:
                case "goto":
                    await page.goto(step["url"], wait_until="load")
                case "type":
                    await page.locator(step["selector"]).first.fill(step["text"])
                case "select":
                    await page.locator(step["selector"]).first.select_option(step["value"])
                case "click":
                    await page.locator(step["selector"]).first.click()
                    await page.wait_for_load_state("load")
                case "extract_text":
                    await page.locator(step["selector"]).first.inner_text()
        elapsed = time.perf_counter() - start
        await browser.close()
    return elapsed


async def browser_use(ctx: AgentContext, steps: list[dict], screenshots: bool) -> float:
    await BrowserUseAgent()({"actions": steps[:1], "screenshots": False}, ctx)  # browser started, not timed
    start = time.perf_counter()
    out = await BrowserUseAgent()({"actions": steps, "screenshots": screenshots}, ctx)
    elapsed = time.perf_counter() - start
    assert out.ok, [s.error for s in out.steps if s.error]
    return elapsed


async def run_all(base: str, ctx: AgentContext) -> dict:
    """Best of ROUNDS per row, rows interleaved, so load from elsewhere on the machine falls on all alike."""
    best: dict[str, float] = {}
    page_from_html(page_html(0), f"{base}/p/0")  # trafilatura loads its tables on first use; not timed
    _, urls = await dive(ctx, base, 4)
    for _ in range(ROUNDS):
        timings = {"baseline": httpx_loop(urls), "extracting": httpx_loop(urls, extract=True)}
        for concurrency in (1, 4, 8):
            timings[f"dive{concurrency}"], crawled = await dive(ctx, base, concurrency)
            assert sorted(crawled) == sorted(urls)
        for key, seconds in timings.items():
            best[key] = min(seconds, best.get(key, seconds))
    figures: dict = {"urls": urls, **best}
    steps = actions(base)
    figures["pw"] = await playwright_direct(steps, ctx.settings.browser_executable)
    figures["bu_plain"] = await browser_use(ctx, steps, screenshots=False)
    figures["bu_shots"] = await browser_use(ctx, steps, screenshots=True)
    return figures


def main() -> None:
    server, base = serve()
    # the bench site is on 127.0.0.1, so private addresses are allowed here and nowhere else
    settings = Settings(web_allow_private=True)
    ctx = AgentContext(settings=settings, services=Services(settings))
    try:
        figures = asyncio.run(run_all(base, ctx))
        urls, baseline, extracting = figures["urls"], figures["baseline"], figures["extracting"]
    finally:
        browsers.shutdown()
        server.terminate()
        server.join(10)
    n = len(urls)
    base_rate = n / baseline
    rows = [
        ["plain httpx GET loop (baseline)", n, f"{base_rate:,.0f}", "1.00x"],
        [
            "httpx GET loop + the same extraction (reference)",
            n,
            f"{n / extracting:,.0f}",
            f"{n / extracting / base_rate:.2f}x",
        ],
    ]
    for c in (1, 4, 8):
        rate = n / figures[f"dive{c}"]
        rows.append([f"Internet Dive, concurrency {c}", n, f"{rate:,.0f}", f"{rate / base_rate:.2f}x"])
    pw_rate = STEPS / figures["pw"]
    step_rows = [["Playwright directly (baseline)", STEPS, f"{pw_rate:.1f}", "1.00x"]]
    for key, label in (("bu_plain", "Browser Use, no screenshots"), ("bu_shots", "Browser Use, screenshot per step")):
        rate = STEPS / figures[key]
        step_rows.append([label, STEPS, f"{rate:.1f}", f"{rate / pw_rate:.2f}x"])
    write_section(
        "Web agents",
        f"""
A {PAGES}-page site (fan-out {FANOUT}, ~3 KB of prose per page, robots.txt) served by a threaded
`http.server` on 127.0.0.1 in a separate process. Internet Dive crawls it from the root with the page budget
set to the whole site: robots.txt check, egress check with the connection pinned to the checked address,
trafilatura extraction and link parsing per page. The baseline fetches the very same URLs with a plain
`httpx.Client` loop that reads each body and parses nothing; the reference row adds the extraction
(trafilatura text and metadata, link parsing) to that loop, so the gap between it and Dive is the crawl
machinery itself (robots.txt, egress checks, de-duplication, scheduling). Each row is the best of
{ROUNDS} rounds, rows interleaved; the machine is shared, so single figures move by tens of percent.

{table(["crawler", "pages", "pages/s", "vs baseline"], rows)}

Browser Use runs {STEPS} actions (goto, type, select, click, extract text, in turn) in headless Chromium
through the per-job egress proxy, logging each step (URL, title and, in the last row, a JPEG screenshot).
The baseline does the same actions with Playwright alone on a plain context. One shared browser; start-up
is not timed.

{table(["driver", "steps", "steps/s", "vs baseline"], step_rows)}

Scale with CXMPUTE_BENCH_WEB_PAGES and CXMPUTE_BENCH_WEB_STEPS.
""",
    )


if __name__ == "__main__":
    main()
