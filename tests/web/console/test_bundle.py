"""The committed console bundle matches its sources (and the builder's wallet code it shares), and the platform
serves it at /console with the builder's security headers, nothing outside it."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from web.bundles import CONSOLE, WEB, Bundle


def test_bundle_was_built_from_these_sources():
    assert CONSOLE.stamp.is_file(), "web/static/console has no SOURCE_DIGEST: run `make builder`"
    assert CONSOLE.stamp.read_text().strip() == CONSOLE.source_digest(), (
        "web/console sources (or the builder's wallet code) changed since the bundle was built: run `make builder` "
        "and commit web/static/console"
    )


def test_the_shared_wallet_code_counts_towards_the_digest(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.jsx").write_text("a")
    alone = Bundle("console").source_digest(tmp_path)
    assert CONSOLE.source_digest(tmp_path) != alone
    assert all((WEB / rel).is_file() for rel in CONSOLE.shared)


@pytest.fixture(scope="module")
def client():
    from web.app import create_app

    with TestClient(create_app()) as c:
        yield c


@pytest.mark.parametrize("path", ["/console", "/console/"])
def test_page_and_assets_are_served(client, path):
    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assets = re.findall(r'(?:src|href)="(/console/assets/[^"]+)"', page.text)
    assert assets and {a.rsplit(".", 1)[-1] for a in assets} >= {"js", "css"}
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
        assert r.content == (CONSOLE.built / asset.removeprefix("/console/")).read_bytes()
    assert "cdn" not in page.text.lower() and "https://" not in page.text


@pytest.mark.parametrize(
    "path",
    [
        "/console/../routers/console.py",
        "/console/%2e%2e/routers/console.py",
        "/console/nope.js",
        "/console/SOURCE_DIGEST",
    ],
)
def test_nothing_outside_the_bundle_is_served(client, path):
    assert client.get(path).status_code == 404


def test_the_chain_names_the_receipt_signer(client):
    from compute.signer import platform_account

    assert client.get("/v1/account/chain").json()["receipt_signer"] == platform_account().address
    assert client.get("/").status_code == 200  # the builder stays at /
