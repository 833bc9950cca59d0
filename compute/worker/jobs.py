"""Jobs: the platform's record of each attempt at dispatched work, and the only place a result is accepted.

A job goes ``queued`` → ``running`` (claimed when the platform delivers it to its provider) → ``done``/``failed``
(its result accepted, its seconds metered into the provider's lease and the lease closed, all in one
transaction) — or ``abandoned`` when the platform gave up on the provider or the owner cancelled the work. A
result for a job that is no longer ``running`` is refused, so a provider declared lost can never be paid for,
or overwrite, work that was rescheduled elsewhere or cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from compute.market import leases
from compute.market.demand import PriceRange
from compute.market.leases import LeaseOut
from compute.models import Job, utcnow
from compute.provisions import Kind, Resources
from compute.receipts import Domain
from compute.store import Store
from compute.worker import turns
from cxmpute.db import get_engine
from cxmpute.errors import Conflict, Forbidden, NotFound

Status = Literal["queued", "running", "done", "failed", "abandoned"]
OPEN = ("queued", "running")
MAX_LOOK = 4096  # rows one look reads
CANCELLED = "cancelled"  # the error of a job abandoned because its owner cancelled the work


class JobSpec(PriceRange):
    """What to run and on what terms; ``kind`` picks the handler from the ``cxmpute.jobs`` entry points."""

    kind: str = Field(..., min_length=1, max_length=32)
    payload: dict[str, Any] = Field(default_factory=dict)
    owner: str = Field(..., description="The account that pays")
    work_key: str = Field(..., min_length=1, max_length=200, description="Shared by every attempt of this work")
    resources: Resources = Field(default_factory=Resources)
    provision: Kind = Field("agent", description="The kind of provision the work is matched to")
    timeout_s: float = Field(600, gt=0, description="How long the work may take, queueing included")
    rerun: bool = Field(
        False,
        description="Run the work anew even when an attempt of it has finished, as a "
        "service replica's slot runs the same work term after term",
    )


class Claimed(BaseModel):
    id: str
    kind: str
    owner: str
    payload: dict[str, Any]
    attempt: int


class Completion(BaseModel):
    """A provider's report of a finished job: its output, or the error it ended with."""

    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = Field(None, max_length=2000)
    error_status: int | None = Field(None, ge=400, le=599)
    seconds: float = Field(..., ge=0, le=366 * 86400, description="Wall-clock seconds the work ran")
    started_ts: float | None = Field(None, description="Unix time the worker started the handler (latency figures)")


class JobOut(BaseModel):
    id: str
    work_key: str
    attempt: int
    kind: str
    owner: str
    provider: str
    lease_id: str
    status: Status
    result: dict[str, Any] | None
    error: str | None
    error_status: int | None
    seconds: float | None
    cost_gwei: int
    created_at: datetime
    claimed_at: datetime | None
    started_ts: float | None
    finished_at: datetime | None


def out(row: Job) -> JobOut:
    return JobOut.model_validate({name: getattr(row, name) for name in JobOut.model_fields})


def is_cancelled(job: JobOut) -> bool:
    return job.status == "abandoned" and job.error == CANCELLED


@dataclass(eq=False)
class Recording:
    """Records an attempt as its lease is placed, in the placement's own transaction (``Market.place``'s
    ``extra``): the job exists exactly when its lease does, and costs no transaction of its own. ``job`` is the
    attempt as recorded, or None when another dispatcher had recorded this attempt already."""

    job_id: str
    spec: JobSpec
    attempt: int
    job: JobOut | None = None

    def __call__(self, conn: Connection, lease: LeaseOut) -> None:
        spec = self.spec
        row = {
            "id": self.job_id,
            "work_key": spec.work_key,
            "attempt": self.attempt,
            "kind": spec.kind,
            "owner": spec.owner,
            "provider": lease.provider,
            "lease_id": lease.id,
            "payload": spec.payload,
            "status": "queued",
            "cost_gwei": 0,
            "created_at": utcnow(),
        }
        # The attempt's unique index decides between two dispatchers without failing the placement's batch.
        inserted = conn.execute(_RECORD[conn.dialect.name], row).first() is not None
        self.job = JobOut.model_validate({name: row.get(name) for name in JobOut.model_fields}) if inserted else None


_ATTEMPT = ["work_key", "attempt"]
_RECORD = {  # the row's id comes back only when it was written
    "sqlite": sqlite_insert(Job.__table__).on_conflict_do_nothing(index_elements=_ATTEMPT).returning(Job.id),
    "postgresql": pg_insert(Job.__table__).on_conflict_do_nothing(index_elements=_ATTEMPT).returning(Job.id),
}


def get(store: Store, job_id: str) -> JobOut:
    with store.read() as session:
        row = session.get(Job, job_id)
        if row is None:
            raise NotFound(f"no job {job_id}", field="job_id")
        return out(row)


def payload(store: Store, job_id: str) -> dict[str, Any]:
    """What the job was dispatched to do (its kind's payload)."""
    with store.read() as session:
        row = session.get(Job, job_id)
        if row is None:
            raise NotFound(f"no job {job_id}", field="job_id")
        return dict(row.payload or {})


def for_work(store: Store, work_keys: list[str]) -> list[JobOut]:
    """Every attempt of the given work, oldest first."""
    with store.read() as session:
        rows = session.scalars(select(Job).where(Job.work_key.in_(work_keys)).order_by(Job.created_at)).all()
        return [out(row) for row in rows]


def latest(store: Store, work_key: str) -> list[JobOut]:
    """Every attempt of one piece of work, the latest (highest attempt) first."""
    with store.read() as session:
        rows = session.scalars(select(Job).where(Job.work_key == work_key).order_by(Job.attempt.desc())).all()
        return [out(row) for row in rows]


def attempt_of(store: Store, work_key: str, attempt: int) -> JobOut | None:
    """The job recorded for one attempt of the work (at most one is), if any."""
    with store.read() as session:
        row = session.scalars(select(Job).where(Job.work_key == work_key, Job.attempt == attempt)).first()
        return out(row) if row is not None else None


# The two reads below run every few milliseconds while there is work about: a plain connection, no ORM session.
def statuses(store: Store, job_ids: list[str]) -> dict[str, str]:
    """The status of each job, in one query (jobs that do not exist are left out)."""
    with get_engine(store.url).connect() as conn:
        return dict(conn.execute(select(Job.id, Job.status).where(Job.id.in_(job_ids))).all())


def look(store: Store, providers: list[str], held: list[str]) -> list[tuple[str, str, str]]:
    """``(id, provider, status)`` of the queued jobs of ``providers``, oldest first, and of the jobs ``held``, in
    one query (the status index keeps the first part narrow: each queued job holds a lease, so capacity bounds
    them)."""
    wanted = (Job.status == "queued") & Job.provider.in_(providers)
    if held:
        wanted = wanted | Job.id.in_(held)
    with get_engine(store.url).connect() as conn:
        stmt = select(Job.id, Job.provider, Job.status).where(wanted).order_by(Job.created_at).limit(MAX_LOOK)
        return [tuple(row) for row in conn.execute(stmt).all()]


def _locked(session, job_id: str, provider: str) -> Job:
    row = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFound(f"no job {job_id}", field="job_id")
    if row.provider != provider:
        raise Forbidden("this job was dispatched to another provider", field="job_id")
    return row


def claim(store: Store, job_id: str, provider: str, started_ts: float | None = None) -> Claimed:
    """The provider starts the job; a job can be claimed once, and never after it was abandoned."""
    with store.write() as session:
        row = _locked(session, job_id, provider)
        if row.status != "queued":
            raise Conflict(f"job is {row.status}; it cannot be started", field="job_id")
        row.status, row.claimed_at, row.started_ts = "running", utcnow(), started_ts or time.time()
        return Claimed(id=row.id, kind=row.kind, owner=row.owner, payload=row.payload, attempt=row.attempt)


def deliver(store: Store, job_ids: list[str]) -> list[Claimed]:
    """Claim, in one transaction, the jobs of ``job_ids`` still queued: the platform starts them on their
    providers' behalf as it pushes them (saving each job a claim round trip). Those taken meanwhile — abandoned
    by a dispatcher, or delivered by another API process — are left out."""
    now, stamp = utcnow(), time.time()
    with turns.writing(store), store.write() as session:
        rows = session.scalars(select(Job).where(Job.id.in_(job_ids), Job.status == "queued").with_for_update()).all()
        for row in rows:
            row.status, row.claimed_at, row.started_ts = "running", now, stamp
        session.flush()
        return [Claimed(id=r.id, kind=r.kind, owner=r.owner, payload=r.payload, attempt=r.attempt) for r in rows]


def release(store: Store, provider: str, job_ids: list[str]) -> list[str]:
    """Put jobs pushed to ``provider`` that never reached it back in the queue (``running`` → ``queued``), to be
    pushed again: it never started them, so nothing ran and nothing is owed. Only the provider's own
    ``running`` jobs move; one that ended meanwhile stays as it is."""
    if not job_ids:
        return []
    with store.write() as session:
        ids = session.scalars(
            select(Job.id)
            .where(Job.id.in_(job_ids), Job.provider == provider, Job.status == "running")
            .with_for_update()
        ).all()
        if ids:
            session.execute(
                update(Job).where(Job.id.in_(ids)).values(status="queued", claimed_at=None, started_ts=None)
            )
        return list(ids)


def running_on(store: Store, provider: str) -> list[str]:
    with store.read() as session:
        return list(session.scalars(select(Job.id).where(Job.provider == provider, Job.status == "running")).all())


def complete(
    store: Store,
    domain: Domain,
    job_id: str,
    provider: str,
    report: Completion,
    freed: Callable[[dict[str, list[int]]], None] | None = None,
) -> JobOut:
    """Accept the result, meter its seconds (rounded up, at least one) and close the lease, atomically, in a
    batch with the results reported at the same moment (:mod:`compute.worker.results`); ``freed`` is then told
    the free capacity the leases leave (the market's index)."""
    from compute.worker.results import results  # it builds on this module's types

    return results(store, domain).accept(job_id, provider, report, freed)


def abandon(store: Store, job_id: str, reason: leases.EndReason = "provider-lost") -> JobOut:
    """Give up on a job's provider: the job can no longer be claimed or completed, and its lease ends
    (for ``provider-lost``: escrow refunded and the provider's stake slashed per policy)."""
    return _abandon(store, job_id, reason, f"abandoned: {reason}")


def cancel(store: Store, job_id: str) -> JobOut:
    """The owner no longer wants the work: the job is abandoned (its provider is told to stop it) and its lease
    ends as ``user-cancelled`` — the escrow left goes back to the owner and no stake is slashed."""
    return _abandon(store, job_id, "user-cancelled", CANCELLED)


def cancel_work(store: Store, work_key_prefix: str) -> list[str]:
    """Cancel every open job whose work key starts with ``work_key_prefix`` (e.g. ``"<run id>:"``: a run's
    nodes); returns their ids."""
    with store.read() as session:
        ids = session.scalars(
            select(Job.id).where(Job.work_key.startswith(work_key_prefix, autoescape=True), Job.status.in_(OPEN))
        ).all()
    return [job_id for job_id in ids if cancel(store, job_id).error == CANCELLED]


def _abandon(store: Store, job_id: str, reason: leases.EndReason, error: str) -> JobOut:
    with store.write() as session:
        row = session.get(Job, job_id, with_for_update=True, populate_existing=True)
        if row is None:
            raise NotFound(f"no job {job_id}", field="job_id")
        if row.status in OPEN:
            row.status, row.error, row.finished_at = "abandoned", error, utcnow()
            leases.end_in(session, row.lease_id, reason, None)
        session.flush()
        return out(row)


def list_for(store: Store, account: str, status: str | None = None, limit: int = 50, offset: int = 0) -> list[JobOut]:
    """Jobs the account owns or runs as a provider, newest first."""
    with store.read() as session:
        stmt = select(Job).where((Job.owner == account) | (Job.provider == account))
        if status:
            stmt = stmt.where(Job.status == status)
        rows = session.scalars(stmt.order_by(Job.created_at.desc()).limit(limit).offset(offset)).all()
        return [out(row) for row in rows]


def recover(store: Store, provider: str) -> list[str]:
    """A provider (re)starting declares the jobs its earlier process was running lost, so they are dispatched
    again at once instead of after its heartbeats lapse (they cannot lapse: the new process beats)."""
    ids = running_on(store, provider)
    for job_id in ids:
        abandon(store, job_id, "provider-lost")
    return ids
