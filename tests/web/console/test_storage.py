"""The storage page against the platform served for real: upload with progress, the file's redundancy, share,
download the same bytes back, delete."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import Page, expect

from tests.support import console

pytestmark = pytest.mark.browser


def test_upload_share_download_delete(page: Page, tmp_path):
    data = os.urandom(6 * 2**20)
    source = tmp_path / "weights.bin"
    source.write_bytes(data)

    page.goto("/console#/storage")
    page.get_by_label("File", exact=True).set_input_files(str(source))
    page.get_by_label("Redundancy").select_option("1")
    # Uploads are throttled to 2 MB/s, so the bar is seen part way before the file is stored.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 2 * 2**20},
    )
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_test_id("upload-percent")).to_have_text(re.compile(r"^[1-9]\d?%$"))
    expect(page.get_by_test_id("outcome")).to_contain_text("Stored weights.bin", timeout=60_000)
    expect(page.get_by_test_id("upload-percent")).to_have_text("100%")
    row = page.locator('[data-file="weights.bin"]')
    expect(row).to_contain_text("6.0 MiB")
    expect(row).to_contain_text("1 copy")

    row.get_by_role("button", name="Share").click()
    expect(page.get_by_test_id("outcome")).to_contain_text("Anyone with the CID can read it")
    expect(row).to_contain_text("shared")
    console.screenshot(page, "storage")

    with page.expect_download() as download:
        row.get_by_role("button", name="Download").click()
    saved = tmp_path / "back.bin"
    download.value.save_as(saved)
    assert saved.read_bytes() == data

    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
