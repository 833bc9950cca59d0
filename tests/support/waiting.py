"""Waiting for a platform to get somewhere, with its logs in the failure."""

from __future__ import annotations

import time


def until(check, what: str, platform, timeout: float = 60):
    """``check()``'s first truthy answer, polled until ``timeout`` seconds have passed."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s\n{platform.logs()}")
