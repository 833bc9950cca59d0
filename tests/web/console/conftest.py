"""The console's suites: a second person's browser page and an HTTP client on the platform served for real."""

from __future__ import annotations

import httpx
import pytest

from tests.support.browser import new_page


@pytest.fixture
def second_page(browser, api_url):
    """Another person's browser beside ``page`` (its own storage, so its own session)."""
    with new_page(browser, api_url) as page:
        yield page


@pytest.fixture
def api(api_url):
    with httpx.Client(base_url=api_url, timeout=60) as client:
        yield client
