"""Debian's Chromium driven by Playwright against the platform served for real on 127.0.0.1."""

from __future__ import annotations

import httpx
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


@pytest.fixture
def second_page(browser, api_url):
    """Another person's browser beside ``page`` (its own storage, so its own session)."""
    with new_page(browser, api_url) as page:
        yield page


@pytest.fixture
def api(api_url):
    with httpx.Client(base_url=api_url, timeout=60) as client:
        yield client
