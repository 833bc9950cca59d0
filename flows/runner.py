"""Starting, watching, cancelling, resuming and re-running workflow runs, as the API does for the CLI and
the builder.

A run is created in the Prefect API first (so its id is known at once) and queued in the platform database
(:mod:`flows.queue`), where an executor process (:mod:`flows.executor`) claims it; its state, per-node
states and results are read back from the Prefect API. This module never executes a run.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import resume_flow_run
from prefect.states import Cancelled

from agxnt.builtins import ApprovalResponse
from agxnt.errors import AgentError, NotFound
from cxmpute.db import migrate, session_scope
from cxmpute.settings import get_settings
from flows import prefect_api, queue
from flows.engine import compile_workflow
from flows.history import RunView, read_run
from flows.spec import Workflow
from flows.store import WorkflowRunRow
from flows.validate import WorkflowInvalid, check_inputs


def start_run(
    document: dict[str, Any] | Workflow,
    inputs: dict[str, Any] | None = None,
    owner: str = "local",
    *,
    scopes: dict[str, str] | None = None,
    tags: list[str] | None = None,
    workflow_id: str | None = None,
    workflow_version: int | None = None,
) -> str:
    """Validate the document and the inputs, create the flow run in the Prefect API and queue it for an
    executor; return its id. An invalid document or inputs raise :class:`WorkflowInvalid`, creating nothing;
    a full queue raises :class:`queue.Busy` (429)."""
    compiled = compile_workflow(document)
    if problems := check_inputs(compiled.plan.workflow, inputs or {}):
        raise WorkflowInvalid(problems)
    settings = get_settings()
    migrate()  # once per database and process
    with session_scope() as session:
        if queue.depth(session) >= settings.run_queue_max:
            raise queue.Busy(f"{settings.run_queue_max} runs are already waiting for an executor; retry later",
                             retry_after_s=5)
    parameters = compiled.parameters(inputs, owner, scopes)
    # No database session is held across the call to Prefect: under load it would starve the pool.
    flow_run = prefect_api.create_flow_run(compiled.flow, compiled.plan.workflow.name, parameters,
                                           [f"owner:{owner}", *(tags or [])])
    run_id = str(flow_run.id)
    with session_scope() as session:
        queue.enqueue(session, run_id, owner, compiled.plan.workflow.name, inputs or {}, parameters,
                      workflow_id, workflow_version)
    return run_id


def wait_run(run_id: str, timeout: float | None = None, poll: float = 0.1, until_waiting: bool = False) -> RunView:
    """Block until the run finishes (or pauses for a person, when ``until_waiting``)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        view = read_run(run_id, with_results=False)
        if view.finished:
            return _settled(run_id, view)
        if until_waiting and view.state == "waiting":
            return read_run(run_id)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {view.state} after {timeout}s")
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


def cancel_run(run_id: str, owner: str) -> str:
    """Cancel a run: a queued one at once, a running or paused one by its executor, which stops its nodes
    (on providers too) and refunds their unused escrow. Returns ``cancelled`` or ``cancelling``."""
    with session_scope() as session:
        status = queue.request_cancel(session, run_id, owner)
    if status == "done":
        client = prefect_api.client()
        client.set_flow_run_state(UUID(run_id), Cancelled(message="cancelled by its owner"), force=True)
        return "cancelled"
    return "cancelling"


def _parameters(run_id: str) -> dict[str, Any]:
    client = prefect_api.client()
    try:
        return client.read_flow_run(UUID(run_id)).parameters or {}
    except (ObjectNotFound, ValueError):
        raise NotFound(f"run {run_id} not found", field="run_id") from None


def rerun_from(run_id: str, node_id: str, owner: str, inputs: dict[str, Any] | None = None) -> str:
    """Start a new run of the same document that reuses the outputs of every node not downstream of
    ``node_id`` from ``run_id`` and executes ``node_id`` and its descendants again (and the nodes whose
    ``cache`` option is off)."""
    with session_scope() as session:
        original = session.get(WorkflowRunRow, run_id)
        recorded = original is not None and original.owner == owner and original.parameters is not None
        params = dict(original.parameters) if recorded else None
        workflow_id, version = (original.workflow_id, original.workflow_version) if recorded else (None, None)
    if params is None:  # a run queued before runs kept their parameters
        params = _parameters(run_id)
        if params.get("owner") != owner:
            raise NotFound(f"run {run_id} not found", field="run_id")
    compiled = compile_workflow(params["document"])
    if node_id not in compiled.plan.agents:
        raise AgentError(f"run {run_id} has no node {node_id!r} (nodes: {', '.join(compiled.plan.order)})",
                         field="node", status_code=422)
    fresh = compiled.plan.descendants(node_id)
    previous = params.get("scopes") or {}
    scopes = {nid: previous.get(nid, run_id) for nid in compiled.plan.order
              if nid not in fresh and compiled.plan.workflow.node(nid).options.cache}
    return start_run(params["document"], inputs if inputs is not None else params.get("inputs"), owner,
                     scopes=scopes, tags=[f"rerun-of:{run_id}"], workflow_id=workflow_id, workflow_version=version)


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
