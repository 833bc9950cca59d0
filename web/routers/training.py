"""Distributed training jobs: submit, list, inspect (losses, checkpoints, ranks), cancel — and the rank URL
each generation's ranks use to fetch their inputs and report back."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from compute.errors import ComputeError
from compute.training import coordinator, registry
from compute.training.registry import MAX_CHECKPOINT_BYTES
from compute.training.spec import Checkpoint, TrainingDetail, TrainingIn, TrainingOut
from cxmpute.logging import get_logger
from web.deps import SettingsDep, job_credential, owner_in

log = get_logger(__name__)


router = APIRouter(prefix="/v1/training", tags=["training"])


@router.post(
    "/jobs",
    response_model=TrainingOut,
    status_code=201,
    summary="Submit a training job",
    description="Trains the built-in MLP on a CSV dataset from your Stxrage storage with PyTorch DDP across "
    "`world_size` providers matched within the price range. The job runs in the background: "
    "GET it for its state, losses and checkpoints. A missing dataset answers 404, one the "
    "trainer cannot use 422, a price range no provision fits 409 (field `price_max_gwei`), "
    "more ranks than live providers offering a rank's resources 409 (field `world_size`); "
    "nothing is leased or billed then.",
)
async def submit(settings: SettingsDep, body: TrainingIn, owner: str = Depends(owner_in("workloads"))) -> TrainingOut:
    job = await asyncio.to_thread(coordinator.submit, settings, owner, body)
    coordinator.start(settings, job.id)
    return job


@router.get("/jobs", response_model=list[TrainingOut], summary="Your training jobs, newest first")
async def list_jobs(
    settings: SettingsDep,
    owner: str = Depends(owner_in("workloads")),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> list[TrainingOut]:
    return await asyncio.to_thread(registry.list_for, settings, owner, limit, offset)


@router.get(
    "/jobs/{job_id}",
    response_model=TrainingDetail,
    summary="A training job with its per-step losses, checkpoints and every rank job of every generation",
    description="Losses come as a window of steps: `losses_from` and at most `losses_steps` steps on.",
)
async def get_job(
    settings: SettingsDep,
    job_id: str,
    owner: str = Depends(owner_in("workloads")),
    losses_from: int = Query(1, ge=1, description="First step whose loss to include"),
    losses_steps: int = Query(10_000, ge=0, le=100_000, description="Steps of losses to include"),
) -> TrainingDetail:
    return await asyncio.to_thread(coordinator.detail, settings, owner, job_id, losses_from, losses_steps)


@router.delete(
    "/jobs/{job_id}",
    response_model=TrainingOut,
    summary="Cancel a training job",
    description="Its ranks are stopped; each rank's lease is settled for the seconds it ran.",
)
async def cancel(settings: SettingsDep, job_id: str, owner: str = Depends(owner_in("workloads"))) -> TrainingOut:
    return await asyncio.to_thread(registry.cancel, settings, owner, job_id)


# The rank URL: the path's secret is the credential, valid for one generation of one job.


class Rendezvous(BaseModel):
    host: str | None = Field(None, max_length=255)
    port: int | None = Field(None, ge=1, le=65535)


class RendezvousIn(BaseModel):
    host: str = Field(..., min_length=1, max_length=255)
    port: int = Field(..., ge=1, le=65535)


class LossesIn(BaseModel):
    rank: int = Field(..., ge=0)
    points: list[tuple[int, float]] = Field(..., max_length=10_000, description="(step, loss) pairs")


@router.get(
    "/ranks/{token}",
    dependencies=[Depends(job_credential)],
    response_model=TrainingOut,
    summary="Rank URL: the job, while this generation lasts (404 once it has ended)",
)
async def rank_job(settings: SettingsDep, token: str) -> TrainingOut:
    return await asyncio.to_thread(registry.rank_view, settings, token)


@router.get(
    "/ranks/{token}/dataset",
    dependencies=[Depends(job_credential)],
    summary="Rank URL: the dataset",
    response_class=Response,
)
async def rank_dataset(settings: SettingsDep, token: str) -> Response:
    data = await asyncio.to_thread(registry.dataset_bytes, settings, token)
    return Response(data, media_type="text/csv")


@router.get(
    "/ranks/{token}/checkpoint",
    dependencies=[Depends(job_credential)],
    summary="Rank URL: the checkpoint to resume from",
    response_class=Response,
)
async def rank_checkpoint(settings: SettingsDep, token: str) -> Response:
    data = await asyncio.to_thread(registry.resume_bytes, settings, token)
    return Response(data, media_type="application/octet-stream")


@router.get(
    "/ranks/{token}/rendezvous",
    dependencies=[Depends(job_credential)],
    response_model=Rendezvous,
    summary="Rank URL: where rank 0 serves the rendezvous (nulls until it has published it)",
)
async def rank_rendezvous(settings: SettingsDep, token: str) -> Rendezvous:
    host, port = await asyncio.to_thread(registry.rendezvous, settings, token)
    return Rendezvous(host=host, port=port)


@router.post(
    "/ranks/{token}/rendezvous",
    dependencies=[Depends(job_credential)],
    status_code=204,
    summary="Rank URL: rank 0 publishes the rendezvous",
)
async def publish_rendezvous(settings: SettingsDep, token: str, body: RendezvousIn) -> Response:
    await asyncio.to_thread(registry.set_rendezvous, settings, token, body.host, body.port)
    return Response(status_code=204)


@router.post(
    "/ranks/{token}/losses",
    dependencies=[Depends(job_credential)],
    status_code=204,
    summary="Rank URL: a rank reports its losses",
)
async def rank_losses(settings: SettingsDep, token: str, body: LossesIn) -> Response:
    await asyncio.to_thread(registry.add_losses, settings, token, body.rank, body.points)
    return Response(status_code=204)


@router.post(
    "/ranks/{token}/checkpoints",
    dependencies=[Depends(job_credential)],
    response_model=Checkpoint,
    status_code=201,
    summary="Rank URL: rank 0 uploads a checkpoint (the request body) taken after `step` steps",
)
async def rank_upload(settings: SettingsDep, token: str, request: Request, step: int = Query(..., ge=1)) -> Checkpoint:
    # The token first: nobody but a live rank gets to make the platform buffer a checkpoint.
    await asyncio.to_thread(registry.rank_view, settings, token)
    data = bytearray()
    async for part in request.stream():
        data += part
        if len(data) > MAX_CHECKPOINT_BYTES:
            raise ComputeError(
                f"a checkpoint may be at most {MAX_CHECKPOINT_BYTES} bytes", field="body", status_code=413
            )
    return await asyncio.to_thread(registry.add_checkpoint, settings, token, step, bytes(data))
