"""The browser suites (builder, console): Debian's Chromium driven by Playwright against the platform served for
real on 127.0.0.1, one browser per module."""

from __future__ import annotations

import pytest

from tests.support.browser import chromium, new_page


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, api_url):
    with new_page(browser, api_url) as page:
        yield page
