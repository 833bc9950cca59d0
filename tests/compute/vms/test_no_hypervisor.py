"""A platform without QEMU refuses to create machines, naming the runtime, and opens no lease."""

from __future__ import annotations

import pytest

from cxmpute.settings import reset_settings

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0iQmfP3Wj4p0t3sXyq8m6TnY0wTfvYd5H2V4xYQ1c me@x"


@pytest.fixture
def no_hypervisor(monkeypatch, tmp_path):
    # A data directory of its own: the runtime registry is kept per data directory.
    monkeypatch.setenv("CXMPUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CXMPUTE_QEMU_BINARY", str(tmp_path / "no-qemu"))
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


def test_no_hypervisor_is_a_503_naming_the_runtime(no_hypervisor, client, make_wallet, login):
    auth = login(client, make_wallet())
    resp = client.post("/v1/vms", headers=auth, json={"kernel": "bafy-any", "ssh_key": KEY, "price_max_gwei": 10})
    assert resp.status_code == 503, resp.text
    assert resp.json()["field"] == "runtime" and "no-qemu not found" in resp.json()["detail"]
    assert client.get("/v1/vms", headers=auth).json() == []
    assert client.get("/v1/leases", headers=auth).json() == []
    resp = client.post("/v1/vms", json={"kernel": "bafy-any", "ssh_key": KEY, "price_max_gwei": 10})
    assert resp.status_code == 401  # machines are billed to a signed-in account
