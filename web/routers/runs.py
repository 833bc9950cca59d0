"""Workflow runs: submission to the run queue, state per node with inputs and outputs (read from the Prefect
API), cancellation, answers to approvals, and re-runs from a chosen node."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field

from agxnt.builtins import ApprovalResponse
from cxmpute.db import session_scope
from cxmpute.errors import NotFound
from flows import runner, store
from flows.history import RunStarted, RunStatus, RunView, read_run, run_states
from web.deps import owner_in

router = APIRouter(prefix="/v1/runs", tags=["runs"])


class RunSummary(BaseModel):
    id: str
    workflow: str | None = Field(None, description="The workflow document's name")
    state: str = Field(
        ...,
        description="pending, running, waiting, completed, failed or cancelled (unknown when "
        "the Prefect API has lost the run)",
    )
    workflow_id: str | None = Field(None, description="The saved workflow it ran, if it ran one")
    workflow_version: int | None
    created_at: datetime
    started_at: datetime | None = Field(None, description="When an executor started it; none while it waits")
    finished_at: datetime | None = Field(None, description="When it finished; none while it runs")


class RunPage(BaseModel):
    items: list[RunSummary]
    total: int
    limit: int
    offset: int


class RerunRequest(BaseModel):
    node: str = Field(..., description="Node to run again; nodes upstream of it reuse their outputs")
    inputs: dict[str, Any] | None = Field(None, description="New run inputs; the original run's when empty")


class RunCancel(BaseModel):
    id: str
    state: str = Field(..., description="cancelled (it had not started) or cancelling (its executor stops it)")


def _owned(run_id: str, owner: str, with_results: bool = True) -> RunView:
    view = read_run(run_id, with_results=with_results)
    if view.owner != owner:
        raise NotFound(f"run {run_id} not found", field="run_id")
    return view


@router.post(
    "",
    response_model=RunStarted,
    status_code=202,
    summary="Run a workflow document without saving it",
    description="The run is queued for an executor. A 429 with `Retry-After` means too many runs wait already.",
)
def run_document(
    *,
    document: dict[str, Any] = Body(..., embed=True),
    inputs: dict[str, Any] = Body({}, embed=True),
    owner: str = Depends(owner_in("workflows")),
) -> RunStarted:
    run_id = runner.start_run(document, inputs, owner)
    return RunStarted.of(run_id)


@router.get("", response_model=RunPage, summary="Your runs, newest first")
def list_runs(
    *,
    workflow_id: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    owner: str = Depends(owner_in("workflows")),
) -> RunPage:
    with session_scope() as session:  # closed before Prefect is asked for the states
        rows, total = store.list_runs(session, owner, workflow_id, limit, offset)
    states = run_states([r.id for r in rows])
    unknown = RunStatus("unknown")
    items = [
        RunSummary(
            id=r.id,
            workflow=r.name,
            state=(status := states.get(r.id, unknown)).state,
            workflow_id=r.workflow_id,
            workflow_version=r.workflow_version,
            created_at=r.created_at,
            started_at=status.started_at,
            finished_at=status.finished_at,
        )
        for r in rows
    ]
    return RunPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{run_id}", response_model=RunView, summary="A run's state, outputs and per-node state and I/O")
def get_run(run_id: str, owner: str = Depends(owner_in("workflows"))) -> RunView:
    return _owned(run_id, owner)


@router.post(
    "/{run_id}/cancel",
    response_model=RunCancel,
    status_code=202,
    summary="Cancel a run",
    description="A queued run is cancelled at once; a running or paused one is stopped by its executor: "
    "its nodes stop, on providers too, their leases end and unused escrow is refunded. "
    "409 when the run has already finished.",
)
def cancel(run_id: str, owner: str = Depends(owner_in("workflows"))) -> RunCancel:
    return RunCancel(id=run_id, state=runner.cancel_run(run_id, owner))


@router.post("/{run_id}/resume", status_code=202, summary="Answer the approval the run is waiting for")
def resume(run_id: str, response: ApprovalResponse, owner: str = Depends(owner_in("workflows"))) -> dict[str, str]:
    runner.resume_run(run_id, owner, response)
    return {"id": run_id, "status": "resumed"}


@router.post(
    "/{run_id}/rerun",
    response_model=RunStarted,
    status_code=202,
    summary="Re-run from a node, reusing upstream outputs",
)
def rerun(*, run_id: str, body: RerunRequest, owner: str = Depends(owner_in("workflows"))) -> RunStarted:
    new_id = runner.rerun_from(run_id, body.node, owner, body.inputs)
    return RunStarted.of(new_id)
