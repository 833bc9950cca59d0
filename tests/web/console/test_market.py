"""The market journey in the console against the platform served for real: a user signs in with a wallet in the
page, deposits through it, filters the offer book, is told why a request matches nothing, rents; the provider
sees the lease on its page, and the user sees the charge on the account page with its receipt checked there."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.support import console

pytestmark = pytest.mark.browser

ROWS = "[data-testid=provisions] tbody tr"


def offers(region: str) -> list[dict]:
    return [
        {"kind": "container", "resources": {"cpu": 8, "memory_mb": 32768}, "price_gwei": 100, "region": region},
        {"kind": "container", "resources": {"cpu": 4, "memory_mb": 8192}, "price_gwei": 60, "region": region},
        {
            "kind": "vm",
            "resources": {"cpu": 16, "memory_mb": 65536, "gpu_count": 2, "gpu_model": "H100"},
            "price_gwei": 900,
            "images": ["ubuntu-24.04"],
            "region": region,
        },
    ]


def test_rent_from_the_market_then_see_the_lease_and_the_charge(page: Page, second_page: Page, api, api_url):
    region = f"test-{uuid.uuid4().hex[:6]}"
    seller, seller_auth, (dear, cheap, gpu) = console.provider(api, offers(region))
    user = console.wallet()

    # Sign in with the wallet in the page, and deposit through it.
    console.wallet_in_page(page, user)
    page.goto("/console#/account")
    expect(page.get_by_test_id("needs-sign-in")).to_be_visible()
    page.get_by_role("button", name="Sign in with wallet").click()
    expect(page.get_by_test_id("owner")).to_have_text(user.address)
    page.get_by_label("Amount (ETH)").fill("0.01")
    page.get_by_role("button", name="Deposit with wallet").click()
    expect(page.get_by_test_id("outcome")).to_contain_text("Deposited 0.01 ETH")
    expect(page.get_by_test_id("balance-user")).to_have_text("0.01 ETH")

    # The offer book, filtered and sorted.
    page.goto("/console#/market")
    page.get_by_label("Region", exact=True).select_option(region)
    expect(page.locator(ROWS)).to_have_count(3)
    page.get_by_label("Min GPUs").fill("1")
    expect(page.locator(ROWS)).to_have_count(1)
    expect(page.locator(ROWS).first).to_have_attribute("data-provision", gpu["id"])
    page.get_by_label("Min GPUs").fill("")
    page.get_by_label("Model or image").fill("ubuntu")
    expect(page.locator(ROWS)).to_have_count(3)  # the containers list no images: they run any
    page.get_by_label("Model or image").fill("")
    page.get_by_label("Price to").fill("99")
    expect(page.locator(ROWS)).to_have_count(1)
    page.get_by_label("Price to").fill("")
    page.get_by_label("Sort").select_option("-price")
    expect(page.locator(ROWS).first).to_have_attribute("data-provision", gpu["id"])
    page.get_by_label("Sort").select_option("price")
    expect(page.locator(ROWS).first).to_have_attribute("data-provision", cheap["id"])
    console.screenshot(page, "market")

    # A request on the cheap provision: why nothing matches under its price, then a quote, then the lease.
    page.locator(f'[data-provision="{cheap["id"]}"]').get_by_role("button", name="Choose").click()
    page.get_by_label("Model / image").fill("python:3.12")
    page.get_by_label("Max price").fill("50")
    page.get_by_role("button", name="Quote").click()
    expect(page.get_by_test_id("why-no-match")).to_contain_text("price")
    page.get_by_label("Max price").fill("80")
    page.get_by_role("button", name="Quote").click()
    expect(page.get_by_test_id("quote")).to_contain_text("at 60 gwei/CU·s")
    page.get_by_role("button", name="Rent").click()
    expect(page.get_by_test_id("outcome")).to_contain_text("Leased")
    expect(page.locator(f'[data-provision="{cheap["id"]}"]')).to_contain_text("3 / 4")  # the book follows the lease
    console.screenshot(page, "market-rented")
    (lease,) = api.get("/v1/leases", headers=console.sign_in_header(api, user)).json()
    assert lease["provision_id"] == cheap["id"] and lease["provider"] == seller.address

    # The provider's page shows the lease.
    console.signed_in(second_page, api_url, seller)
    second_page.goto("/console#/provider")
    expect(second_page.locator(f'[data-lease="{lease["id"]}"]')).to_be_visible()
    expect(second_page.get_by_test_id("stake")).to_have_text("2 ETH")

    # The account page shows the escrow held for it, and its EIP-712 receipt checks out in the page.
    page.goto("/console#/account")
    hold = page.locator('[data-kind="escrow-hold"]').first
    expect(hold).to_contain_text("-")
    hold.get_by_role("button", name="Verify receipt").click()
    expect(hold.get_by_test_id("receipt")).to_contain_text("valid: signed by")

    # Metered and completed by the provider: the user is charged, the provider earns, and its chart shows it.
    resp = api.post(
        f"/v1/leases/{lease['id']}/usage", json={"seconds": 120, "idempotency_key": "console-1"}, headers=seller_auth
    )
    assert resp.status_code == 200, resp.text
    resp = api.post(f"/v1/leases/{lease['id']}/end", json={"reason": "completed"}, headers=seller_auth)
    assert resp.status_code == 200, resp.text
    page.reload()
    expect(page.locator('[data-kind="refund"]').first).to_be_visible()
    hold.get_by_role("button", name="Verify receipt").click()
    expect(hold.get_by_test_id("receipt")).to_contain_text("valid: signed by")

    # Withdrawals pay out to the wallet's address; API keys are issued and revoked here too.
    page.get_by_label("Amount (ETH)").fill("0.001")
    page.get_by_role("button", name="Withdraw to wallet").click()
    expect(page.get_by_test_id("outcome")).to_contain_text("Withdrew 0.001 ETH")
    page.get_by_label("Key name").fill("ci")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("outcome").last).to_contain_text("(shown once)")
    key = page.locator('[data-key="ci"]')
    expect(key).to_contain_text("active")
    console.screenshot(page, "account")
    key.get_by_role("button", name="Revoke").click()
    expect(key).to_contain_text("revoked")

    # The check is the page's own: a lease whose terms were changed on the way no longer verifies.
    def tampered(route):
        body = route.fetch().json()
        route.fulfill(json={**body, "escrow_gwei": body["escrow_gwei"] + 1})

    page.route(f"**/v1/leases/{lease['id']}", tampered)
    page.reload()
    hold.get_by_role("button", name="Verify receipt").click()
    expect(hold.get_by_test_id("receipt")).to_have_text("INVALID: not signed by the platform")
    second_page.reload()
    expect(second_page.locator("[data-testid=earnings-chart] canvas")).to_be_visible()
    expect(second_page.locator(f'[data-lease="{lease["id"]}"]')).to_have_count(0)
    console.screenshot(second_page, "provider")
