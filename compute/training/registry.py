"""Training jobs' records: state and generation, the rank URL secret of the current generation, the
rendezvous, checkpoints (stored in the owner's Stxrage) and per-rank losses."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from sqlalchemy import select, update

from compute.models import utcnow
from compute.training.models import TrainingCheckpoint, TrainingJob, TrainingLoss
from compute.training.spec import Checkpoint, LossPoint, TrainingIn, TrainingOut
from cxmpute.db import migrate, session_scope
from cxmpute.errors import Conflict, NotFound
from cxmpute.settings import Settings
from stxrage import open_storage

FINAL_STATES = ("succeeded", "failed", "cancelled")
MAX_CHECKPOINT_BYTES = 512 * 2**20


def database(settings: Settings) -> str:
    """The platform database, migrated to the newest revision (training tables included)."""
    url = settings.resolved_database_url
    migrate(url)
    return url


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _checkpoint(row: TrainingCheckpoint) -> Checkpoint:
    return Checkpoint(step=row.step, generation=row.generation, cid=row.cid, size=row.size, created_at=row.created_at)


def _latest(session, job_id: str) -> TrainingCheckpoint | None:
    return session.scalar(
        select(TrainingCheckpoint)
        .where(TrainingCheckpoint.job_id == job_id)
        .order_by(TrainingCheckpoint.step.desc(), TrainingCheckpoint.id.desc())
        .limit(1)
    )


def _out(session, row: TrainingJob) -> TrainingOut:
    latest = _latest(session, row.id)
    return TrainingOut(
        id=row.id,
        owner=row.owner,
        state=row.state,
        generation=row.generation,
        step=row.step,
        spec=TrainingIn.model_validate(row.spec),
        final_loss=row.final_loss,
        error=row.error,
        last_checkpoint=_checkpoint(latest) if latest else None,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def create(settings: Settings, owner: str, spec: TrainingIn, coordinator: str, now: float) -> TrainingOut:
    """Record a job, coordinated from its creation by the process that will run it."""
    with session_scope(database(settings)) as session:
        row = TrainingJob(
            id=str(uuid.uuid4()),
            owner=owner,
            state="queued",
            generation=0,
            step=0,
            spec=spec.model_dump(mode="json"),
            coordinator=coordinator,
            coordinator_ts=now,
            created_at=utcnow(),
        )
        session.add(row)
        session.flush()
        return _out(session, row)


def load(settings: Settings, job_id: str) -> TrainingOut:
    with session_scope(database(settings)) as session:
        row = session.get(TrainingJob, job_id)
        if row is None:
            raise NotFound(f"no training job {job_id}", field="job_id")
        return _out(session, row)


def _owned(session, owner: str, job_id: str, lock: bool = False) -> TrainingJob:
    row = session.get(TrainingJob, job_id, with_for_update=lock)
    if row is None or row.owner != owner:
        raise NotFound(f"no training job {job_id}", field="job_id")
    return row


def get(settings: Settings, owner: str, job_id: str) -> TrainingOut:
    with session_scope(database(settings)) as session:
        return _out(session, _owned(session, owner, job_id))


def history(
    settings: Settings, owner: str, job_id: str, from_step: int = 1, steps: int = 10_000
) -> tuple[list[Checkpoint], list[LossPoint]]:
    """Every checkpoint, and for ``steps`` steps from ``from_step`` the mean loss over the ranks of the newest
    generation that reported it."""
    with session_scope(database(settings)) as session:
        _owned(session, owner, job_id)
        checkpoints = session.scalars(
            select(TrainingCheckpoint)
            .where(TrainingCheckpoint.job_id == job_id)
            .order_by(TrainingCheckpoint.step, TrainingCheckpoint.id)
        ).all()
        rows = session.execute(
            select(TrainingLoss.step, TrainingLoss.generation, TrainingLoss.loss).where(
                TrainingLoss.job_id == job_id, TrainingLoss.step >= from_step, TrainingLoss.step < from_step + steps
            )
        ).all()
    by_step: dict[int, tuple[int, list[float]]] = {}
    for step, generation, loss in rows:
        seen = by_step.get(step)
        if seen is None or generation > seen[0]:
            by_step[step] = (generation, [loss])
        elif generation == seen[0]:
            seen[1].append(loss)
    losses = [
        LossPoint(step=step, generation=gen, loss=sum(values) / len(values))
        for step, (gen, values) in sorted(by_step.items())
    ]
    return [_checkpoint(row) for row in checkpoints], losses


def list_for(settings: Settings, owner: str, limit: int = 50, offset: int = 0) -> list[TrainingOut]:
    with session_scope(database(settings)) as session:
        rows = session.scalars(
            select(TrainingJob)
            .where(TrainingJob.owner == owner)
            .order_by(TrainingJob.created_at.desc(), TrainingJob.id)
            .limit(limit)
            .offset(offset)
        ).all()
        return [_out(session, row) for row in rows]


def begin_generation(settings: Settings, job_id: str, coordinator: str) -> tuple[int, str, int] | None:
    """Start the next generation: a fresh rank secret, no rendezvous yet. Returns (generation, secret, steps of
    the checkpoint to resume from), or None when the job was cancelled or another process coordinates it now."""
    token = secrets.token_urlsafe(32)
    with session_scope(database(settings), immediate=True) as session:
        row = session.get(TrainingJob, job_id, with_for_update=True, populate_existing=True)
        if row.state in FINAL_STATES or row.coordinator != coordinator:
            return None
        latest = _latest(session, job_id)
        row.state, row.generation, row.token_hash = "running", row.generation + 1, _digest(token)
        row.rdzv_host = row.rdzv_port = None
        return row.generation, token, latest.step if latest else 0


def claim(settings: Settings, job_id: str, coordinator: str, now: float, seen_ts: float | None = None) -> bool:
    """Make ``coordinator`` the job's coordinator: unconditionally for a job just submitted, or — for an orphan —
    only if nobody confirmed it since ``seen_ts`` (so of several processes that find it, one takes it)."""
    with session_scope(database(settings), immediate=True) as session:
        stmt = update(TrainingJob).where(TrainingJob.id == job_id, TrainingJob.state.in_(("queued", "running")))
        if seen_ts is not None:
            stmt = stmt.where(TrainingJob.coordinator_ts == seen_ts)
        return session.execute(stmt.values(coordinator=coordinator, coordinator_ts=now)).rowcount == 1


def confirm(settings: Settings, job_id: str, coordinator: str, now: float) -> bool:
    """The coordinator is alive and still running the job; False once another process has taken it over."""
    with session_scope(database(settings), immediate=True) as session:
        return (
            session.execute(
                update(TrainingJob)
                .where(TrainingJob.id == job_id, TrainingJob.coordinator == coordinator)
                .values(coordinator_ts=now)
            ).rowcount
            == 1
        )


def orphans(settings: Settings, stale_before: float) -> list[tuple[str, float]]:
    """Unfinished jobs whose coordinator has not confirmed since ``stale_before``: (id, last confirmation)."""
    with session_scope(database(settings)) as session:
        return [
            (job_id, ts)
            for job_id, ts in session.execute(
                select(TrainingJob.id, TrainingJob.coordinator_ts).where(
                    TrainingJob.state.in_(("queued", "running")), TrainingJob.coordinator_ts < stale_before
                )
            )
        ]


def end_generation(settings: Settings, job_id: str, generation: int) -> None:
    """Revoke the generation's secret: its ranks can no longer report, and stop (their handlers watch for it)."""
    with session_scope(database(settings), immediate=True) as session:
        session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id, TrainingJob.generation == generation)
            .values(token_hash=None, rdzv_host=None, rdzv_port=None)
        )


def finish(
    settings: Settings, job_id: str, state: str, *, final_loss: float | None = None, error: str | None = None
) -> None:
    with session_scope(database(settings), immediate=True) as session:
        row = session.get(TrainingJob, job_id, with_for_update=True)
        if row.state in FINAL_STATES:
            return
        row.state, row.final_loss, row.error, row.finished_at = state, final_loss, error, utcnow()
        row.token_hash = row.rdzv_host = row.rdzv_port = None
        if state == "succeeded":
            row.step = TrainingIn.model_validate(row.spec).steps


def cancel(settings: Settings, owner: str, job_id: str) -> TrainingOut:
    """Stop the job: its ranks are told to stop and their leases end when they report back."""
    with session_scope(database(settings), immediate=True) as session:
        row = _owned(session, owner, job_id, lock=True)
        if row.state in ("succeeded", "failed"):
            raise Conflict(f"the job has already {row.state}", field="job_id")
        if row.state != "cancelled":
            row.state, row.finished_at, row.error = "cancelled", utcnow(), "cancelled by its owner"
            row.token_hash = row.rdzv_host = row.rdzv_port = None
        session.flush()
        return _out(session, row)


# The rank side: every call names the job by the current generation's secret.


def _by_token(session, token: str) -> TrainingJob:
    row = session.scalar(select(TrainingJob).where(TrainingJob.token_hash == _digest(token)))
    if row is None or row.state != "running":
        raise NotFound("this generation of the training job has ended; stop", field="token")
    return row


def rank_view(settings: Settings, token: str) -> TrainingOut:
    with session_scope(database(settings)) as session:
        return _out(session, _by_token(session, token))


def set_rendezvous(settings: Settings, token: str, host: str, port: int) -> None:
    with session_scope(database(settings), immediate=True) as session:
        row = _by_token(session, token)
        if row.rdzv_port is not None:
            raise Conflict("the rendezvous of this generation is already published", field="port")
        row.rdzv_host, row.rdzv_port = host, port


def rendezvous(settings: Settings, token: str) -> tuple[str | None, int | None]:
    with session_scope(database(settings)) as session:
        row = _by_token(session, token)
        return row.rdzv_host, row.rdzv_port


def add_losses(settings: Settings, token: str, rank: int, points: list[tuple[int, float]]) -> None:
    with session_scope(database(settings), immediate=True) as session:
        row = _by_token(session, token)
        spec = TrainingIn.model_validate(row.spec)
        if rank >= spec.world_size:
            raise Conflict(f"rank {rank} is not below the job's world_size {spec.world_size}", field="rank")
        if any(not 1 <= step <= spec.steps for step, _ in points):
            raise Conflict(f"steps run from 1 to {spec.steps}", field="points")
        session.add_all(
            TrainingLoss(job_id=row.id, generation=row.generation, rank=rank, step=step, loss=loss)
            for step, loss in points
        )
        row.step = max(row.step, max((step for step, _ in points), default=0))


def add_checkpoint(settings: Settings, token: str, step: int, data: bytes) -> Checkpoint:
    with session_scope(database(settings)) as session:
        row = _by_token(session, token)
        job_id, owner, generation = row.id, row.owner, row.generation
    stored = open_storage(settings).put_bytes(data, owner=owner, name=f"training-{job_id}-step{step}.pt")
    with session_scope(database(settings), immediate=True) as session:
        _by_token(session, token)  # still the current generation: a stale rank must not move the resume point
        record = TrainingCheckpoint(
            job_id=job_id, generation=generation, step=step, cid=stored.file.cid, size=len(data), created_at=utcnow()
        )
        session.add(record)
        session.flush()
        return _checkpoint(record)


def resume_bytes(settings: Settings, token: str) -> bytes:
    with session_scope(database(settings)) as session:
        row = _by_token(session, token)
        latest = _latest(session, row.id)
        if latest is None:
            raise NotFound("the job has no checkpoint yet", field="checkpoint")
        cid, owner = latest.cid, row.owner
    return open_storage(settings).get_bytes(cid, owner=owner)


def dataset_bytes(settings: Settings, token: str) -> bytes:
    with session_scope(database(settings)) as session:
        row = _by_token(session, token)
        cid, owner = row.spec["dataset_cid"], row.owner
    return open_storage(settings).get_bytes(cid, owner=owner)
