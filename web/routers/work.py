"""The provider worker's side of dispatched jobs: claim the job a task run stands for, report its outcome."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from compute.errors import Forbidden
from compute.identity.tokens import Principal
from compute.network import Network
from compute.worker import jobs
from web.routers._compute import network, signed_in

router = APIRouter(prefix="/v1/work", tags=["providers"])
provider = signed_in("provider")


class ClaimIn(BaseModel):
    started_ts: float | None = Field(None, description="Unix time the worker started the job (for latency figures)")


@router.post("/recover", summary="Declare the jobs this provider's earlier process was running lost",
             description="A provider worker calls this when it starts: its unfinished jobs are abandoned (lease ended "
                         "as provider-lost) and the platform dispatches them to other providers. Returns their ids.")
def recover(principal: Principal = Depends(provider), net: Network = Depends(network)) -> list[str]:
    lost = jobs.recover(net.store, principal.address)
    net.market.refresh_provider(principal.address)
    return lost


@router.post("/{job_id}/claim", summary="Start a job dispatched to this provider; returns what to run",
             description="A job is claimed once; a 409 means it was abandoned or already started, and must not run.")
def claim(job_id: str, body: ClaimIn, principal: Principal = Depends(provider),
          net: Network = Depends(network)) -> jobs.Claimed:
    return jobs.claim(net.store, job_id, principal.address, body.started_ts)


@router.post("/{job_id}/result", summary="Report a job's outcome; settles its seconds and closes its lease",
             description="Accepted once, only while the job is running: a 409 means the platform gave the work to "
                         "another provider and this result is ignored (and not paid).")
def result(job_id: str, body: jobs.Completion, principal: Principal = Depends(provider),
           net: Network = Depends(network)) -> jobs.JobOut:
    done = jobs.complete(net.store, net.domain, job_id, principal.address, body)
    net.market.refresh_provider(principal.address)
    return done


@router.get("", summary="Jobs you own or run as a provider, newest first",
            description="Filter by `status` (queued, running, done, failed, abandoned); paginate with `limit`/`offset`.")
def list_jobs(status: str | None = Query(None, pattern="^(queued|running|done|failed|abandoned)$"),
              limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
              principal: Principal = Depends(signed_in("account")), net: Network = Depends(network)) -> list[jobs.JobOut]:
    return jobs.list_for(net.store, principal.address, status, limit, offset)


@router.get("/{job_id}", summary="A job: its provider, status, seconds and cost (its owner or provider only)")
def get(job_id: str, principal: Principal = Depends(signed_in("account")), net: Network = Depends(network)) -> jobs.JobOut:
    job = jobs.get(net.store, job_id)
    if principal.address not in (job.owner, job.provider):
        raise Forbidden("job belongs to other accounts", field="job_id")
    return job
