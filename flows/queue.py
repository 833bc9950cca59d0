"""The durable run queue: the platform database holds every submitted run until an executor has finished it.

A run is ``queued`` when submitted, ``running`` while an executor holds its claim, ``cancelling`` when its
owner asked to stop it while it ran, and ``done`` once an executor saw it end (its Prefect state says how).
A claim lasts until ``claimed_until`` and the executor's heartbeat renews it; a claim that lapses, because
its executor died, lets any executor take the run again, and the run continues from its persisted node
outputs. Executors claim with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so they never wait on one another's
rows; SQLite serialises its writers anyway.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from agxnt.errors import AgentError
from cxmpute.errors import NotFound
from flows.store import ExecutorRow, WorkflowRunRow

Status = Literal["queued", "running", "cancelling", "done"]
R = WorkflowRunRow


class Busy(AgentError):
    """Too many runs wait already: the caller should come back later."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message, field="run")
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class Claim(BaseModel):
    """A run an executor now holds: what it needs to run it."""

    id: str
    status: Status
    owner: str
    name: str
    parameters: dict[str, Any]
    tags: list[str]
    claims: int
    flow_run_id: str | None


class Located(BaseModel):
    """Where a run stands, from the platform database: enough to read it from Prefect, or to describe it while
    no executor has created its flow run yet."""

    id: str
    owner: str
    name: str | None
    status: Status
    flow_run_id: str | None
    inputs: dict[str, Any]
    parameters: dict[str, Any] | None
    created_at: datetime


class ExecutorOut(BaseModel):
    id: str
    host: str
    pid: int
    capacity: int
    running: int
    started_at: datetime
    seen_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


def enqueue(
    session: Session,
    run_id: str,
    owner: str,
    name: str | None,
    inputs: dict[str, Any],
    parameters: dict[str, Any],
    tags: list[str],
    workflow_id: str | None = None,
    workflow_version: int | None = None,
) -> None:
    session.add(
        WorkflowRunRow(
            id=run_id,
            workflow_id=workflow_id,
            workflow_version=workflow_version,
            name=name,
            owner=owner,
            inputs=inputs,
            created_at=_now(),
            status="queued",
            parameters=parameters,
            tags=tags,
            claims=0,
        )
    )


def locate(session: Session, run_ids: list[str]) -> dict[str, Located]:
    """The recorded runs among ``run_ids``. A run recorded before the queue kept parameters was created in
    Prefect under its own id."""
    rows = session.scalars(select(R).where(R.id.in_(run_ids))) if run_ids else []
    return {
        r.id: Located(
            id=r.id,
            owner=r.owner,
            name=r.name,
            status=r.status,
            flow_run_id=r.flow_run_id or (r.id if r.parameters is None else None),
            inputs=r.inputs or {},
            parameters=r.parameters,
            created_at=r.created_at,
        )
        for r in rows
    }


def record_flow_run(session: Session, run_id: str, executor: str, flow_run_id: str) -> None:
    session.execute(
        update(R)
        .where(R.id == run_id, R.executor == executor)
        .values(flow_run_id=flow_run_id)
        .execution_options(synchronize_session=False)
    )


def depth(session: Session) -> int:
    """Runs waiting for an executor."""
    return session.scalar(select(func.count()).select_from(R).where(R.status == "queued")) or 0


def _claimable(now: float):
    lapsed = and_(R.status.in_(("running", "cancelling")), R.claimed_until < now)
    waiting = and_(R.status == "queued", or_(R.claimed_until.is_(None), R.claimed_until < now))
    return or_(waiting, lapsed)


def waiting(session: Session) -> bool:
    """Whether any run can be claimed: an idle executor asks this often, in a read that takes no write lock."""
    return session.scalar(select(R.id).where(_claimable(time.time())).limit(1)) is not None


def claim(session: Session, executor: str, limit: int, ttl_s: float) -> list[Claim]:
    """Take up to ``limit`` runs: queued ones, oldest first, and those whose executor's claim lapsed."""
    now = time.time()
    ids = (
        select(R.id)
        .where(_claimable(now))
        .order_by(R.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    taken = session.execute(
        update(R)
        .where(R.id.in_(ids), _claimable(now))
        .values(
            status=case((R.status == "cancelling", "cancelling"), else_="running"),
            executor=executor,
            claimed_until=now + ttl_s,
            claims=R.claims + 1,
        )
        .returning(R.id, R.status, R.owner, R.name, R.parameters, R.tags, R.claims, R.flow_run_id)
        .execution_options(synchronize_session=False)
    ).all()
    return [
        Claim(id=i, status=s, owner=o, name=n or "workflow", parameters=p or {}, tags=t or [], claims=c, flow_run_id=f)
        for i, s, o, n, p, t, c, f in taken
    ]


def renew(session: Session, executor: str, run_ids: list[str], ttl_s: float) -> set[str]:
    """Extend this executor's claims on ``run_ids``; returns those it no longer holds (its claim lapsed and
    another executor took the run)."""
    if not run_ids:
        return set()
    kept = (
        session.execute(
            update(R)
            .where(R.id.in_(run_ids), R.executor == executor, R.status.in_(("running", "cancelling")))
            .values(claimed_until=time.time() + ttl_s)
            .returning(R.id)
            .execution_options(synchronize_session=False)
        )
        .scalars()
        .all()
    )
    return set(run_ids) - set(kept)


def cancelling(session: Session, executor: str, run_ids: list[str]) -> set[str]:
    """Those of this executor's runs whose owner asked to cancel them."""
    if not run_ids:
        return set()
    return set(session.scalars(select(R.id).where(R.id.in_(run_ids), R.executor == executor, R.status == "cancelling")))


def finish(session: Session, run_id: str, executor: str) -> bool:
    """The run ended while this executor held it; False when another executor had taken it over."""
    done = session.execute(
        update(R)
        .where(R.id == run_id, R.executor == executor, R.status.in_(("running", "cancelling")))
        .values(status="done", claimed_until=None, finished_at=_now())
        .execution_options(synchronize_session=False)
    )
    return done.rowcount == 1


def release(session: Session, run_id: str, executor: str, retry_in_s: float) -> None:
    """Hand the run back (its executor could not reach what it needs): any executor takes it after ``retry_in_s``."""
    session.execute(
        update(R)
        .where(R.id == run_id, R.executor == executor, R.status == "running")
        .values(status="queued", executor=None, claimed_until=time.time() + retry_in_s)
        .execution_options(synchronize_session=False)
    )


def request_cancel(session: Session, run_id: str, owner: str) -> Located:
    """Ask to stop a run: a queued one is done at once; a running one is stopped by its executor. Returns where
    the run stands after the request."""
    found = session.get(R, run_id, with_for_update=True, populate_existing=True)
    if found is None or found.owner != owner:
        raise NotFound(f"run {run_id} not found", field="run_id")
    if found.status == "done":
        raise AgentError(
            f"run {run_id} has already finished; there is nothing to cancel", field="run_id", status_code=409
        )
    if found.status == "queued":
        found.status, found.finished_at, found.claimed_until = "done", _now(), None
    else:
        found.status = "cancelling"
    session.flush()
    return locate(session, [run_id])[run_id]


def beat(
    session: Session, executor: str, host: str, pid: int, capacity: int, running: int, started_at: datetime
) -> None:
    now = _now()
    found = session.get(ExecutorRow, executor)
    if found is None:
        session.add(
            ExecutorRow(
                id=executor, host=host, pid=pid, capacity=capacity, running=running, started_at=started_at, seen_at=now
            )
        )
    else:
        found.running, found.seen_at = running, now


def leave(session: Session, executor: str) -> None:
    found = session.get(ExecutorRow, executor)
    if found is not None:
        session.delete(found)


def live_executors(session: Session, within_s: float | None = None) -> list[ExecutorOut]:
    """Executors whose heartbeat is recent (within two claim lifetimes unless ``within_s`` says otherwise)."""
    if within_s is None:
        from cxmpute.settings import get_settings

        within_s = 2 * get_settings().executor_claim_ttl_s
    since = _now() - timedelta(seconds=within_s)
    rows = session.scalars(select(ExecutorRow).where(ExecutorRow.seen_at >= since).order_by(ExecutorRow.id))
    return [ExecutorOut.model_validate(r, from_attributes=True) for r in rows]
