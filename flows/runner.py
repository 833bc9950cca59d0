"""Starting, watching, cancelling, resuming and re-running workflow runs, as the API does for the CLI and
the builder.

A run is queued in the platform database (:mod:`flows.queue`) under an id of the platform's; an executor
process (:mod:`flows.executor`) claims it and creates and executes its Prefect flow run, whose state,
per-node states and results are read back from the Prefect API (:mod:`flows.history`). This module never
executes a run.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import resume_flow_run
from prefect.states import Cancelled

from agxnt.builtins import ApprovalResponse
from agxnt.errors import AgentError
from cxmpute.db import migrate, session_scope
from cxmpute.errors import NotFound
from cxmpute.settings import get_settings
from flows import prefect_api, queue
from flows.engine import compile_workflow
from flows.history import RunView, read_run
from flows.problems import WorkflowInvalid
from flows.run_inputs import check_inputs
from flows.spec import Workflow
from flows.store import WorkflowRunRow


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
    """Validate the document and the inputs and queue the run for an executor; return its id. An invalid
    document or inputs raise :class:`WorkflowInvalid`, queueing nothing; a full queue raises
    :class:`queue.Busy` (429). Nothing here waits on Prefect: the executor that claims the run creates its
    flow run, so runs are taken while Prefect is slow or away."""
    compiled = compile_workflow(document)
    if problems := check_inputs(compiled.plan.workflow, inputs or {}):
        raise WorkflowInvalid(problems)
    settings = get_settings()
    run_id = str(uuid.uuid4())
    parameters = compiled.parameters(inputs, owner, scopes, run_id)
    migrate()  # once per database and process
    with session_scope() as session:
        if queue.depth(session) >= settings.run_queue_max:
            raise queue.Busy(
                f"{settings.run_queue_max} runs are already waiting for an executor; retry later", retry_after_s=5
            )
        queue.enqueue(
            session,
            run_id,
            owner,
            compiled.plan.workflow.name,
            inputs or {},
            parameters,
            [f"owner:{owner}", *(tags or [])],
            workflow_id,
            workflow_version,
        )
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


def run_workflow(
    document: dict[str, Any] | Workflow,
    inputs: dict[str, Any] | None = None,
    owner: str = "local",
    timeout: float | None = None,
) -> RunView:
    """Run a workflow to the end and return its view (state, outputs, per-node runs)."""
    return wait_run(start_run(document, inputs, owner), timeout=timeout)


def cancel_run(run_id: str, owner: str) -> str:
    """Cancel a run: a queued one at once, a running or paused one by its executor, which stops its nodes
    (on providers too) and refunds their unused escrow. Returns ``cancelled`` or ``cancelling``."""
    with session_scope() as session:
        found = queue.request_cancel(session, run_id, owner)
    if found.status == "cancelling":
        return "cancelling"
    if found.flow_run_id is not None:  # an executor created it, then handed the run back before running it
        prefect_api.client().set_flow_run_state(
            UUID(found.flow_run_id), Cancelled(message="cancelled by its owner"), force=True
        )
    return "cancelled"


def _owned(run_id: str, owner: str) -> queue.Located:
    """The run's record, or for a run recorded before runs kept parameters, its flow run's parameters."""
    with session_scope() as session:
        found = queue.locate(session, [run_id]).get(run_id)
    if found is not None and found.owner == owner:
        if found.parameters is None and found.flow_run_id is not None:
            found.parameters = prefect_api.client().read_flow_run(UUID(found.flow_run_id)).parameters or {}
        return found
    if found is None:
        try:
            params = prefect_api.client().read_flow_run(UUID(run_id)).parameters or {}
        except (ObjectNotFound, ValueError):
            params = {}
        if params.get("owner") == owner:
            return queue.Located(
                id=run_id,
                owner=owner,
                name=None,
                status="done",
                flow_run_id=run_id,
                inputs=params.get("inputs") or {},
                parameters=params,
                created_at=datetime.now(UTC),
            )
    raise NotFound(f"run {run_id} not found", field="run_id")


def rerun_from(run_id: str, node_id: str, owner: str, inputs: dict[str, Any] | None = None) -> str:
    """Start a new run of the same document that reuses the outputs of every node not downstream of
    ``node_id`` from ``run_id`` and executes ``node_id`` and its descendants again (and the nodes whose
    ``cache`` option is off)."""
    params = _owned(run_id, owner).parameters or {}
    with session_scope() as session:
        row = session.get(WorkflowRunRow, run_id)
        workflow_id, version = (row.workflow_id, row.workflow_version) if row is not None else (None, None)
    compiled = compile_workflow(params["document"])
    if node_id not in compiled.plan.agents:
        raise AgentError(
            f"run {run_id} has no node {node_id!r} (nodes: {', '.join(compiled.plan.order)})",
            field="node",
            status_code=422,
        )
    fresh = compiled.plan.descendants(node_id)
    previous = params.get("scopes") or {}
    scopes = {
        nid: previous.get(nid, run_id)
        for nid in compiled.plan.order
        if nid not in fresh and compiled.plan.workflow.node(nid).options.cache
    }
    return start_run(
        params["document"],
        inputs if inputs is not None else params.get("inputs"),
        owner,
        scopes=scopes,
        tags=[f"rerun-of:{run_id}"],
        workflow_id=workflow_id,
        workflow_version=version,
    )


def resume_run(run_id: str, owner: str, response: ApprovalResponse) -> None:
    """Answer the approval a paused run waits for."""
    found = _owned(run_id, owner)
    try:
        if found.flow_run_id is None:
            raise ValueError("it has not started")
        resume_flow_run(UUID(found.flow_run_id), run_input=response.model_dump(mode="json"))
    except Exception as exc:  # NotPausedError, FlowPauseTimeout: the caller's mistake, said plainly
        raise AgentError(
            f"run {run_id} is not waiting for an answer ({exc})", field="run_id", status_code=409
        ) from None
