"""Chaos for the execution core: run executors are SIGKILLed at random points across concurrent runs whose
nodes run locally and on providers, and the API is restarted a few times. Every run completes with the right
outputs, no completed node is executed twice, no node is billed twice, no lease is left open and the books
balance."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from sqlalchemy import select

from compute.ledger.book import total
from compute.models import LedgerAccount
from cxmpute.db import session_scope
from cxmpute.settings import Settings
from tests.support.endpoints import Flaky

pytestmark = pytest.mark.slow

KILLS = 20
API_RESTARTS = 3
RUNS_AT_START = 6


def chaos_doc(i: int, counter: str) -> dict:
    """An input, a local call, a node on a provider, and a local template over its result."""
    return {
        "name": f"chaos-{i}",
        "compute": {"price_max_gwei": 10},
        "inputs": {"i": {"type": "integer", "default": i}},
        "nodes": [
            {"id": "in", "agent": "io.input", "params": {"name": "i"}},
            {"id": "call", "agent": "http.request", "params": {"url": f"{counter}run-{i}"}},
            {
                "id": "net",
                "agent": "code.exec",
                "params": {"code": "import time\ntime.sleep(0.5)\nresult = inputs['i'] * 10"},
                "options": {"resources": {"cpu": 1, "memory_mb": 512}},
            },
            {"id": "out", "agent": "io.template", "params": {"template": "{{ v }}/{{ s }}"}},
        ],
        "edges": [
            {"source": "in", "source_field": "value", "target": "net", "target_field": "inputs.i"},
            {"source": "call", "source_field": "status", "target": "net", "target_field": "inputs.status"},
            {"source": "net", "source_field": "result", "target": "out", "target_field": "variables.v"},
            {"source": "call", "source_field": "status", "target": "out", "target_field": "variables.s"},
        ],
        "outputs": {"text": {"node": "out", "field": "text"}},
    }


def _submit(url: str, auth: dict, doc: dict) -> str:
    for _ in range(100):  # the API may be restarting
        try:
            resp = httpx.post(f"{url}/v1/runs", json={"document": doc, "inputs": {}}, headers=auth, timeout=30)
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        assert resp.status_code == 202, resp.text
        return resp.json()["id"]
    raise AssertionError("the API did not take the run")


def _completed_executions(flow_run_id: str) -> Counter[str]:
    """Per node, the task runs that executed it to completion (a cached reuse is not an execution)."""
    done: Counter[str] = Counter()
    with get_client(sync_client=True) as client:
        for tr in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])), limit=200
        ):
            if tr.state is not None and tr.state.is_completed() and tr.state.name != "Cached":
                done[tr.name] += 1
    return done


def test_runs_survive_executors_killed_at_random_and_api_restarts(chaos_platform):
    platform = chaos_platform
    rng = random.Random(19)
    counter = Flaky()
    # The executors' agents may call the counting endpoint (the egress policy allows its exact address).
    platform.env["CXMPUTE_WEB_ALLOWED_HOSTS"] = json.dumps([counter.host])
    for proc in list(platform.executors):
        platform.kill_executor(proc)
    for name in ("one", "two"):
        platform.start_provider(f"chaos-{name}", price=1, cpu=2, memory_mb=2048)
    platform.wait_provisions(2)
    user, auth = platform.user(deposit_eth=20)
    for _ in range(2):  # two at all times: one is always there to take the other's runs
        platform.start_executor()

    runs = {i: _submit(platform.url, auth, chaos_doc(i, counter.url)) for i in range(RUNS_AT_START)}
    restarts_at = {7, 13, 18}
    for kill in range(KILLS):
        time.sleep(rng.uniform(0.3, 2.0))
        platform.kill_executor(rng.choice(platform.executors))
        platform.start_executor()
        if kill in restarts_at:
            platform.crash_api()
            platform.start_api()
        if kill % 4 == 3:
            i = len(runs)
            runs[i] = _submit(platform.url, auth, chaos_doc(i, counter.url))

    deadline = time.monotonic() + 300
    views: dict[int, dict] = {}
    while len(views) < len(runs) and time.monotonic() < deadline:
        for i, run_id in runs.items():
            if i in views:
                continue
            view = httpx.get(f"{platform.url}/v1/runs/{run_id}", headers=auth, timeout=30).json()
            if view["state"] in ("completed", "failed", "cancelled"):
                views[i] = view
        time.sleep(0.5)
    assert len(views) == len(runs), f"runs still going: {sorted(set(runs) - set(views))}\n{platform.logs()}"

    for i, view in views.items():
        assert view["state"] == "completed", (i, view.get("error"), view.get("state_message"))
        assert view["outputs"] == {"text": f"{i * 10}/200"}
        executions = _completed_executions(view["flow_run_id"])
        # The provider node executes as a job, counted below: a task run that adopted the job of an executor that
        # died or lost the run completes without executing it again.
        executions.pop("net", None)
        assert all(n <= 1 for n in executions.values()), (i, executions)
        assert counter.paths[f"/run-{i}"] >= 1

    jobs = [j for j in httpx.get(f"{platform.url}/v1/work", params={"limit": 500}, headers=auth).json()]
    by_run: dict[str, list[dict]] = {}
    for job in jobs:
        by_run.setdefault(job["work_key"].split(":")[0], []).append(job)
    for i, run_id in runs.items():
        accepted = [j for j in by_run.get(run_id, []) if j["status"] in ("done", "failed")]
        assert len(accepted) == 1 and accepted[0]["status"] == "done", (i, by_run.get(run_id))
        for job in by_run[run_id]:
            lease = httpx.get(f"{platform.url}/v1/leases/{job['lease_id']}", headers=auth).json()
            assert lease["status"] != "active", lease
            if job["status"] != "done":
                assert lease["paid_gwei"] == 0 and lease["metered_s"] == 0, lease

    assert httpx.get(f"{platform.url}/v1/leases", params={"status": "active"}, headers=auth).json() == []

    url = Settings(home=platform.home / "platform").resolved_database_url
    with session_scope(url) as session:
        assert total(session) == 0
        escrows = session.execute(
            select(LedgerAccount.owner, LedgerAccount.balance).where(
                LedgerAccount.kind == "escrow", LedgerAccount.balance != 0
            )
        ).all()
        assert escrows == [], escrows
