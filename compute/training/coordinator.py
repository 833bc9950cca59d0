"""The coordinator: runs a training job's generations on the network from the platform's process.

A generation leases one provision per rank through the market (one per-second lease each, metered by the
seconds its rank ran) and dispatches a ``train-rank`` job to each provider through the worker pool. If
every rank finishes, the job has succeeded. If any rank fails or its provider is lost (heartbeats lapse:
the dispatcher ends that lease as ``provider-lost``), the generation is revoked — the other ranks are
stopped — and the next generation starts every rank afresh from the latest checkpoint, on whatever
providers the market then offers (the lost one is out of matching until it beats again).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import distinct, func, or_, select

from compute.errors import ComputeError
from compute.market.demand import MatchRequest
from compute.market.matching import NoMatchError
from compute.models import Provision
from compute.network import get_network
from compute.training import registry
from compute.training.rank import RankJob
from compute.training.spec import RankOut, TrainingDetail, TrainingIn, TrainingOut
from compute.training.trainer import check_fits, parse_dataset
from compute.worker import jobs
from compute.worker.dispatch import Dispatcher, Spread
from compute.worker.jobs import JobOut, JobSpec
from cxmpute.errors import CxmputeError
from cxmpute.logging import get_logger
from cxmpute.loops import LoopService
from cxmpute.settings import Settings
from stxrage import open_storage

log = get_logger(__name__)
JOB_KIND = "train-rank"
RANK_PATH = "/v1/training/ranks"

# This process's name as a coordinator. A coordinator confirms each of its jobs several times per
# ``training_coordinator_stale_s``; a job not confirmed for that long lost its coordinator (the platform process
# stopped) and another process adopts it.
COORDINATOR = uuid.uuid4().hex
CONFIRMS_PER_STALE = 6

_running: set[asyncio.Task] = set()


def work_key(job_id: str, generation: int, rank: int) -> str:
    return f"training:{job_id}:g{generation}:r{rank}"


def check(settings: Settings, owner: str, spec: TrainingIn) -> None:
    """Refuse a job that could never run: a dataset that is missing or unusable, no provision that fits, or
    fewer live providers than ranks."""
    storage = open_storage(settings)
    try:
        storage.stat(spec.dataset_cid, owner=owner)
    except CxmputeError as exc:
        raise ComputeError(
            f"no dataset {spec.dataset_cid} in your storage: {exc.message}",
            field="dataset_cid",
            status_code=404 if exc.status_code == 404 else 422,
        ) from None
    check_fits(
        parse_dataset(storage.get_bytes(spec.dataset_cid, owner=owner), spec.trainer), spec.trainer, spec.world_size
    )
    request = _request(spec)
    quote = get_network().market.quote(request)
    # Busy provisions free up; a job waits for them. Provisions that could never fit refuse it now.
    if not quote.matched and not quote.no_match.busy:
        raise NoMatchError(quote.no_match)
    # Each rank runs on its own provider: more ranks than live providers could never all be placed, and every
    # generation tried would lease (and bill) the ranks that were.
    providers = live_providers(request)
    if spec.world_size > providers:
        raise ComputeError(
            f"world_size {spec.world_size} needs {spec.world_size} providers, but only {providers} "
            f"live provider{' offers' if providers == 1 else 's offer'} a rank's resources within "
            f"your price range",
            field="world_size",
            status_code=409,
        )


def live_providers(request: MatchRequest) -> int:
    """Providers with a live provision one rank of ``request`` fits in, busy or not (leases end, capacity frees
    up); a provision whose provider's heartbeats lapsed is down, not live."""
    r = request.resources
    end = datetime.fromtimestamp(time.time() + request.span_s, tz=UTC)
    query = select(func.count(distinct(Provision.provider))).where(
        Provision.kind == request.kind,
        Provision.status == "active",
        Provision.price_gwei >= request.price_min_gwei,
        Provision.price_gwei <= request.price_max_gwei,
        Provision.cpu >= r.cpu,
        Provision.memory_mb >= r.memory_mb,
        Provision.gpu_count >= r.gpu_count,
        Provision.disk_gb >= r.disk_gb,
        or_(Provision.available_until.is_(None), Provision.available_until >= end),
    )
    if r.gpu_model:
        query = query.where(Provision.gpu_model == r.gpu_model)
    with get_network().store.read() as session:
        return session.scalar(query) or 0


def _request(spec: TrainingIn) -> MatchRequest:
    return MatchRequest(
        kind="agent",
        resources=spec.resources,
        price_min_gwei=spec.price_min_gwei,
        price_max_gwei=spec.price_max_gwei,
        duration_s=max(1, math.ceil(spec.timeout_s)),
    )


def submit(settings: Settings, owner: str, spec: TrainingIn) -> TrainingOut:
    check(settings, owner, spec)
    return registry.create(settings, owner, spec, COORDINATOR, time.time())


def start(settings: Settings, job_id: str) -> None:
    """Run the job in the background of this process's event loop (this process must coordinate it)."""
    task = asyncio.get_running_loop().create_task(_coordinate(settings, job_id))
    _running.add(task)
    task.add_done_callback(_running.discard)


async def adopt_orphans(settings: Settings) -> list[str]:
    """Take over the jobs whose coordinator went silent (its process stopped) and run them here; each resumes
    with a new generation from its latest checkpoint. Returns the ids taken."""
    now = time.time()
    taken = []
    stale_before = now - settings.training_coordinator_stale_s
    for job_id, seen in await asyncio.to_thread(registry.orphans, settings, stale_before):
        if await asyncio.to_thread(registry.claim, settings, job_id, COORDINATOR, now, seen):
            log.warning("training job %s lost its coordinator; resuming it here", job_id)
            await asyncio.to_thread(_release_orphaned_ranks, settings, job_id)
            start(settings, job_id)
            taken.append(job_id)
    return taken


def confirm_every_s(settings: Settings) -> float:
    return settings.training_coordinator_stale_s / CONFIRMS_PER_STALE


class OrphanAdopter(LoopService):
    """Resumes, in this process, the training jobs whose coordinating process stopped: looks as often as a
    coordinator confirms it is alive."""

    name = "training-adopter"

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def interval(self) -> float:
        return confirm_every_s(self.settings)

    async def run_once(self) -> None:
        await adopt_orphans(self.settings)


def _release_orphaned_ranks(settings: Settings, job_id: str) -> None:
    """Give up the rank jobs nobody watches any more: their leases end (escrow refunded, no slashing — the
    providers did nothing wrong) and free the capacity the next generation needs."""
    network = get_network()
    for rank in ranks(registry.load(settings, job_id)):
        if rank.status in ("queued", "running"):
            jobs.abandon(network.store, rank.job_id, "expired")


async def _coordinate(settings: Settings, job_id: str) -> None:
    """Run the job, confirming every few seconds that this process still coordinates it."""
    running = asyncio.ensure_future(run(settings, job_id))
    while not running.done():
        await asyncio.wait([running], timeout=confirm_every_s(settings))
        if not running.done() and not await asyncio.to_thread(
            registry.confirm, settings, job_id, COORDINATOR, time.time()
        ):
            log.warning("training job %s is coordinated by another process now; leaving it", job_id)
            running.cancel()


async def run(settings: Settings, job_id: str) -> None:
    job = await asyncio.to_thread(registry.load, settings, job_id)
    spec, generations = job.spec, job.spec.max_restarts + 1
    dispatcher = Dispatcher()
    why = "the platform process coordinating it stopped"
    try:
        while job.generation < generations:
            began = await asyncio.to_thread(registry.begin_generation, settings, job_id, COORDINATOR)
            if began is None:
                return  # cancelled, or taken over by another process
            generation, token, resume_step = began
            log.info("training job %s: generation %d from step %d", job_id, generation, resume_step)
            ended, why = await _generation(
                settings, dispatcher, job_id, job.owner, spec, generation, token, resume_step
            )
            if ended is not None:
                await asyncio.to_thread(
                    registry.finish, settings, job_id, "succeeded", final_loss=ended[0].result["final_loss"]
                )
                return
            job = await asyncio.to_thread(registry.load, settings, job_id)
        await asyncio.to_thread(
            registry.finish,
            settings,
            job_id,
            "failed",
            error=f"ranks were lost or failed in {generations} generation(s); the last: {why}"[:2000],
        )
    except Exception as exc:
        log.exception("training job %s failed", job_id)
        await asyncio.to_thread(
            registry.finish,
            settings,
            job_id,
            "failed",
            error=getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}",
        )


def _rank_job(
    job_id: str, owner: str, spec: TrainingIn, generation: int, rank: int, rank_url: str, resume_step: int
) -> JobSpec:
    payload = RankJob(
        training_id=job_id,
        generation=generation,
        rank=rank,
        world_size=spec.world_size,
        steps=spec.steps,
        checkpoint_every=spec.checkpoint_every,
        trainer=spec.trainer,
        backend=spec.backend,
        collective_timeout_s=spec.collective_timeout_s,
        join_timeout_s=spec.timeout_s,
        threads=spec.resources.cpu,
        rank_url=rank_url,
        resume_step=resume_step,
    )
    return JobSpec(
        kind=JOB_KIND,
        owner=owner,
        work_key=work_key(job_id, generation, rank),
        resources=spec.resources,
        price_min_gwei=spec.price_min_gwei,
        price_max_gwei=spec.price_max_gwei,
        timeout_s=spec.timeout_s,
        payload=payload.model_dump(),
    )


async def _generation(
    settings: Settings,
    dispatcher: Dispatcher,
    job_id: str,
    owner: str,
    spec: TrainingIn,
    generation: int,
    token: str,
    resume_step: int,
) -> tuple[list[JobOut] | None, str]:
    """Run one generation; returns the ranks' jobs in rank order when every rank finished, else None and why."""
    rank_url = f"{settings.resolved_api_url}{RANK_PATH}/{token}"
    keys = [work_key(job_id, generation, rank) for rank in range(spec.world_size)]
    spread = Spread(lambda: keys)  # a provider lost takes as few of the generation's ranks with it as it can
    tasks = [
        asyncio.ensure_future(
            dispatcher.run_once(
                _rank_job(job_id, owner, spec, generation, rank, rank_url, resume_step),
                attempt=generation,
                spread=spread,
            )
        )
        for rank in range(spec.world_size)
    ]
    finished: dict[int, JobOut] = {}
    why = ""
    for done in asyncio.as_completed(tasks):
        try:
            job = await done
        except Exception as exc:
            job, failure = None, f"a rank could not run: {getattr(exc, 'message', None) or exc}"
        else:
            failure = f"rank job {job.id} on {job.provider} ended {job.status}: {job.error}"
        if job is not None and job.status == "done":
            finished[int(job.work_key.rsplit(":r", 1)[1])] = job
        elif not why:
            why = failure
            log.warning("training job %s generation %d: %s", job_id, generation, failure)
            await asyncio.to_thread(registry.end_generation, settings, job_id, generation)
    if why:
        return None, why
    return [finished[rank] for rank in range(spec.world_size)], ""


def ranks(job: TrainingOut) -> list[RankOut]:
    """Every rank job of every generation, by generation and rank."""
    keys = [
        work_key(job.id, generation, rank)
        for generation in range(1, job.generation + 1)
        for rank in range(job.spec.world_size)
    ]
    found = jobs.for_work(get_network().store, keys) if keys else []
    out = [
        RankOut(
            generation=int(j.work_key.split(":g")[1].split(":")[0]),
            rank=int(j.work_key.rsplit(":r", 1)[1]),
            job_id=j.id,
            provider=j.provider,
            lease_id=j.lease_id,
            status=j.status,
            error=j.error,
            cost_gwei=j.cost_gwei,
        )
        for j in found
    ]
    return sorted(out, key=lambda r: (r.generation, r.rank))


def detail(settings: Settings, owner: str, job_id: str, from_step: int = 1, steps: int = 10_000) -> TrainingDetail:
    job = registry.get(settings, owner, job_id)
    checkpoints, losses = registry.history(settings, owner, job_id, from_step, steps)
    return TrainingDetail(**job.model_dump(), checkpoints=checkpoints, losses=losses, ranks=ranks(job))
