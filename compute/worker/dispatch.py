"""Dispatch: match a job onto a provider, hand it to that provider's worker, watch it, fail over.

Each attempt opens a lease through the market (cheapest provision that fits, within the owner's price
range), records the job, and creates a deferred Prefect task run keyed to the provider — the Prefect
server pushes it to that provider's worker at once. While the job runs the dispatcher watches the
provider's heartbeats: when they lapse it marks the provider down (out of matching until it beats
again), abandons the job — which ends the lease as ``provider-lost``, refunding the escrow and slashing
the stake — and dispatches the work again to another provider. A result the lost provider sends later is
refused (the job is no longer ``running``), so the work is accepted and paid for exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable

from prefect.client.orchestration import PrefectClient, get_client
from prefect.states import Crashed
from prefect.task_runs import TaskRunWaiter

from compute.errors import ComputeError, NotFound
from compute.market.demand import MatchRequest
from compute.market.leases import LeaseOut
from compute.market.matching import NoMatchError
from compute.models import Job, Lease, Provider
from compute.network import Network, get_network
from compute.providers.registry import is_alive, mark_down
from compute.worker import jobs
from compute.worker.jobs import JobOut, JobSpec
from compute.worker.tasks import job_task
from cxmpute.settings import get_settings

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
LIVENESS_EVERY_S = 0.5
MAX_AVOIDED = 64  # MatchRequest.avoid_providers' bound


class Spread:
    """Work placed as a group, such as a service's replicas or a training job's ranks, so that losing one
    provider loses as little of it as possible: the group's placements happen one at a time, each passing
    over the providers that hold an open job of the group (``work_keys``) while another provider can take
    the work, and taking one of them when none can."""

    def __init__(self, work_keys: Callable[[], Iterable[str]]) -> None:
        self.work_keys = work_keys
        self.lock = asyncio.Lock()


class DispatchError(ComputeError):
    status_code = 503


class Dispatcher:
    def __init__(self, network: Network | None = None):
        self.network = network or get_network()

    async def run(self, spec: JobSpec, spread: Spread | None = None) -> JobOut:
        """Run ``spec`` on the network; returns the accepted attempt (``done`` or ``failed``)."""
        deadline = time.monotonic() + spec.timeout_s
        async with get_client() as client:  # one connection for every attempt of this work
            lost: list[str] = []  # providers that lost this work: the next attempt prefers any other
            for attempt in range(1, MAX_ATTEMPTS + 1):
                job = await self._attempt(spec, attempt, deadline, client, lost, spread)
                if job.status in ("done", "failed"):
                    return job
                lost.append(job.provider)
        raise DispatchError(f"gave up after {MAX_ATTEMPTS} providers failed to run the work", field="resources")

    async def run_once(self, spec: JobSpec, attempt: int = 1, spread: Spread | None = None) -> JobOut:
        """Run ``spec`` on one provider without failing over: returns the job as it ended (``done``, ``failed``,
        or ``abandoned`` when its provider was lost). For work that must move as a group, e.g. training ranks."""
        deadline = time.monotonic() + spec.timeout_s
        async with get_client() as client:
            return await self._attempt(spec, attempt, deadline, client, spread=spread)

    async def _attempt(self, spec: JobSpec, attempt: int, deadline: float, client: PrefectClient,
                       avoid: list[str] | None = None, spread: Spread | None = None) -> JobOut:
        lease, job_id = await self._place(spec, attempt, deadline, avoid or [], spread)
        await job_task(lease.provider).create_run(client=client, id=uuid.UUID(job_id), deferred=True)
        return await self._watch(job_id, lease, deadline, client)

    async def _place(self, spec: JobSpec, attempt: int, deadline: float, avoid: list[str],
                     spread: Spread | None) -> tuple[LeaseOut, str]:
        """Open a lease and record the job, waiting while every provision that would fit is busy. Providers in
        ``avoid``, and those holding an open job of the ``spread`` group, are passed over while another can take
        the work, and taken when none can. A group places one job at a time, each seeing where the last went."""
        pause = 0.01
        while True:
            async with spread.lock if spread else contextlib.nullcontext():
                passed_over = list(avoid)
                if spread:
                    passed_over += [p for p in await asyncio.to_thread(self._holding, spread) if p not in passed_over]
                lease = await asyncio.to_thread(self._try_place, spec, deadline, pause, passed_over[:MAX_AVOIDED])
                if lease is not None:
                    job_id = str(uuid.uuid4())
                    await asyncio.to_thread(jobs.create, self.network.store, job_id, spec, lease.provider, lease.id,
                                            attempt)
                    return lease, job_id
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)
            self.network.market.sync()

    def _try_place(self, spec: JobSpec, deadline: float, pause: float, passed_over: list[str]) -> LeaseOut | None:
        """A lease, passing over ``passed_over`` unless only they fit; None while what fits is busy."""
        request = MatchRequest(kind=spec.provision, resources=spec.resources, price_min_gwei=spec.price_min_gwei,
                               price_max_gwei=spec.price_max_gwei, duration_s=max(1, math.ceil(spec.timeout_s)),
                               avoid_providers=passed_over)
        try:
            return self.network.market.place(spec.owner, request)
        except NoMatchError as exc:
            if passed_over and exc.explanation.excluded.get("avoided"):
                return self._try_place(spec, deadline, pause, [])
            if not exc.explanation.busy or time.monotonic() + pause > deadline:
                raise
            return None

    async def _watch(self, job_id: str, lease: LeaseOut, deadline: float, client: PrefectClient) -> JobOut:
        store = self.network.store
        interval = get_settings().heartbeat_interval_s
        # A live provider that has not started the job is most likely saturated: move the work, don't slash.
        claim_by = time.monotonic() + max(60.0, 10 * interval)
        while True:
            job, alive, leased = await asyncio.to_thread(self._state, job_id, lease)
            if job.status not in ("queued", "running"):
                return job
            now = time.monotonic()
            if now > deadline:
                await self._give_up(job_id, "expired", "the work ran past its time limit", client)
                raise DispatchError(f"the work did not finish within its time limit on provider {lease.provider}",
                                    field="timeout_seconds", status_code=504)
            if not alive:
                await asyncio.to_thread(self._mark_down, lease.provider)
                return await self._give_up(job_id, "provider-lost", "heartbeats lapsed", client)
            if not leased:
                return await self._give_up(job_id, "provider-lost", "its lease ended", client)
            if job.status == "queued" and now > claim_by:
                return await self._give_up(job_id, "expired", "the provider never started it", client)
            # Woken by the task run's terminal-state event from the Prefect server (its worker reports the result
            # first, so the job is settled by then); the timeout paces the liveness checks above.
            ended = await TaskRunWaiter.wait_for_task_run(uuid.UUID(job_id), timeout=LIVENESS_EVERY_S)
            if ended is not None and (await asyncio.to_thread(jobs.get, store, job_id)).status in ("queued", "running"):
                await asyncio.sleep(LIVENESS_EVERY_S)  # the run ended without a report; let liveness decide

    def _holding(self, spread: Spread) -> list[str]:
        """The providers that hold an open job of the group."""
        keys = list(spread.work_keys())
        found = jobs.for_work(self.network.store, keys) if keys else []
        return sorted({j.provider for j in found if j.status in ("queued", "running")})

    def _state(self, job_id: str, lease: LeaseOut) -> tuple[JobOut, bool, bool]:
        """The job, whether its provider is alive and whether its lease is active: one read for each look, since
        every piece of work in flight looks twice a second."""
        with self.network.store.read() as session:
            row = session.get(Job, job_id)
            if row is None:
                raise NotFound(f"no job {job_id}", field="job_id")
            provider = session.get(Provider, lease.provider)
            lease_row = session.get(Lease, lease.id)
            return (jobs.out(row), provider is not None and is_alive(provider),
                    lease_row is not None and lease_row.status == "active")

    def _mark_down(self, provider: str) -> None:
        with self.network.store.write() as session:
            mark_down(session, provider)
        self.network.market.refresh_provider(provider)

    async def _give_up(self, job_id: str, reason: str, why: str, client: PrefectClient) -> JobOut:
        job = await asyncio.to_thread(jobs.abandon, self.network.store, job_id, reason)
        if job.status != "abandoned":  # it finished between our last look and now: nothing to give up
            return job
        log.warning("abandoned job %s on provider %s: %s", job_id, job.provider, why)
        await asyncio.to_thread(self.network.market.refresh_provider, job.provider)
        try:
            await client.set_task_run_state(uuid.UUID(job_id), Crashed(message=f"abandoned: {why}"), force=True)
        except Exception:  # the record in Prefect is cosmetic; the job table is what counts
            log.exception("could not mark task run %s crashed", job_id)
        return job
