"""Two API replicas and two run executors on one PostgreSQL database serve the same runs: a run submitted to
either replica is read, and can be cancelled, through the other, and both executors take runs."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from cxmpute.ports import free_port
from flows.server import client_env
from tests.support import processes
from tests.support.up import postgres_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

RUNS = 16


def _doc(i: int) -> dict:
    return {
        "name": f"replica-{i}",
        "inputs": {"x": {"default": "a"}},
        "outputs": {"o": {"node": "t", "field": "text"}},
        "nodes": [
            {"id": "x", "agent": "io.input", "params": {"name": "x"}},
            {"id": "w", "agent": "util.wait", "params": {"seconds": 0.3}},
            {"id": "t", "agent": "io.template", "params": {"template": "{{ v }}!"}},
        ],
        "edges": [
            {"source": "x", "source_field": "value", "target": "w", "target_field": "value"},
            {"source": "w", "source_field": "value", "target": "t", "target_field": "variables.v"},
        ],
    }


@pytest.fixture
def replicas(prefect_api, tmp_path):
    with postgres_database() as database_url:
        env = {
            **os.environ,
            **client_env(prefect_api),
            "CXMPUTE_HOME": str(tmp_path / "platform"),
            "CXMPUTE_DATABASE_URL": database_url,
        }
        log = tmp_path / "platform.log"
        ports = [free_port(), free_port()]
        procs = [processes.serve(port, env, log) for port in ports]
        procs += [processes.cxmpute(["executor", "start", "--concurrency", "4"], env, log) for _ in range(2)]
        try:
            yield [f"http://127.0.0.1:{port}" for port in ports], database_url
        finally:
            processes.stop(procs)


def test_two_replicas_and_two_executors_serve_the_same_runs(replicas):
    from sqlalchemy import create_engine, text

    (a, b), database_url = replicas
    ids = []
    for i in range(RUNS):
        resp = httpx.post(f"{(a, b)[i % 2]}/v1/runs", json={"document": _doc(i), "inputs": {"x": f"r{i}"}}, timeout=30)
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["id"])
    deadline = time.monotonic() + 300
    views: dict[int, dict] = {}
    while len(views) < RUNS and time.monotonic() < deadline:
        for i, run_id in enumerate(ids):
            if i not in views:
                view = httpx.get(f"{(b, a)[i % 2]}/v1/runs/{run_id}", timeout=30).json()  # read on the other
                if view["state"] in ("completed", "failed", "cancelled"):
                    views[i] = view
        time.sleep(0.5)
    assert len(views) == RUNS
    for i, view in views.items():
        assert view["state"] == "completed" and view["outputs"] == {"o": f"r{i}!"}, view
    listed = {r["id"] for r in httpx.get(f"{b}/v1/runs", params={"limit": 100}, timeout=30).json()["items"]}
    assert set(ids) <= listed

    engine = create_engine(database_url)
    with engine.connect() as conn:
        executors = {
            row[0]
            for row in conn.execute(text("SELECT executor FROM workflow_runs WHERE id = ANY(:ids)"), {"ids": ids})
        }
    engine.dispose()
    assert len(executors) == 2, executors  # both executors took runs

    approval = {"name": "approval", "nodes": [{"id": "r", "agent": "hitl.approve", "params": {"prompt": "?"}}]}
    run_id = httpx.post(f"{a}/v1/runs", json={"document": approval}, timeout=30).json()["id"]
    deadline = time.monotonic() + 60
    while httpx.get(f"{b}/v1/runs/{run_id}", timeout=30).json()["state"] != "waiting":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert httpx.post(f"{b}/v1/runs/{run_id}/cancel", timeout=30).status_code == 202
    while httpx.get(f"{a}/v1/runs/{run_id}", timeout=30).json()["state"] != "cancelled":
        assert time.monotonic() < deadline + 60
        time.sleep(0.3)
