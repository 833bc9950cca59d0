"""The README's journeys run against one real `cxmpute up` (anonymous local use, with its local provider),
started once for the session, exactly as a user starts it in a first terminal."""

from __future__ import annotations

import pytest

from tests.support.readme import run_journey, user_env, workspace
from tests.support.up import UpPlatform, start_up, wait_until_ready


@pytest.fixture(scope="session")
def up(tmp_path_factory) -> UpPlatform:
    # TCG whatever the host offers: the journey proves the emulated path every CI machine has.
    platform = start_up(
        tmp_path_factory.mktemp("journeys-up"), anonymous=True, provider=True, env={"CXMPUTE_VM_ACCEL": "tcg"}
    )
    try:
        yield wait_until_ready(platform)
    finally:
        platform.stop()


@pytest.fixture
def journey(up, tmp_path):
    """``journey(name, timeout)``: the README's blocks for ``name``, run in a fresh clone-like directory from a
    user's second terminal; returns the run, its commands' outputs checked to have exited 0."""
    return lambda name, timeout: run_journey(
        name, cwd=workspace(tmp_path / "clone"), env=user_env(up, tmp_path / "home"), timeout=timeout
    ).check(up)
