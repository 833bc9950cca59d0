"""Starting, watching, resuming and re-running workflow runs: the API does it here (the CLI and the builder
reach it through the API).

A run is created in the Prefect API first (so its id is known at once) and then executed by this
process's run pool; its state, per-node states and results are read back from the Prefect API.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from contextvars import copy_context
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.flow_engine import run_flow
from prefect.flow_runs import resume_flow_run
from prefect.settings import PREFECT_UI_URL, temporary_settings

from agxnt.builtins import ApprovalResponse
from agxnt.errors import AgentError, NotFound
from flows.engine import compile_workflow
from flows.history import RunView, read_run
from flows.spec import Workflow
from flows.validate import WorkflowInvalid, check_inputs

_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="cxmpute-run")
# Runs execute inside this process; the tag lets a later process on this host find runs it orphaned.
EXECUTOR_TAG = f"executor:{socket.gethostname()}:{os.getpid()}"
_active: dict[str, threading.Event] = {}
_lock = threading.Lock()


def _execute(compiled, flow_run, parameters: dict[str, Any], done: threading.Event) -> None:
    try:
        # No Prefect UI is served (the builder shows runs): an empty UI URL keeps the engine from logging a
        # "View at" link to a page that does not exist.
        with temporary_settings({PREFECT_UI_URL: ""}):
            run_flow(compiled.flow, flow_run=flow_run, parameters=parameters, return_type="state")
    finally:
        done.set()
        with _lock:
            _active.pop(str(flow_run.id), None)


def start_run(
    document: dict[str, Any] | Workflow,
    inputs: dict[str, Any] | None = None,
    owner: str = "local",
    *,
    scopes: dict[str, str] | None = None,
    tags: list[str] | None = None,
) -> str:
    """Validate the document and the inputs, create the flow run in the Prefect API, start it in the
    background; return its id. An invalid document or inputs raise :class:`WorkflowInvalid`, creating nothing."""
    compiled = compile_workflow(document)
    if problems := check_inputs(compiled.plan.workflow, inputs or {}):
        raise WorkflowInvalid(problems)
    parameters = compiled.parameters(inputs, owner, scopes)
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(
            compiled.flow, name=compiled.plan.workflow.name, parameters=parameters,
            tags=[f"owner:{owner}", EXECUTOR_TAG, *(tags or [])],
        )
    done = threading.Event()
    with _lock:
        _active[str(flow_run.id)] = done
    # the caller's context travels with the run (Prefect settings, tags)
    _pool.submit(copy_context().run, _execute, compiled, flow_run, parameters, done)
    return str(flow_run.id)


def wait_run(run_id: str, timeout: float | None = None, poll: float = 0.2, until_waiting: bool = False) -> RunView:
    """Block until the run finishes (or pauses for a person, when ``until_waiting``)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    done = _active.get(run_id)
    while True:
        if done is not None and not until_waiting:
            done.wait(poll)
            if not done.is_set():
                continue
        view = read_run(run_id, with_results=False)
        if view.finished:
            return _settled(run_id, view)
        if until_waiting and view.state == "waiting":
            return read_run(run_id)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {view.state} after {timeout}s")
        if done is None:
            time.sleep(poll)


def _settled(run_id: str, view: RunView, grace: float = 10.0) -> RunView:
    """Task-run states reach the API as events, a moment after the flow run ends; wait for them briefly."""
    until = time.monotonic() + grace
    while not view.settled and time.monotonic() < until:
        time.sleep(0.1)
        view = read_run(run_id, with_results=False)
    return read_run(run_id)


def run_workflow(document: dict[str, Any] | Workflow, inputs: dict[str, Any] | None = None,
                 owner: str = "local", timeout: float | None = None) -> RunView:
    """Run a workflow to the end and return its view (state, outputs, per-node runs)."""
    return wait_run(start_run(document, inputs, owner), timeout=timeout)


def _parameters(run_id: str) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        try:
            return client.read_flow_run(UUID(run_id)).parameters or {}
        except (ObjectNotFound, ValueError):
            raise NotFound(f"run {run_id} not found", field="run_id") from None


def rerun_from(run_id: str, node_id: str, owner: str, inputs: dict[str, Any] | None = None) -> str:
    """Start a new run of the same document that reuses the outputs of every node not downstream of
    ``node_id`` from ``run_id`` and executes ``node_id`` and its descendants again."""
    params = _parameters(run_id)
    if params.get("owner") != owner:
        raise NotFound(f"run {run_id} not found", field="run_id")
    compiled = compile_workflow(params["document"])
    if node_id not in compiled.plan.agents:
        raise AgentError(f"run {run_id} has no node {node_id!r} (nodes: {', '.join(compiled.plan.order)})",
                         field="node", status_code=422)
    fresh = compiled.plan.descendants(node_id)
    previous = params.get("scopes") or {}
    scopes = {nid: previous.get(nid, run_id) for nid in compiled.plan.order if nid not in fresh}
    return start_run(params["document"], inputs if inputs is not None else params.get("inputs"), owner,
                     scopes=scopes, tags=[f"rerun-of:{run_id}"])


def resume_run(run_id: str, owner: str, response: ApprovalResponse) -> None:
    """Answer the approval a paused run waits for."""
    params = _parameters(run_id)
    if params.get("owner") != owner:
        raise NotFound(f"run {run_id} not found", field="run_id")
    try:
        resume_flow_run(UUID(run_id), run_input=response.model_dump(mode="json"))
    except Exception as exc:  # NotPausedError, FlowPauseTimeout: the caller's mistake, said plainly
        raise AgentError(f"run {run_id} is not waiting for an answer ({exc})", field="run_id",
                         status_code=409) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans() -> list[str]:
    """Mark crashed the unfinished runs whose executing process on this host is gone, so they stop
    looking alive; re-running them from the failed node reuses every node that had completed."""
    from prefect.client.schemas.filters import (
        FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    from flows.engine import FLOW_NAME

    prefix = f"executor:{socket.gethostname()}:"
    reaped = []
    unfinished = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
        any_=[StateType.RUNNING, StateType.PENDING, StateType.PAUSED, StateType.SCHEDULED])))
    with get_client(sync_client=True) as client:
        runs: list = []
        while True:
            page = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
                                         flow_run_filter=unfinished, limit=200, offset=len(runs))
            runs.extend(page)
            if len(page) < 200:
                break
        for run in runs:
            pids = [int(t.rsplit(":", 1)[1]) for t in run.tags if t.startswith(prefix) and t.rsplit(":", 1)[1].isdigit()]
            if pids and not any(_alive(pid) for pid in pids):
                client.set_flow_run_state(run.id, Crashed(message="the process executing this run stopped; "
                                                                   "re-run it from the failed node"), force=True)
                reaped.append(str(run.id))
    return reaped
