"""The committed bundle matches its sources, and the platform serves it at / without touching the API."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from web.routers.builder import BUNDLE, STAMP, source_digest


def test_bundle_was_built_from_these_sources():
    assert STAMP.is_file(), "web/static/builder has no SOURCE_DIGEST: run `make builder`"
    assert STAMP.read_text().strip() == source_digest(), (
        "web/builder sources changed since the bundle was built: run `make builder` and commit web/static/builder"
    )


def test_digest_follows_the_sources(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "package.json").write_text("{}")
    (tmp_path / "src" / "main.jsx").write_text("a")
    before = source_digest(tmp_path)
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "x.js").write_text("ignored")
    assert source_digest(tmp_path) == before
    (tmp_path / "src" / "main.jsx").write_text("b")
    assert source_digest(tmp_path) != before


@pytest.fixture(scope="module")
def client():
    from web.app import create_app

    with TestClient(create_app()) as c:
        yield c


def test_index_and_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(/builder/assets/[^"]+)"', page.text)
    assert assets and {a.rsplit(".", 1)[-1] for a in assets} >= {"js", "css"}
    for path in assets:
        r = client.get(path)
        assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
        assert r.content == (BUNDLE / path.removeprefix("/builder/")).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/builder/../routers/builder.py",
        "/builder/%2e%2e/routers/builder.py",
        "/builder/nope.js",
        "/builder/SOURCE_DIGEST",
    ],
)
def test_nothing_outside_the_bundle_is_served(client, path):
    assert client.get(path).status_code == 404


def test_api_routes_stay_where_they_were(client):
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200
    assert client.get("/v1/workflows/schema").status_code == 200
