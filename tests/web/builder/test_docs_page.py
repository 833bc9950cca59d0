"""The API docs (Swagger UI and ReDoc) render in Chromium from the platform alone: no request leaves for another
origin."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(("path", "rendered"), [("/docs", ".swagger-ui .opblock"), ("/redoc", ".redoc-wrap h1")])
def test_the_docs_render_the_api_without_another_origin(page: Page, api_url, path, rendered):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(path)
    expect(page.locator(rendered).first).to_be_visible(timeout=30_000)
    expect(page.locator("body")).to_contain_text("Cxmpute API")
    origin = urlsplit(api_url).netloc
    # ReDoc's "powered by" logo is the one exception: an image it hard-codes, missing offline, nothing else.
    elsewhere = [
        u
        for u in requested
        if not u.startswith(("data:", "blob:"))
        and urlsplit(u).netloc != origin
        and u != "https://cdn.redoc.ly/redoc/logo-mini.svg"
    ]
    assert requested and not elsewhere, elsewhere
