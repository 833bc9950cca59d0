"""Run executors: runs wait in the platform database, survive the death of the process executing them,
and can be cancelled whether queued, running or paused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from uuid import UUID

import httpx
import pytest

from flows.history import read_run
from flows.runner import start_run, wait_run
from tests.support.workflows import APPROVAL

TINY = {"name": "tiny", "nodes": [{"id": "w", "agent": "util.wait", "params": {"seconds": 0}}]}


def _counted(url: str, seconds: float) -> dict:
    """A call counted by the local server, then a wait: a run to kill in the middle of."""
    return {
        "name": "survivor",
        "outputs": {"out": {"node": "slow", "field": "value"}},
        "nodes": [
            {"id": "first", "agent": "http.request", "params": {"url": url}},
            {"id": "slow", "agent": "util.wait", "params": {"seconds": seconds}},
        ],
        "edges": [{"source": "first", "source_field": "status", "target": "slow", "target_field": "value"}],
    }


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


class _OwnPlatform:
    """A run submitted to a platform database of its own (its own data dir), for executors started as processes
    that share the session's Prefect server."""

    def __init__(self, prefect_api: str, home, document: dict, ttl_s: float):
        from cxmpute.settings import Settings
        from flows.server import client_env

        self.env = {
            **os.environ,
            **client_env(prefect_api),
            "CXMPUTE_HOME": str(home),
            "CXMPUTE_EXECUTOR_CLAIM_TTL_S": str(ttl_s),
        }
        submit = f"from flows.runner import start_run\nprint(start_run({document!r}, {{}}), flush=True)"
        self.run_id = (
            subprocess.run([sys.executable, "-c", submit], env=self.env, capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        self.url = Settings(home=home).resolved_database_url
        self.logs = home

    def located(self):
        from cxmpute.db import session_scope
        from flows import queue

        with session_scope(self.url) as session:
            return queue.locate(session, [self.run_id])[self.run_id]

    def holder(self) -> str | None:
        from cxmpute.db import session_scope
        from flows.store import WorkflowRunRow

        with session_scope(self.url) as session:
            return session.get(WorkflowRunRow, self.run_id).executor

    def executor(self, name: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        return subprocess.Popen(
            [sys.executable, "-m", "cxmpute.cli", "executor", "start", "--concurrency", "2"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _flow_state(flow_run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id)).state


def _completed(flow_run_id: str) -> Counter[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])))
    return Counter(
        tr.name for tr in runs if tr.state is not None and tr.state.is_completed() and tr.state.name != "Cached"
    )


def _stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_a_run_survives_the_sigkill_of_its_executor(prefect_api, tmp_path, flaky):
    """Executors of another platform database (their own data dir) share the session's Prefect server: one
    is killed while the run's second node runs, another finishes the run without executing the first again."""
    server = flaky(failures=0)
    platform = _OwnPlatform(prefect_api, tmp_path, _counted(server.url, 4), ttl_s=2)
    first = platform.executor("first")
    try:
        flow_run_id = _until(lambda: platform.located().flow_run_id, 60, "the executor creating the flow run")
        _until(lambda: _node_states(flow_run_id).get("slow") == "RUNNING", 90, "the slow node starting")
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert server.calls == 1
        second = platform.executor("second")
        try:
            _until(lambda: platform.located().status == "done", 120, "the run finishing on the second executor")
        finally:
            _stop(second)
    finally:
        _stop(first)
    assert platform.located().flow_run_id == flow_run_id, "a second flow run was created"
    assert _flow_state(flow_run_id).is_completed()
    assert server.calls == 1, "the node that had completed was executed again"


def test_a_node_output_is_stored_before_its_completion_is_recorded(prefect_api, monkeypatch):
    """An executor killed between the two steps must not leave a node recorded completed whose output a run
    executed again cannot find (it would execute the node a second time)."""
    from prefect.task_engine import AsyncTaskRunEngine
    from prefect.transactions import get_transaction

    from flows.engine import compile_workflow

    seen: list[tuple[str, bool]] = []
    record = AsyncTaskRunEngine.set_state

    async def set_state(self, state, force=False):
        txn = get_transaction()
        if state.is_completed() and txn is not None and txn.key:
            seen.append((self.task_run.name, await txn.store.aexists(txn.key)))
        return await record(self, state, force)

    monkeypatch.setattr(AsyncTaskRunEngine, "set_state", set_state)
    doc = {
        "name": "stored",
        "outputs": {"o": {"node": "b", "field": "text"}},
        "nodes": [
            {"id": "a", "agent": "io.template", "params": {"template": "x"}},
            {"id": "b", "agent": "io.template", "params": {"template": "{{ v }}y"}},
        ],
        "edges": [{"source": "a", "source_field": "text", "target": "b", "target_field": "variables.v"}],
    }
    assert compile_workflow(doc)() == {"o": "xy"}
    assert sorted(seen) == [("a", True), ("b", True)]


def _freeze_outside_a_write(proc: subprocess.Popen, url: str) -> None:
    """SIGSTOP the process at a moment it holds no write transaction: a process frozen inside one holds SQLite's
    write lock, and then no other process can write at all (not what this test is about)."""
    import sqlite3

    for _ in range(100):
        proc.send_signal(signal.SIGSTOP)
        probe = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0.5)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.rollback()
            return
        except sqlite3.OperationalError:
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        finally:
            probe.close()
    raise AssertionError("the executor was always inside a write")


@pytest.mark.slow
def test_an_executor_that_stalled_past_its_claim_leaves_the_run_to_the_one_that_took_it(prefect_api, tmp_path, flaky):
    """An executor frozen (SIGSTOP) for longer than its claim lasts loses the run to another; when it wakes it
    learns so at its next renewal, stops the node it had in flight and leaves Prefect's records alone, so the run
    ends once, completed by the executor that holds it, with each node completed once."""
    server = flaky(failures=0)
    platform = _OwnPlatform(prefect_api, tmp_path, _counted(server.url, 10), ttl_s=2)
    first = platform.executor("first")
    second = None
    try:
        flow_run_id = _until(lambda: platform.located().flow_run_id, 60, "the executor creating the flow run")
        _until(lambda: _node_states(flow_run_id).get("slow") == "RUNNING", 90, "the slow node starting")
        _freeze_outside_a_write(first, platform.url)
        second = platform.executor("second")
        _until(lambda: f":{second.pid}:" in (platform.holder() or ""), 60, "the second executor taking the run")
        first.send_signal(signal.SIGCONT)
        _until(
            lambda: b"left to the executor that took it over" in (tmp_path / "first.log").read_bytes(),
            30,
            "the first executor leaving the run",
        )
        assert _flow_state(flow_run_id).is_running(), "the executor that lost the run recorded its end"
        _until(lambda: platform.located().status == "done", 120, "the run finishing on the second executor")
        assert first.poll() is None, (tmp_path / "first.log").read_text()
    finally:
        _stop(first, *([second] if second else []))
    assert _flow_state(flow_run_id).is_completed()
    assert _completed(flow_run_id) == {"first": 1, "slow": 1}
    assert server.calls == 1, "the node that had completed was executed again"


def _api_run(api_url: str, document: dict) -> str:
    answer = httpx.post(f"{api_url}/v1/runs", json={"document": document, "inputs": {}}, timeout=30)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def test_a_running_node_is_cancelled(api_url):
    doc = {
        "name": "long",
        "outputs": {"o": {"node": "w", "field": "value"}},
        "nodes": [{"id": "w", "agent": "util.wait", "params": {"seconds": 120}}],
    }
    run_id = _api_run(api_url, doc)
    _until(
        lambda: (n := read_run(run_id, with_results=False).nodes.get("w")) and n.state == "running",
        60,
        "the node starting",
    )
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
        queue.enqueue(
            session, run_id, "queued-owner", "tiny", {}, compiled.parameters({}, "queued-owner", run_id=run_id), []
        )
        session.flush()
        session.get(WorkflowRunRow, run_id).claimed_until = time.time() + 60
    assert read_run(run_id, with_results=False).state == "pending"
    assert cancel_run(run_id, "queued-owner") == "cancelled"
    view = read_run(run_id, with_results=False)
    assert view.state == "cancelled" and view.nodes["w"].state == "skipped" and view.flow_run_id is None
    with session_scope() as session:
        assert session.get(WorkflowRunRow, run_id).status == "done"


def test_cancel_is_refused_for_another_owners_run(api_url):
    from cxmpute.errors import NotFound
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
