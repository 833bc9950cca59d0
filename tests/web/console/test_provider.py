"""The provider page against the platform served for real: a wallet that is no provider is told so; a provider
publishes a provision, prices it and pauses it from the page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.support import console

pytestmark = pytest.mark.browser


def test_a_wallet_that_is_no_provider_is_told_so(page: Page, api_url):
    console.signed_in(page, api_url, console.wallet())
    page.goto("/console#/provider")
    expect(page.get_by_test_id("not-provider")).to_contain_text("cxmpute provider start")


def test_publish_price_and_pause_a_provision(page: Page, api, api_url):
    seller, auth, _ = console.provider(api, [])
    console.signed_in(page, api_url, seller)
    page.goto("/console#/provider")
    expect(page.get_by_test_id("reputation")).not_to_be_empty()
    expect(page.get_by_test_id("slashes")).to_have_text("No slashes.")

    page.get_by_label("Provision kind").select_option("inference")
    page.get_by_label("Provision vCPU").fill("8")
    page.get_by_label("Provision GPUs").fill("1")
    page.get_by_label("Provision GPU model").fill("L4")
    page.get_by_label("Provision price").fill("250")
    page.get_by_label("Provision software").fill("llama-3-8b, mistral-7b")
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_test_id("outcome")).to_contain_text("Published inference provision")
    (mine,) = api.get("/v1/provisions", headers=auth).json()
    assert mine["models"] == ["llama-3-8b", "mistral-7b"] and mine["resources"]["gpu_model"] == "L4"

    row = page.locator(f'[data-provision="{mine["id"]}"]')
    row.get_by_label("New price").fill("180")
    row.get_by_role("button", name="Set price").click()
    expect(page.get_by_test_id("outcome")).to_contain_text("Price set to 180 gwei")
    row.get_by_role("button", name="Pause").click()
    expect(row).to_have_attribute("data-status", "paused")
    mine = api.get(f"/v1/provisions/{mine['id']}").json()
    assert (mine["price_gwei"], mine["status"]) == (180, "paused")
    row.get_by_role("button", name="Resume").click()
    expect(row).to_have_attribute("data-status", "active")
    row.get_by_label("New price").fill("0")
    row.get_by_role("button", name="Set price").click()
    expect(page.get_by_test_id("outcome")).to_contain_text("price_gwei")  # a clear 422 naming the field
