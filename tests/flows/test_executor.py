"""Run executors: runs wait in the platform database, survive the death of the process executing them,
and can be cancelled whether queued, running or paused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from uuid import UUID

import httpx
import pytest

from flows.history import read_run
from flows.runner import start_run, wait_run
from tests.support.workflows import APPROVAL

TINY = {"name": "tiny", "nodes": [{"id": "w", "agent": "util.wait", "params": {"seconds": 0}}]}


def _counted(url: str, seconds: float) -> dict:
    """A call counted by the local server, then a wait: a run to kill in the middle of."""
    return {"name": "survivor", "outputs": {"out": {"node": "slow", "field": "value"}},
            "nodes": [{"id": "first", "agent": "http.request", "params": {"url": url}},
                      {"id": "slow", "agent": "util.wait", "params": {"seconds": seconds}}],
            "edges": [{"source": "first", "source_field": "status", "target": "slow", "target_field": "value"}]}


def _until(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {seconds}s")


def _node_states(flow_run_id: str) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])))
    return {tr.name: tr.state.type.value for tr in runs if tr.state is not None}


@pytest.mark.slow
def test_a_run_survives_the_sigkill_of_its_executor(prefect_api, tmp_path, flaky):
    """Executors of another platform database (their own data dir) share the session's Prefect server: one
    is killed while the run's second node runs, another finishes the run without executing the first again."""
    from cxmpute.db import session_scope
    from cxmpute.settings import Settings
    from flows import queue
    from flows.server import client_env

    server = flaky(failures=0)
    home = tmp_path / "home"
    env = {**os.environ, **client_env(prefect_api), "CXMPUTE_HOME": str(home), "CXMPUTE_EXECUTOR_CLAIM_TTL_S": "2"}
    submit = textwrap.dedent(f"""
        from flows.runner import start_run
        print(start_run({_counted(server.url, 4)!r}, {{}}), flush=True)
    """)
    run_id = subprocess.run([sys.executable, "-c", submit], env=env, capture_output=True, text=True,
                            check=True).stdout.strip().splitlines()[-1]
    url = Settings(home=home).resolved_database_url

    def located() -> queue.Located:
        with session_scope(url) as session:
            return queue.locate(session, [run_id])[run_id]

    def executor() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cxmpute.cli", "executor", "start", "--concurrency", "2"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    first = executor()
    try:
        flow_run_id = _until(lambda: located().flow_run_id, 60, "the executor creating the flow run")
        _until(lambda: _node_states(flow_run_id).get("slow") == "RUNNING", 90, "the slow node starting")
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert server.calls == 1
        second = executor()
        try:
            _until(lambda: located().status == "done", 120, "the run finishing on the second executor")
        finally:
            second.terminate()
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    assert located().flow_run_id == flow_run_id, "a second flow run was created"
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    assert state.is_completed(), state
    assert server.calls == 1, "the node that had completed was executed again"


def _api_run(api_url: str, document: dict) -> str:
    answer = httpx.post(f"{api_url}/v1/runs", json={"document": document, "inputs": {}}, timeout=30)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def test_a_running_node_is_cancelled(api_url):
    doc = {"name": "long", "outputs": {"o": {"node": "w", "field": "value"}},
           "nodes": [{"id": "w", "agent": "util.wait", "params": {"seconds": 120}}]}
    run_id = _api_run(api_url, doc)
    _until(lambda: (n := read_run(run_id, with_results=False).nodes.get("w")) and n.state == "running", 60,
           "the node starting")
    answer = httpx.post(f"{api_url}/v1/runs/{run_id}/cancel", timeout=30)
    assert answer.status_code == 202 and answer.json() == {"id": run_id, "state": "cancelling"}
    # Its node would wait 120 s: a run that ends within the minute was stopped, not waited out.
    view = wait_run(run_id, timeout=60)
    assert view.state == "cancelled" and view.nodes["w"].state in ("failed", "cancelled")
    again = httpx.post(f"{api_url}/v1/runs/{run_id}/cancel", timeout=30)
    assert again.status_code == 409 and again.json()["field"] == "run_id"


def test_a_paused_run_is_cancelled(api_url):
    run_id = _api_run(api_url, APPROVAL)
    assert wait_run(run_id, timeout=60, until_waiting=True).state == "waiting"
    assert httpx.post(f"{api_url}/v1/runs/{run_id}/cancel", timeout=30).status_code == 202
    assert wait_run(run_id, timeout=60).state == "cancelled"


def test_a_queued_run_is_cancelled_before_it_starts(prefect_api):
    from cxmpute.db import session_scope
    from flows import queue
    from flows.engine import compile_workflow
    from flows.runner import cancel_run
    from flows.store import WorkflowRunRow

    compiled = compile_workflow(TINY)
    run_id = "queued-" + os.urandom(6).hex()
    with session_scope() as session:  # queued, but held back from executors as a run handed back is
        queue.enqueue(session, run_id, "queued-owner", "tiny", {}, compiled.parameters({}, "queued-owner",
                                                                                       run_id=run_id), [])
        session.flush()
        session.get(WorkflowRunRow, run_id).claimed_until = time.time() + 60
    assert read_run(run_id, with_results=False).state == "pending"
    assert cancel_run(run_id, "queued-owner") == "cancelled"
    view = read_run(run_id, with_results=False)
    assert view.state == "cancelled" and view.nodes["w"].state == "skipped" and view.flow_run_id is None
    with session_scope() as session:
        assert session.get(WorkflowRunRow, run_id).status == "done"


def test_cancel_is_refused_for_another_owners_run(api_url):
    from agxnt.errors import NotFound
    from flows.runner import cancel_run

    run_id = start_run(TINY, {}, "someone-else")
    with pytest.raises(NotFound):
        cancel_run(run_id, "an-attacker")
    assert httpx.post(f"{api_url}/v1/runs/{run_id}/cancel", timeout=30).status_code == 404
    assert httpx.post(f"{api_url}/v1/runs/not-a-run/cancel", timeout=30).status_code == 404


def test_a_full_queue_refuses_with_retry_after(api_url, monkeypatch):
    from cxmpute.settings import get_settings

    monkeypatch.setattr(get_settings(), "run_queue_max", 0)
    answer = httpx.post(f"{api_url}/v1/runs", json={"document": TINY}, timeout=30)
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "5" and answer.json()["field"] == "run"


def test_the_api_process_executes_no_run():
    import flows.runner as runner

    source = open(runner.__file__).read()
    assert "run_flow" not in source and "ThreadPoolExecutor" not in source
