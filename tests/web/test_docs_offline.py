"""/docs and /redoc work on a machine with no internet: Swagger UI's and ReDoc's files come from the platform
itself."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import httpx
import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_reference_only_same_origin_assets_and_they_are_served(api_url, page):
    html = httpx.get(f"{api_url}{page}", timeout=30)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    refs = re.findall(r'(?:src|href|spec-url)="([^"]+)"', html.text) + re.findall(r"url: '([^']+)'", html.text)
    assert {urlsplit(r).path.rsplit(".", 1)[-1] for r in refs} >= {"js", "json"}, refs
    for ref in refs:
        url = urljoin(f"{api_url}{page}", ref)
        assert urlsplit(url).netloc == urlsplit(api_url).netloc, f"{page} loads {ref} from another origin"
        assert httpx.get(url, timeout=30).status_code == 200, ref


def test_only_the_docs_own_files_are_served(api_url):
    for path in ("/docs/assets/core.py", "/docs/assets/..%2F__init__.py", "/docs/assets/../core.py"):
        assert httpx.get(f"{api_url}{path}", timeout=30).status_code == 404, path


def test_the_docs_routes_declare_public_access():
    from web.app import _docs, _publish_access

    router = _docs("/openapi.json")
    assert _publish_access(router) == []  # what create_app checks of every route
    assert {r.path: r.openapi_extra["x-cxmpute-access"] for r in router.routes} == {
        "/docs": "public",
        "/redoc": "public",
        "/docs/assets/{name}": "public",
    }
