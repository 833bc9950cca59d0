"""Saved workflows (versioned), their JSON Schema, validation, templates and starting runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Response
from pydantic import BaseModel, Field

import flows
from cxmpute.db import session_scope
from flows import runner, store
from flows.history import RunStarted
from flows.problems import Problem
from flows.spec import load_document, workflow_json_schema
from flows.validate import validate
from web.deps import DbSession, owner_in, public

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])
TEMPLATES = Path(flows.__file__).parent / "templates"


class WorkflowPage(BaseModel):
    items: list[store.WorkflowSummary]
    total: int
    limit: int
    offset: int


class ValidationReport(BaseModel):
    valid: bool
    problems: list[Problem]


class Template(BaseModel):
    id: str
    name: str
    description: str
    document: dict[str, Any]


class RunRequest(BaseModel):
    inputs: dict[str, Any] = Field(default_factory=dict, description="Values for the workflow's named inputs")
    version: int | None = Field(None, description="Saved version to run; newest when empty")


@router.get("/schema", dependencies=[Depends(public)], summary="JSON Schema of a workflow document")
def schema() -> dict[str, Any]:
    return workflow_json_schema()


@router.post(
    "/validate",
    dependencies=[Depends(public)],
    response_model=ValidationReport,
    summary="Check a document; every problem at once",
)
def validate_document(document: dict[str, Any] = Body(...)) -> ValidationReport:
    _, problems = validate(document)
    return ValidationReport(valid=not problems, problems=problems)


@router.get("/templates", dependencies=[Depends(public)], response_model=list[Template], summary="Ready-made workflows")
def templates() -> list[Template]:
    out = []
    for path in sorted(TEMPLATES.glob("*.y*ml")):
        doc = load_document(path)
        out.append(
            Template(
                id=path.stem, name=doc.get("name", path.stem), description=doc.get("description", ""), document=doc
            )
        )
    return out


@router.get("", response_model=WorkflowPage, summary="List your workflows")
def list_workflows(
    *,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    owner: str = Depends(owner_in("workflows")),
    session: DbSession,
) -> WorkflowPage:
    items, total = store.list_(session, owner, limit, offset)
    return WorkflowPage(items=items, total=total, limit=limit, offset=offset)


@router.post("", response_model=store.SavedWorkflow, status_code=201, summary="Save a new workflow (validated)")
def create_workflow(
    *, document: dict[str, Any] = Body(...), owner: str = Depends(owner_in("workflows")), session: DbSession
) -> store.SavedWorkflow:
    return store.create(session, owner, document)


@router.get("/{workflow_id}", response_model=store.SavedWorkflow, summary="Read a workflow (optionally a version)")
def get_workflow(
    *, workflow_id: str, version: int | None = None, owner: str = Depends(owner_in("workflows")), session: DbSession
) -> store.SavedWorkflow:
    return store.get(session, owner, workflow_id, version)


@router.get("/{workflow_id}/versions", response_model=list[int], summary="Saved versions of a workflow")
def get_versions(*, workflow_id: str, owner: str = Depends(owner_in("workflows")), session: DbSession) -> list[int]:
    return store.versions(session, owner, workflow_id)


@router.put("/{workflow_id}", response_model=store.SavedWorkflow, summary="Save a new version")
def update_workflow(
    *,
    workflow_id: str,
    document: dict[str, Any] = Body(...),
    owner: str = Depends(owner_in("workflows")),
    session: DbSession,
) -> store.SavedWorkflow:
    return store.update(session, owner, workflow_id, document)


@router.delete("/{workflow_id}", status_code=204, summary="Delete a workflow (its runs stay readable)")
def delete_workflow(*, workflow_id: str, owner: str = Depends(owner_in("workflows")), session: DbSession) -> Response:
    store.delete(session, owner, workflow_id)
    return Response(status_code=204)


@router.post("/{workflow_id}/runs", response_model=RunStarted, status_code=202, summary="Start a run")
def start(
    *, workflow_id: str, body: RunRequest | None = None, owner: str = Depends(owner_in("workflows"))
) -> RunStarted:
    body = body or RunRequest()
    # A session of its own, closed before the run is created: none is held across the call to Prefect.
    with session_scope() as session:
        saved = store.get(session, owner, workflow_id, body.version)
    run_id = runner.start_run(
        saved.document,
        body.inputs,
        owner,
        tags=[f"workflow:{workflow_id}"],
        workflow_id=workflow_id,
        workflow_version=saved.version,
    )
    return RunStarted.of(run_id)
