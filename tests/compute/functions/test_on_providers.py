"""Invocations with a max price run on a provider matched by the market, through its worker's warm pool."""

from __future__ import annotations

import base64
import importlib.util
import math
import sys
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from compute.functions import package

from .conftest import write_function

pytestmark = pytest.mark.slow

# The worker-pool tests' platform: the API and provider workers as real processes.
_spec = importlib.util.spec_from_file_location(
    "worker_pool_fixtures", Path(__file__).parents[1] / "worker" / "conftest.py"
)
_fixtures = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_fixtures)
pool_platform = _fixtures.pool_platform


def test_a_priced_invocation_runs_on_a_provider_and_is_billed_through_its_lease(pool_platform, tmp_path):
    _, key = pool_platform.start_provider("functions", price=2, cpu=2, memory_mb=4096)
    provider = Account.from_key(key).address
    pool_platform.wait_provisions(1)
    _, auth = pool_platform.user()
    data = package.build(write_function(tmp_path / "fn"))
    with httpx.Client(base_url=pool_platform.url, headers=auth, timeout=300) as http:
        deployed = http.put(
            "/v1/functions/on-provider",
            json={
                "package_base64": base64.b64encode(data).decode(),
                "memory_mb": 128,
                "timeout_s": 3,
                "price_max_gwei": 5,
            },
        )
        assert deployed.status_code == 201, deployed.text
        first = http.post("/v1/functions/on-provider/invoke", json={"event": {"echo": "remote"}})
        assert first.status_code == 200, f"{first.text}\n{pool_platform.logs()}"
        before = http.get("/v1/account/balance").json()["user_gwei"]
        second = http.post("/v1/functions/on-provider/invoke", json={"event": {"echo": "again"}})
        spent = before - http.get("/v1/account/balance").json()["user_gwei"]
        assert second.status_code == 200, second.text
        first, second = first.json(), second.json()
        assert first["where"] == second["where"] == provider
        assert first["cold"] is True and second["cold"] is False and second["result"]["calls"] == 2
        assert second["result"]["echo"] == "again" and second["stdout"] == "event {'echo': 'again'}\n"

        job = http.get(f"/v1/work/{second['job_id']}").json()
        lease = http.get(f"/v1/leases/{job['lease_id']}").json()
        assert job["kind"] == "function" and job["provider"] == provider and job["status"] == "done"
        assert (
            job["cost_gwei"] == lease["paid_gwei"] == lease["price_gwei"] * lease["compute_units"] * lease["metered_s"]
        )  # the lease meters whole seconds...
        per_ms = math.ceil(lease["price_gwei"] * lease["compute_units"] * second["billed_ms"] / 1000)
        assert second["billed_ms"] >= 1 and second["cost_gwei"] == per_ms < job["cost_gwei"]
        assert spent == per_ms  # ...and the invocation is settled on its milliseconds

        slow = http.post("/v1/functions/on-provider/invoke", json={"event": {"sleep": 30}})
        assert slow.status_code == 504, slow.text
        assert slow.json()["field"] == "timeout_s" and "timeout of 3 s" in slow.json()["detail"]
        assert slow.json()["where"] == provider
