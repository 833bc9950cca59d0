"""The adversarial suite runs against real `cxmpute up` processes: one with anonymous access, one without."""

from __future__ import annotations

import pytest

from tests.support.up import UpPlatform, start_up


@pytest.fixture(scope="session")
def open_platform(tmp_path_factory) -> UpPlatform:
    """`cxmpute up` with CXMPUTE_ALLOW_ANONYMOUS on (the default)."""
    platform = start_up(tmp_path_factory.mktemp("up-open"), anonymous=True)
    yield platform
    platform.stop()


@pytest.fixture(scope="session")
def closed_platform(tmp_path_factory) -> UpPlatform:
    """`cxmpute up` with CXMPUTE_ALLOW_ANONYMOUS off."""
    platform = start_up(tmp_path_factory.mktemp("up-closed"), anonymous=False)
    yield platform
    platform.stop()


@pytest.fixture(scope="session", params=["open", "closed"])
def platform(request) -> UpPlatform:
    """Each test that takes it runs against both."""
    return request.getfixturevalue(f"{request.param}_platform")
