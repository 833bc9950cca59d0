from __future__ import annotations

import json

import pytest

from tests.support.endpoints import Flaky


@pytest.fixture
def flaky(monkeypatch):
    """Flaky servers the egress policy lets agents reach: each one's exact address is an allowed host."""
    from cxmpute.settings import reset_settings

    servers = []

    def make(failures: int) -> Flaky:
        servers.append(Flaky(failures))
        allowed = [s.url.removeprefix("http://").rstrip("/") for s in servers]
        monkeypatch.setenv("CXMPUTE_WEB_ALLOWED_HOSTS", json.dumps(allowed))
        reset_settings()
        return servers[-1]

    yield make
    monkeypatch.undo()
    reset_settings()
    for s in servers:
        s.close()
