"""Workflow nodes matched onto provider worker processes: placement, data flow between providers, billing."""

from __future__ import annotations

import math
import signal
import time

import httpx
import pytest
from eth_account import Account

from compute.market.pricing import platform_fee

pytestmark = pytest.mark.slow


def chain_doc(price_max: int) -> dict:
    """Three sandboxed code nodes of growing size, each fed by the previous one."""

    def node(nid: str, code: str, cpu: int, memory_mb: int) -> dict:
        return {
            "id": nid,
            "agent": "code.exec",
            "params": {"code": code},
            "options": {"resources": {"cpu": cpu, "memory_mb": memory_mb}},
        }

    return {
        "name": "pool",
        "compute": {"price_max_gwei": price_max},
        "nodes": [
            node("small", "result = 6 * 7", 1, 512),
            node("medium", "result = inputs['x'] + 1", 2, 2048),
            node("large", "result = inputs['x'] * 2", 4, 4096),
        ],
        "edges": [
            {"source": "small", "source_field": "result", "target": "medium", "target_field": "inputs.x"},
            {"source": "medium", "source_field": "result", "target": "large", "target_field": "inputs.x"},
        ],
        "outputs": {"value": {"node": "large", "field": "result"}},
    }


def run(platform, auth: dict, doc: dict, timeout: float = 180) -> dict:
    resp = httpx.post(f"{platform.url}/v1/runs", json={"document": doc, "inputs": {}}, headers=auth)
    assert resp.status_code == 202, resp.text
    run_id = resp.json()["id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        view = httpx.get(f"{platform.url}/v1/runs/{run_id}", headers=auth, timeout=30).json()
        if view["state"] in ("completed", "failed", "cancelled") and all(
            n["state"] in ("completed", "failed", "cached", "skipped", "crashed", "cancelled")
            for n in view["nodes"].values()
        ):
            return view
        time.sleep(0.2)
    raise AssertionError(f"run did not finish: {view}\n{platform.logs()}")


@pytest.fixture(scope="module")
def three_providers(pool_platform):
    keys = {
        name: pool_platform.start_provider(name, price=price, cpu=cpu, memory_mb=mem)[1]
        for name, (price, cpu, mem) in SIZES.items()
    }
    pool_platform.wait_provisions(3)
    return {name: Account.from_key(key).address for name, key in keys.items()}


def test_nodes_land_on_the_cheapest_provider_that_fits_and_each_is_paid_its_seconds(pool_platform, three_providers):
    user, auth = pool_platform.user()
    before = httpx.get(f"{pool_platform.url}/v1/account/balance", headers=auth).json()["user_gwei"]
    earned_before = {name: _earnings(pool_platform, addr) for name, addr in three_providers.items()}

    view = run(pool_platform, auth, chain_doc(price_max=10))
    assert view["state"] == "completed", view
    assert view["outputs"] == {"value": 86}  # (6*7 + 1) * 2, passed from provider to provider

    placed = {nid: view["nodes"][nid]["placement"] for nid in ("small", "medium", "large")}
    assert placed["small"]["provider"] == three_providers["cheap"]
    assert placed["medium"]["provider"] == three_providers["mid"]  # cheap has 1 CPU
    assert placed["large"]["provider"] == three_providers["big"]

    spent = 0
    earned = {name: 0 for name in three_providers}
    for where in placed.values():
        job = httpx.get(f"{pool_platform.url}/v1/work/{where['job_id']}", headers=auth).json()
        assert job["status"] == "done" and job["owner"] == user.address
        lease = httpx.get(f"{pool_platform.url}/v1/leases/{job['lease_id']}", headers=auth).json()
        assert lease["metered_s"] == max(1, math.ceil(job["seconds"]))  # exactly its seconds, rounded up
        assert (
            lease["paid_gwei"] == job["cost_gwei"] == lease["price_gwei"] * lease["compute_units"] * lease["metered_s"]
        )
        assert lease["status"] == "ended" and lease["end_reason"] == "completed" and lease["escrow_left_gwei"] == 0
        spent += job["cost_gwei"]
        name = next(n for n, a in three_providers.items() if a == job["provider"])
        earned[name] += job["cost_gwei"] - platform_fee(job["cost_gwei"])

    after = httpx.get(f"{pool_platform.url}/v1/account/balance", headers=auth).json()["user_gwei"]
    assert before - after == spent  # escrow beyond the metered seconds came back
    for name, addr in three_providers.items():
        assert _earnings(pool_platform, addr) - earned_before[name] == earned[name]


def test_no_provider_in_the_price_range_fails_the_node_with_the_reason(pool_platform, three_providers):
    _, auth = pool_platform.user()
    doc = chain_doc(price_max=10)
    doc["compute"]["price_max_gwei"] = 1
    view = run(pool_platform, auth, doc)
    assert view["state"] == "failed"
    assert "medium" in view["error"] and "no provision matches" in view["error"]
    assert view["nodes"]["small"]["state"] == "completed"


def test_network_placement_without_a_price_is_refused_naming_the_field(pool_platform, three_providers):
    _, auth = pool_platform.user()
    doc = chain_doc(price_max=10)
    doc["compute"] = {"placement": "network"}
    resp = httpx.post(f"{pool_platform.url}/v1/runs", json={"document": doc, "inputs": {}}, headers=auth)
    assert resp.status_code == 422
    assert "compute.price_max_gwei" in resp.text


def _earnings(platform, address: str) -> int:
    auth = platform.sign_in(Account.from_key(platform.provider_keys[address]))
    return httpx.get(f"{platform.url}/v1/account/balance", headers=auth).json()["earnings_gwei"]


def test_a_provider_worker_stops_on_sigterm(pool_platform, three_providers):
    """Whether it is still joining or already serving, SIGTERM stops the worker cleanly."""
    for wait_for_it in (False, True):
        proc, key = pool_platform.start_provider("stopping", price=50, cpu=1, memory_mb=512)
        log = pool_platform.home / f"provider-stopping-{len(pool_platform.procs) - 1}" / "worker.log"
        # Its own log, not the market's provision count: the first round's worker may have published before
        # it stopped, and a signal sent before the new process is up would meet Python's default handler.
        ready = "serving provision" if wait_for_it else "joining"  # serving, or signing in/registering/staking
        while not log.exists() or ready not in log.read_text():
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, pool_platform.logs()
        pool_platform.workers.pop(Account.from_key(key).address)


CHAOS_ROUNDS = 20


def chaos_doc() -> dict:
    return {
        "name": "chaos",
        "compute": {"price_max_gwei": 10},
        "inputs": {"i": {"type": "integer", "required": True}},
        "nodes": [
            {"id": "in", "agent": "io.input", "params": {"name": "i"}},
            {
                "id": "slow",
                "agent": "code.exec",
                "params": {"code": "import time\ntime.sleep(1.5)\nresult = inputs['i'] * 10"},
                "options": {"resources": {"cpu": 1, "memory_mb": 512}},
            },
        ],
        "edges": [{"source": "in", "source_field": "value", "target": "slow", "target_field": "inputs.i"}],
        "outputs": {"value": {"node": "slow", "field": "result"}},
    }


def test_killing_the_provider_mid_node_loses_nothing_and_bills_once(pool_platform, three_providers):
    """SIGKILL the worker running the node, 20 times: each run completes elsewhere, exactly one attempt is
    accepted and paid, the lost attempt's lease is refunded. Even rounds restart the killed provider at once
    (its new process hands the lost job back); odd rounds restart it only after the failover (heartbeats lapse)."""
    _, auth = pool_platform.user(deposit_eth=20)
    url = pool_platform.url
    for round_ in range(CHAOS_ROUNDS):
        resp = httpx.post(f"{url}/v1/runs", json={"document": chaos_doc(), "inputs": {"i": round_}}, headers=auth)
        assert resp.status_code == 202, resp.text
        run_id = resp.json()["id"]
        running = _wait_job(url, auth, run_id, "running")
        victim = running["provider"]
        key = pool_platform.provider_keys[victim]
        pool_platform.kill(victim)
        if round_ % 2 == 0:
            pool_platform.start_provider(
                f"restarted-{round_}",
                price=_price(three_providers, victim),
                cpu=_cpu(three_providers, victim),
                memory_mb=_mem(three_providers, victim),
                key=key,
            )
        view = _wait_run(url, auth, run_id)
        assert view["state"] == "completed", (round_, view, pool_platform.logs())
        assert view["outputs"] == {"value": round_ * 10}
        placement = view["nodes"]["slow"]["placement"]
        assert placement["provider"] != victim and placement["attempts"] >= 2

        attempts = [
            j
            for j in httpx.get(f"{url}/v1/work", params={"limit": 50}, headers=auth).json()
            if j["work_key"].startswith(run_id)
        ]
        accepted = [j for j in attempts if j["status"] in ("done", "failed")]
        assert len(accepted) == 1 and accepted[0]["status"] == "done" and accepted[0]["id"] == placement["job_id"]
        for job in attempts:
            lease = httpx.get(f"{url}/v1/leases/{job['lease_id']}", headers=auth).json()
            if job is accepted[0]:
                assert lease["paid_gwei"] == job["cost_gwei"] > 0
            else:
                assert job["status"] == "abandoned"
                assert lease["end_reason"] == "provider-lost" and lease["paid_gwei"] == 0 and lease["metered_s"] == 0
        if round_ % 2 == 1:
            pool_platform.start_provider(
                f"restarted-{round_}",
                price=_price(three_providers, victim),
                cpu=_cpu(three_providers, victim),
                memory_mb=_mem(three_providers, victim),
                key=key,
            )
        pool_platform.wait_provisions(2)


SIZES = {"cheap": (1, 1, 1024), "mid": (2, 2, 4096), "big": (5, 8, 16384)}


def _size(providers: dict, address: str) -> tuple[int, int, int]:
    return SIZES[next(name for name, a in providers.items() if a == address)]


def _price(providers, address):
    return _size(providers, address)[0]


def _cpu(providers, address):
    return _size(providers, address)[1]


def _mem(providers, address):
    return _size(providers, address)[2]


def _wait_job(url: str, auth: dict, run_id: str, status: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for job in httpx.get(f"{url}/v1/work", params={"status": status}, headers=auth).json():
            if job["work_key"].startswith(run_id):
                return job
        time.sleep(0.05)
    raise AssertionError(f"no {status} job for run {run_id}")


def _wait_run(url: str, auth: dict, run_id: str, timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        view = httpx.get(f"{url}/v1/runs/{run_id}", headers=auth, timeout=30).json()
        if view["state"] in ("completed", "failed", "cancelled") and view["nodes"].get("slow", {}).get("state") in (
            "completed",
            "failed",
        ):
            return view
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish: {view}")
