"""The workloads page against the platform served for real: a deployed function, invoked once, is listed with
its invocations and cost so far; the other kinds' tables answer too (empty for this owner)."""

from __future__ import annotations

import base64
import uuid

import pytest
from playwright.sync_api import Page, expect

from compute.functions import package
from tests.support import console

pytestmark = pytest.mark.browser

HANDLER = "def handler(event, context):\n    return {'echo': (event or {}).get('echo')}\n"


@pytest.fixture(autouse=True, scope="module")
def _no_warm_sandboxes_left():
    """Warm interpreters hold sandboxes; later tests (and the host) must not inherit them."""
    yield
    from compute.functions.pool import close_all_pools

    close_all_pools()


def test_a_function_with_its_invocations_and_cost(page: Page, api, tmp_path):
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text(HANDLER)
    name = f"console-{uuid.uuid4().hex[:8]}"
    data = base64.b64encode(package.build(tmp_path / "fn")).decode()
    assert api.put(f"/v1/functions/{name}", json={"package_base64": data}).status_code == 201
    invoked = api.post(f"/v1/functions/{name}/invoke", json={"event": {"echo": "console"}})
    assert invoked.status_code == 200, invoked.text

    page.goto("/console#/workloads")
    row = page.locator(f'[data-testid=functions] [data-workload="{name}"]')
    expect(row.locator("td").nth(3)).to_have_text("1")
    expect(row.locator("td").nth(4)).to_contain_text("on the platform")
    expect(row.locator("td").nth(5)).to_contain_text("ETH")
    for table in ("services", "vms", "training"):
        expect(page.get_by_test_id(table)).to_be_visible()
    expect(page.locator("[role=alert]")).to_have_count(0)
    console.screenshot(page, "workloads")
