"""The provider worker's side of dispatched jobs: the stream that pushes them, the report of their outcome."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from compute.identity.tokens import Principal
from compute.worker import delivery, jobs
from cxmpute.errors import Conflict, Forbidden
from web.deps import NetworkDep, signed_in

router = APIRouter(prefix="/v1/work", tags=["providers"])
provider = signed_in("provider")


@router.post(
    "/recover",
    summary="Declare the jobs this provider's earlier process was running lost",
    description="A provider worker calls this when it starts: its unfinished jobs are abandoned (lease ended "
    "as provider-lost) and the platform dispatches them to other providers. Returns their ids.",
)
def recover(net: NetworkDep, principal: Principal = Depends(provider)) -> list[str]:
    return jobs.recover(net.store, principal.address)


@router.post(
    "/stream",
    summary="The stream of jobs pushed to this provider's worker (NDJSON, long-lived)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {}},
            "description": "One JSON object a line: `job` (started on your behalf: run it), "
            "`stop` (abandoned: cancel it), `ping`",
        }
    },
    description="A registered provider's worker holds one open. Each job is claimed as it is pushed; "
    "after a reconnect, `held` names the jobs the worker is still running, and the provider's "
    "other running jobs (pushed but never received) are queued again and pushed anew. At most "
    "`concurrency` jobs are pushed before their results are in.",
)
async def stream(
    net: NetworkDep, body: delivery.StreamIn, principal: Principal = Depends(provider)
) -> StreamingResponse:
    if not await run_in_threadpool(delivery.is_provider, net.store, principal.address):
        # Not 403: the credential holds the scope; the account has yet to register as a provider.
        raise Conflict("register as a provider before opening a job stream", field="provider")
    return StreamingResponse(
        delivery.hub(net.store).stream(principal.address, body),
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-store"},
    )


@router.post(
    "/{job_id}/result",
    summary="Report a job's outcome; settles its seconds and closes its lease",
    description="Accepted once, only while the job is running: a 409 means the platform gave the work to "
    "another provider, or its owner cancelled it, and this result is ignored (and not paid).",
)
async def result(
    net: NetworkDep, job_id: str, body: jobs.Completion, principal: Principal = Depends(provider)
) -> jobs.JobOut:
    # Results reported together are accepted together: one transaction for the batch (compute.worker.results).
    return await run_in_threadpool(
        jobs.complete, net.store, net.domain, job_id, principal.address, body, net.market.show_free
    )


@router.get(
    "",
    summary="Jobs you own or run as a provider, newest first",
    description="Filter by `status` (queued, running, done, failed, abandoned); paginate with `limit`/`offset`.",
)
def list_jobs(
    net: NetworkDep,
    status: str | None = Query(None, pattern="^(queued|running|done|failed|abandoned)$"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    principal: Principal = Depends(signed_in("account")),
) -> list[jobs.JobOut]:
    return jobs.list_for(net.store, principal.address, status, limit, offset)


@router.get("/{job_id}", summary="A job: its provider, status, seconds and cost (its owner or provider only)")
def get(net: NetworkDep, job_id: str, principal: Principal = Depends(signed_in("account"))) -> jobs.JobOut:
    job = jobs.get(net.store, job_id)
    if principal.address not in (job.owner, job.provider):
        raise Forbidden("job belongs to other accounts", field="job_id")
    return job
