"""Sign-In with Ethereum from the builder: a wallet in the page (EIP-1193, signing with a real key) signs the
EIP-4361 message; the workflows saved afterwards belong to the wallet's account, not to 'local'."""

from __future__ import annotations

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

WALLET = """(address) => { window.ethereum = { request: async ({ method, params }) => {
  if (method === "eth_requestAccounts") return [address];
  if (method === "eth_chainId") return "0x1";
  if (method === "personal_sign") return await window.walletSign(params[0]);
  throw new Error(`unsupported ${method}`);
} }; }"""


def test_sign_in_with_a_wallet(page: Page, api_url):
    account = Account.create()
    page.expose_function(
        "walletSign",
        lambda hex_message: (
            "0x" + bytes(Account.sign_message(encode_defunct(hexstr=hex_message), account.key).signature).hex()
        ),
    )
    page.add_init_script(f"({WALLET})({account.address.lower()!r})")
    page.goto("/")
    expect(page.get_by_test_id("owner")).to_have_text("local")
    page.get_by_role("button", name="Sign in with wallet").click()
    expect(page.get_by_test_id("owner")).to_have_text(account.address)

    page.get_by_role("button", name="Templates").click()
    page.locator('[data-template="diamond"]').click()
    page.get_by_label("Workflow name").fill("wallet owned")
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("toast")).to_contain_text("Saved wallet owned")
    token = page.evaluate("JSON.parse(localStorage.getItem('cxmpute.session')).token")
    mine = httpx.get(f"{api_url}/v1/workflows", headers={"Authorization": f"Bearer {token}"}).json()["items"]
    local = httpx.get(f"{api_url}/v1/workflows").json()["items"]
    assert "wallet owned" in {w["name"] for w in mine} and "wallet owned" not in {w["name"] for w in local}

    page.reload()  # the session survives a reload, and the saved workflow opens for its owner
    expect(page.get_by_test_id("owner")).to_have_text(account.address)
    expect(page.locator(".react-flow__node")).to_have_count(4)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_test_id("owner")).to_have_text("local")
    assert httpx.get(f"{api_url}/v1/workflows", headers={"Authorization": f"Bearer {token}"}).status_code == 401
