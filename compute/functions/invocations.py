"""Invoking functions: on the platform's own warm pool, or — with a max price — on a provider matched by the
market; either way each invocation is recorded with its outcome, logs and metrics.

Billing: the execution time inside the handler is recorded per invocation in milliseconds (``billed_ms``,
rounded up). An invocation run on a provider is charged for those milliseconds at the provider's ask
(:mod:`compute.functions.billing` settles the whole-seconds lease of its job down to them). Invocations on
the platform's own pool open no lease and cost nothing.
"""

from __future__ import annotations

import asyncio
import base64
import math
import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from compute.functions import billing, registry
from compute.functions.models import FunctionVersion, Invocation
from compute.functions.pool import LOAD_TIMEOUT_S, Outcome, default_pool
from compute.models import aware, utcnow
from compute.network import get_network
from compute.provisions import Resources
from cxmpute.db import session_scope
from cxmpute.errors import NotFound
from cxmpute.logging import get_logger
from cxmpute.settings import Settings

log = get_logger(__name__)

Status = Literal["queued", "running", "ok", "error", "timeout", "memory", "killed"]
LOCAL = "local"
# Past a version's timeout and load time, beyond the dispatcher's own limit for priced invocations.
LOST_AFTER_S = 120
# How an ended invocation answers over HTTP, and which setting its error is about.
FAILURES: dict[str, tuple[int, str]] = {
    "error": (422, "handler"),
    "memory": (422, "memory_mb"),
    "killed": (422, "memory_mb"),
    "timeout": (504, "timeout_s"),
}


class InvokeIn(BaseModel):
    event: Any = Field(None, description="The JSON value passed to handler(event, context)")
    version: int | None = Field(None, ge=1, description="Version to run; default: the newest")
    price_max_gwei: int | None = Field(
        None,
        gt=0,
        le=10**12,
        description="Run on a provider asking at most this "
        "per compute-unit-second (overrides the function's own setting)",
    )


class InvocationOut(BaseModel):
    id: str
    name: str
    version: int
    mode: Literal["sync", "async"]
    status: Status
    where: str = Field(description="'local' (the platform's pool) or the provider's address")
    job_id: str | None = Field(None, description="The provider job that ran it")
    result: Any = None
    error: str | None = None
    error_status: int | None = None
    cold: bool | None = Field(None, description="Whether an interpreter had to be started for it")
    duration_ms: float | None = Field(None, description="Time inside the handler")
    billed_ms: int = Field(0, description="Execution milliseconds billed (duration rounded up)")
    latency_ms: float | None = Field(None, description="Start (cold) or hand-over (warm) to answer")
    queued_ms: float | None = Field(None, description="Wait under the function's concurrency limit")
    max_rss_mb: float | None = Field(None, description="Peak resident memory during the invocation")
    cost_gwei: int = Field(0, description="What the invocation was charged")
    stdout: str = ""
    stderr: str = ""
    created_at: datetime
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status not in ("queued", "running")


def _billed_ms(outcome: Outcome) -> int:
    return math.ceil(outcome.duration_ms) if outcome.duration_ms > 0 else 0


def _out(row: Invocation) -> InvocationOut:
    out = InvocationOut.model_validate({name: getattr(row, name) for name in InvocationOut.model_fields})
    out.created_at = aware(out.created_at)
    out.finished_at = aware(out.finished_at) if out.finished_at else None
    return out


def _create(settings: Settings, owner: str, v: registry.VersionOut, mode: str, where: str) -> InvocationOut:
    with session_scope(registry.database(settings)) as session:
        row = Invocation(
            id=str(uuid.uuid4()),
            owner=owner,
            name=v.name,
            version=v.version,
            mode=mode,
            status="queued" if mode == "async" else "running",
            where=where,
            billed_ms=0,
            cost_gwei=0,
            stdout="",
            stderr="",
            created_at=utcnow(),
        )
        session.add(row)
        session.flush()
        return _out(row)


def _finish(
    settings: Settings,
    invocation_id: str,
    outcome: Outcome | None,
    *,
    error: str | None = None,
    error_status: int | None = None,
    job_id: str | None = None,
    cost_gwei: int = 0,
    provider: str | None = None,
) -> InvocationOut:
    with session_scope(registry.database(settings)) as session:
        row = session.get(Invocation, invocation_id)
        row.job_id, row.cost_gwei, row.finished_at = job_id, cost_gwei, utcnow()
        row.where = provider or row.where
        if outcome is None:
            row.status, row.error, row.error_status = "error", error, error_status or 502
        else:
            row.status, row.result, row.error = outcome.kind, outcome.result, outcome.error
            row.error_status = FAILURES[outcome.kind][0] if outcome.kind in FAILURES else None
            row.cold, row.duration_ms, row.latency_ms = outcome.cold, outcome.duration_ms, outcome.latency_ms
            row.queued_ms, row.max_rss_mb = outcome.queued_ms, outcome.max_rss_mb
            row.billed_ms = _billed_ms(outcome)
            row.stdout, row.stderr = outcome.stdout, outcome.stderr
        session.flush()
        return _out(row)


def _set_running(settings: Settings, invocation_id: str) -> None:
    with session_scope(registry.database(settings)) as session:
        session.get(Invocation, invocation_id).status = "running"


async def _execute(
    settings: Settings, owner: str, v: registry.VersionOut, event: Any, price: int | None, invocation_id: str
) -> InvocationOut:
    if price is None:
        outcome = await default_pool().invoke(registry.spec(v), event, lambda: registry.package_bytes(settings, v))
        return await asyncio.to_thread(_finish, settings, invocation_id, outcome)
    from compute.worker.dispatch import Dispatcher
    from compute.worker.jobs import JobSpec

    data = await asyncio.to_thread(registry.package_bytes, settings, v)
    # The provider cannot read the owner's storage, so the package travels with the job.
    payload = {"spec": registry.spec(v).model_dump(), "event": event, "package_base64": base64.b64encode(data).decode()}
    job = await Dispatcher().run(
        JobSpec(
            kind="function",
            payload=payload,
            owner=owner,
            work_key=f"function:{invocation_id}",
            resources=Resources(cpu=1, memory_mb=v.memory_mb),
            price_max_gwei=price,
            timeout_s=v.timeout_s + LOAD_TIMEOUT_S + 60,
        )
    )
    if job.status != "done":
        return await asyncio.to_thread(
            _finish,
            settings,
            invocation_id,
            None,
            error=job.error,
            error_status=job.error_status,
            job_id=job.id,
            cost_gwei=job.cost_gwei,
            provider=job.provider,
        )
    outcome = Outcome.model_validate(job.result)
    cost = await asyncio.to_thread(
        billing.settle, get_network().store, invocation_id, job.lease_id, job.cost_gwei, _billed_ms(outcome)
    )
    return await asyncio.to_thread(
        _finish, settings, invocation_id, outcome, job_id=job.id, cost_gwei=cost, provider=job.provider
    )


def _plan(settings: Settings, owner: str, name: str, req: InvokeIn) -> tuple[registry.VersionOut, int | None]:
    v = registry.version(settings, owner, name, req.version)
    return v, req.price_max_gwei or v.price_max_gwei


async def invoke(settings: Settings, owner: str, name: str, req: InvokeIn) -> InvocationOut:
    """Run one invocation to its end and return its record (a failed invocation is a record, not a raise)."""
    v, price = await asyncio.to_thread(_plan, settings, owner, name, req)
    record = await asyncio.to_thread(_create, settings, owner, v, "sync", LOCAL if price is None else "market")
    try:
        return await _execute(settings, owner, v, req.event, price, record.id)
    except Exception as exc:
        await asyncio.to_thread(
            _finish,
            settings,
            record.id,
            None,
            error=getattr(exc, "message", str(exc)),
            error_status=getattr(exc, "status_code", 502),
        )
        raise


_background: set[asyncio.Task] = set()


async def submit(settings: Settings, owner: str, name: str, req: InvokeIn) -> InvocationOut:
    """Record the invocation as queued and run it in the background; poll :func:`get` for its result."""
    v, price = await asyncio.to_thread(_plan, settings, owner, name, req)
    record = await asyncio.to_thread(_create, settings, owner, v, "async", LOCAL if price is None else "market")

    async def run() -> None:
        try:
            await asyncio.to_thread(_set_running, settings, record.id)
            await _execute(settings, owner, v, req.event, price, record.id)
        except Exception as exc:  # the record is where an async caller learns about the failure
            log.exception("async invocation %s failed", record.id)
            await asyncio.to_thread(
                _finish,
                settings,
                record.id,
                None,
                error=getattr(exc, "message", str(exc)),
                error_status=getattr(exc, "status_code", 502),
            )

    task = asyncio.get_running_loop().create_task(run())
    _background.add(task)
    task.add_done_callback(_background.discard)
    return record


def _settle_lost(session, row: Invocation, now: datetime) -> None:
    """Close an invocation still open long past anything it could take: the process running it stopped."""
    if row.status not in ("queued", "running"):
        return
    v = session.get(FunctionVersion, (row.owner, row.name, row.version))
    if now - aware(row.created_at) > timedelta(seconds=v.timeout_s + LOAD_TIMEOUT_S + LOST_AFTER_S):
        row.status, row.error_status, row.finished_at = "error", 502, now
        row.error = "the invocation was lost: the process running it stopped before it finished"


def get(settings: Settings, owner: str, name: str, invocation_id: str, now: datetime | None = None) -> InvocationOut:
    with session_scope(registry.database(settings)) as session:
        row = session.get(Invocation, invocation_id)
        if row is None or row.owner != owner or row.name != name:
            raise NotFound(f"no invocation {invocation_id} of function {name!r}", field="invocation_id")
        _settle_lost(session, row, now or utcnow())
        return _out(row)


def list_for(settings: Settings, owner: str, name: str, limit: int = 50, offset: int = 0) -> list[InvocationOut]:
    """A function's invocations, newest first."""
    with session_scope(registry.database(settings)) as session:
        rows = session.scalars(
            select(Invocation)
            .where(Invocation.owner == owner, Invocation.name == name)
            .order_by(Invocation.created_at.desc(), Invocation.id)
            .limit(limit)
            .offset(offset)
        ).all()
        now = utcnow()
        for row in rows:
            _settle_lost(session, row, now)
        return [_out(row) for row in rows]
