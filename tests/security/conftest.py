"""The adversarial suite runs against real `cxmpute up` processes: one with anonymous access on SQLite, one
without anonymous access on PostgreSQL, so each boundary is tried in both modes and on both databases."""

from __future__ import annotations

import pytest

from tests.support.up import UpPlatform, postgres_database, start_up


@pytest.fixture(scope="session")
def open_platform(tmp_path_factory) -> UpPlatform:
    """`cxmpute up` with CXMPUTE_ALLOW_ANONYMOUS on (the default), on SQLite."""
    platform = start_up(tmp_path_factory.mktemp("up-open"), anonymous=True)
    yield platform
    platform.stop()


@pytest.fixture(scope="session")
def closed_platform(tmp_path_factory) -> UpPlatform:
    """`cxmpute up` with CXMPUTE_ALLOW_ANONYMOUS off, on PostgreSQL."""
    with postgres_database() as url:
        platform = start_up(tmp_path_factory.mktemp("up-closed"), anonymous=False, env={"CXMPUTE_DATABASE_URL": url})
        yield platform
        platform.stop()


@pytest.fixture(scope="session", params=["open", "closed"])
def platform(request) -> UpPlatform:
    """Each test that takes it runs against both."""
    return request.getfixturevalue(f"{request.param}_platform")
