"""Saved workflows: versioned documents per owner in the platform database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from cxmpute.db import Base
from cxmpute.errors import NotFound
from flows.agent_versions import pin_versions
from flows.problems import WorkflowInvalid
from flows.spec import Workflow
from flows.validate import validate


class WorkflowRow(Base):
    __tablename__ = "workflows"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class WorkflowVersionRow(Base):
    __tablename__ = "workflow_versions"

    workflow_id: Mapped[str] = mapped_column(String(36), ForeignKey("workflows.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WorkflowRunRow(Base):
    __tablename__ = "workflow_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workflow_id: Mapped[str | None] = mapped_column(String(36), index=True)
    workflow_version: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(200))  # the document's name when the run was created
    owner: Mapped[str] = mapped_column(String(128), index=True)
    inputs: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The durable queue (flows/queue.py): what an executor needs to run it, and who holds it until when.
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="done")
    parameters: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    executor: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    flow_run_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    tags: Mapped[list | None] = mapped_column(JSON, nullable=True)


class ExecutorRow(Base):
    """A run executor's heartbeat: readiness counts the live ones."""

    __tablename__ = "run_executors"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    capacity: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SavedWorkflow(BaseModel):
    id: str
    name: str
    version: int
    document: Workflow
    created_at: datetime
    updated_at: datetime


class WorkflowSummary(BaseModel):
    id: str
    name: str
    version: int
    updated_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


def _checked(document: dict[str, Any] | Workflow) -> Workflow:
    """Only valid documents are saved, with every node's agent version pinned."""
    _, problems = validate(document)
    if problems:
        raise WorkflowInvalid(problems)
    return pin_versions(document)


def _row(session: Session, owner: str, workflow_id: str) -> WorkflowRow:
    row = session.get(WorkflowRow, workflow_id)
    if row is None or row.deleted or row.owner != owner:  # another owner's workflow looks like a missing one
        raise NotFound(f"workflow {workflow_id} not found", field="workflow_id")
    return row


def _saved(row: WorkflowRow, document: dict | None = None, version: int | None = None) -> SavedWorkflow:
    return SavedWorkflow(
        id=row.id,
        name=row.name,
        version=version or row.version,
        document=Workflow.model_validate(document or row.document),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def create(session: Session, owner: str, document: dict[str, Any] | Workflow) -> SavedWorkflow:
    wf = _checked(document)
    now = _now()
    data = wf.model_dump(mode="json")
    row = WorkflowRow(
        id=str(uuid.uuid4()),
        owner=owner,
        name=wf.name,
        version=1,
        document=data,
        created_at=now,
        updated_at=now,
        deleted=False,
    )
    session.add(row)
    session.add(WorkflowVersionRow(workflow_id=row.id, version=1, document=data, created_at=now))
    session.flush()
    return _saved(row)


def update(session: Session, owner: str, workflow_id: str, document: dict[str, Any] | Workflow) -> SavedWorkflow:
    row = _row(session, owner, workflow_id)
    wf = _checked(document)
    data = wf.model_dump(mode="json")
    row.version += 1
    row.name, row.document, row.updated_at = wf.name, data, _now()
    session.add(WorkflowVersionRow(workflow_id=row.id, version=row.version, document=data, created_at=row.updated_at))
    session.flush()
    return _saved(row)


def get(session: Session, owner: str, workflow_id: str, version: int | None = None) -> SavedWorkflow:
    row = _row(session, owner, workflow_id)
    if version is None or version == row.version:
        return _saved(row)
    old = session.get(WorkflowVersionRow, (workflow_id, version))
    if old is None:
        raise NotFound(f"workflow {workflow_id} has no version {version}", field="version")
    return _saved(row, old.document, version)


def versions(session: Session, owner: str, workflow_id: str) -> list[int]:
    _row(session, owner, workflow_id)
    return list(
        session.scalars(
            select(WorkflowVersionRow.version)
            .where(WorkflowVersionRow.workflow_id == workflow_id)
            .order_by(WorkflowVersionRow.version)
        )
    )


def list_(session: Session, owner: str, limit: int = 50, offset: int = 0) -> tuple[list[WorkflowSummary], int]:
    base = select(WorkflowRow).where(WorkflowRow.owner == owner, WorkflowRow.deleted.is_(False))
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.scalars(base.order_by(WorkflowRow.updated_at.desc()).limit(limit).offset(offset))
    return [WorkflowSummary(id=r.id, name=r.name, version=r.version, updated_at=r.updated_at) for r in rows], total


def delete(session: Session, owner: str, workflow_id: str) -> None:
    # Soft delete: past runs keep pointing at a document that still exists.
    _row(session, owner, workflow_id).deleted = True


def list_runs(
    session: Session, owner: str, workflow_id: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[WorkflowRunRow], int]:
    base = select(WorkflowRunRow).where(WorkflowRunRow.owner == owner)
    if workflow_id:
        base = base.where(WorkflowRunRow.workflow_id == workflow_id)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    return list(session.scalars(base.order_by(WorkflowRunRow.created_at.desc()).limit(limit).offset(offset))), total
