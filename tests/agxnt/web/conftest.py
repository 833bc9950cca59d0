"""Local stand-ins for the web: a small site, search engines (SearxNG JSON, Brave JSON, DuckDuckGo HTML)
and an OpenAI-compatible model service, all on 127.0.0.1 and speaking the real wire formats."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import pytest

import agxnt.context
from agxnt.context import AgentContext, Services
from agxnt.web.browser import browsers
from cxmpute.settings import Settings, reset_settings

PAGES: dict[str, tuple[str, str]] = {
    "/": (
        "Acme Widgets",
        """<main><h1>Acme Widgets</h1>
<p>Acme Widgets makes sturdy widgets for workshops and kitchens all over the world.</p>
<ul><li><a href="/about">About us</a></li><li><a href="/products">Products</a></li>
<li><a href="/js">Live numbers</a></li><li><a href="/form">Search the catalogue</a></li>
<li><a href="/table">Price list</a></li><li><a href="/private/secret">Staff only</a></li>
<li><a href="/about#team">Our team</a></li><li><a href="http://offsite.invalid/page">A friend</a></li></ul></main>""",
    ),
    "/about": (
        "About Acme",
        """<main><h1>About Acme</h1>
<p>Acme was founded in 1999 in Lisbon by two engineers who wanted widgets that last for decades.</p>
<p id="team">The team is twelve people strong.</p><a href="/">Home</a> <a href="/products">Products</a></main>""",
    ),
    "/products": (
        "Products",
        """<main><h1>Products</h1><p>We sell the Gizmo and the Sprocket, both hand made.</p>
<a href="/products/gizmo">Gizmo</a> <a href="/products/sprocket">Sprocket</a></main>""",
    ),
    "/products/gizmo": (
        "Gizmo",
        """<main><h1>Gizmo</h1><p>The Gizmo is a pocket widget made of brass and costs 12 euros.</p>
<a href="/products">Back</a></main>""",
    ),
    "/products/sprocket": (
        "Sprocket",
        """<main><h1>Sprocket</h1><p>The Sprocket is a steel widget for heavy loads.</p>
<a href="/products/sprocket/spares">Spares</a></main>""",
    ),
    "/products/sprocket/spares": ("Spares", "<main><h1>Spares</h1><p>Spare teeth for the Sprocket.</p></main>"),
    "/js": (
        "Live numbers",
        """<main><h1>Live numbers</h1><div id="live">loading</div></main>
<script>setTimeout(() => { document.getElementById('live').innerHTML =
  '<p id="secret">Rendered by script: the secret number is 4217.</p>'; }, 50);</script>""",
    ),
    "/form": (
        "Catalogue search",
        """<main><h1>Catalogue search</h1>
<form action="/submit" method="get"><label>Term <input name="q" placeholder="term"></label>
<select name="color"><option value="red">Red</option><option value="green">Green</option>
<option value="blue">Blue</option></select><button type="submit">Search</button></form></main>""",
    ),
    "/table": (
        "Price list",
        """<main><h1>Price list</h1><table id="prices">
<tr><th>Product</th><th>Price</th></tr><tr><td>Gizmo</td><td>12</td></tr>
<tr><td>Sprocket</td><td>30</td></tr></table></main>""",
    ),
    "/private/secret": ("Staff", "<main><p>Staff notes that robots may not read.</p></main>"),
}
ROBOTS = "User-agent: *\nDisallow: /private/\n"


def html_page(title: str, body: str) -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>{body}</body></html>"


class Site(BaseHTTPRequestHandler):
    """The test site plus the three search engines' endpoints; search hits point at the site's pages."""

    protocol_version = "HTTP/1.1"
    # headers and body leave in one write; two small writes meet delayed ACKs and stall ~40 ms a response
    wbufsize = 1 << 16
    hits: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    @property
    def base(self) -> str:
        return f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"

    def send(
        self,
        status: int,
        body: str,
        content_type: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def hits_for(self, query: str) -> list[tuple[str, str, str]]:
        if query == "internal addresses":  # a result list that points into private networks
            port = self.server.server_address[1]
            return [
                (u, "Inside", "")
                for u in (
                    "http://10.0.0.1/",
                    "http://169.254.169.254/latest/meta-data/",
                    f"http://localhost:{port}/about",
                    f"{self.base}/redirect?to=http://192.168.1.1/",
                )
            ]
        words = set(re.findall(r"\w+", query.lower()))
        found = []
        for path, (title, body) in PAGES.items():
            text = re.sub(r"<[^>]+>", " ", body).lower()
            if words <= set(re.findall(r"\w+", text + " " + title.lower())) and not path.startswith("/private"):
                found.append((f"{self.base}{path}", title, " ".join(text.split())[:120]))
        return found

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        Site.hits.append(self.path)
        if url.path in PAGES:
            return self.send(200, html_page(*PAGES[url.path]))
        if url.path == "/robots.txt":
            return self.send(200, ROBOTS, "text/plain")
        if url.path == "/submit":
            q, color = query.get("q", [""])[0], query.get("color", [""])[0]
            return self.send(
                200, html_page("Results", f"<p id='result'>Found 3 {escape(color)} {escape(q)} items.</p>")
            )
        if url.path == "/leaky":  # a public-looking page whose subresources point inside
            port = self.server.server_address[1]
            return self.send(
                200,
                html_page(
                    "Leaky",
                    f"""<p>Leaky page</p>
<img src="http://localhost:{port}/probe-img"><script>fetch("http://169.254.169.254/latest/meta-data/")
.catch(() => null);</script>""",
                ),
            )
        if url.path == "/redirect":
            return self.send(302, "", headers={"Location": query["to"][0]})
        if url.path == "/search" and query.get("format") == ["json"]:  # SearxNG
            results = [
                {"url": u, "title": t, "content": s, "engine": "local"}
                for u, t, s in self.hits_for(query.get("q", [""])[0])
            ]
            return self.send(
                200,
                json.dumps({"query": query.get("q", [""])[0], "number_of_results": len(results), "results": results}),
                "application/json",
            )
        if url.path == "/res/v1/web/search":  # Brave
            if self.headers.get("X-Subscription-Token") != "brave-key":
                return self.send(401, json.dumps({"error": "bad token"}), "application/json")
            results = [
                {"title": f"<strong>{t}</strong>", "url": u, "description": s}
                for u, t, s in self.hits_for(query.get("q", [""])[0])
            ]
            return self.send(
                200, json.dumps({"type": "search", "web": {"type": "search", "results": results}}), "application/json"
            )
        self.send(404, html_page("Not found", "<p>Not found</p>"))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        if url.path == "/html/":  # DuckDuckGo's HTML results page
            ad = (
                "<div class='result results_links result--ad'><h2 class='result__title'><a class='result__a' "
                "href='https://ads.invalid/'>Ad</a></h2></div>"
            )
            rows = "".join(
                f"<div class='result results_links results_links_deep web-result'><div class='links_main result__body'>"
                f"<h2 class='result__title'><a rel='nofollow' class='result__a' "
                f"href='//duckduckgo.com/l/?uddg={quote(u, safe='')}&amp;rut=abc'>{escape(t)}</a></h2>"
                f"<a class='result__snippet' href='//duckduckgo.com/l/?uddg={quote(u, safe='')}'>{escape(s)}</a>"
                f"</div></div>"
                for u, t, s in self.hits_for(form.get("q", [""])[0])
            )
            return self.send(200, html_page("DuckDuckGo", f"<div id='links' class='results'>{ad}{rows}</div>"))
        self.send(404, "")


def _last_user(messages: list[dict]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def model_reply(messages: list[dict]) -> str:
    """A deterministic stand-in for a model: plans, cites and drives the catalogue form."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user = _last_user(messages)
    if "plan web research" in system:
        if "internal" in user:
            return '["internal addresses"]'
        return 'Here you go:\n```json\n["Acme founded", "Gizmo brass"]\n```'
    if "research answer" in system:
        cites = []
        for n, body in re.findall(r"^\[(\d+)\] (.*?)(?=^\[\d+\] |\Z)", user, re.S | re.M):
            if "1999" in body:
                cites.append(f"Acme was founded in 1999 [{n}].")
            if "brass" in body:
                cites.append(f"The Gizmo is made of brass [{n}].")
        return " ".join(cites) or "The sources do not say."
    if "operate a web browser" in system:
        elements = json.loads(re.search(r"Elements:\n(.*?)\n\nPage text:", user, re.S).group(1))
        history = json.loads(re.search(r"Steps so far:\n(.*?)\n\nYour next action", user, re.S).group(1))
        url = re.search(r"Current URL: (\S+)", user).group(1)
        done = [h["action"].get("type") for h in history if h["ok"]]

        def cx(tag: str) -> str:
            return f'[data-cx-id="{next(e["id"] for e in elements if e["tag"] == tag)}"]'

        if "/submit" in url:
            text = re.search(r"Page text:\n(.*?)\n\nSteps so far", user, re.S).group(1).strip()
            return json.dumps({"type": "done", "answer": text})
        if url.endswith("/form"):
            if "type" not in done:
                return json.dumps({"type": "type", "selector": cx("input"), "text": "gizmo"})
            if "select" not in done:
                return json.dumps({"type": "select", "selector": cx("select"), "value": "Green"})
            return json.dumps({"type": "click", "selector": cx("button")})
        if len(history) == 1:  # only the start page so far
            return "I think I should look around first."  # not an action: the agent must log it and go on
        link = next(e for e in elements if e["tag"] == "a" and e.get("href") == "/form")
        return json.dumps({"type": "click", "selector": f'[data-cx-id="{link["id"]}"]'})
    return "I can only help with the catalogue."


class Model(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        if self.path.rstrip("/") != "/v1/chat/completions":
            data = b'{"error": {"message": "not found"}}'
            self.send_response(404)
        else:
            content = model_reply(body["messages"])
            data = json.dumps(
                {
                    "id": "chatcmpl-local",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "local"),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            ).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def site() -> Iterator[str]:
    yield from _serve(Site)


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    # one per module: langchain-openai caches an async HTTP client per base URL, and the modules call
    # the model from different event loops (pytest's, uvicorn's, Prefect's)
    yield from _serve(Model)


def web_settings(site: str, model_url: str, **overrides: object) -> Settings:
    """Settings for the local test web; private addresses are allowed only because the site is on 127.0.0.1."""
    values = dict(
        web_allow_private=True,
        search_backend="searxng",
        search_url=site,
        llm_base_url=f"{model_url}/v1",
        llm_model="local",
        web_timeout_seconds=10.0,
    )
    values.update(overrides)
    return Settings(**values)


def make_ctx(settings: Settings) -> AgentContext:
    return AgentContext(settings=settings, services=Services(settings))


@pytest.fixture
def ctx(site: str, model_url: str) -> AgentContext:
    return make_ctx(web_settings(site, model_url))


@pytest.fixture
def guarded_ctx(site: str, model_url: str) -> AgentContext:
    """Default egress policy, except the test site's own host:port, so redirects from it can be checked."""
    host = urlsplit(site).netloc
    return make_ctx(web_settings(site, model_url, web_allow_private=False, web_allowed_hosts=[host]))


@pytest.fixture(scope="module")
def configured(site: str, model_url: str) -> Iterator[None]:
    """The process's own settings pointed at the local web, as a deployment would do it: the environment."""
    env = {
        "CXMPUTE_WEB_ALLOW_PRIVATE": "true",
        "CXMPUTE_SEARCH_BACKEND": "searxng",
        "CXMPUTE_SEARCH_URL": site,
        "CXMPUTE_LLM_BASE_URL": f"{model_url}/v1",
        "CXMPUTE_LLM_MODEL": "local",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    reset_settings()
    agxnt.context._default_services = None
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reset_settings()
    agxnt.context._default_services = None


@pytest.fixture(scope="session", autouse=True)
def _close_browser() -> Iterator[None]:
    yield
    browsers.shutdown()
