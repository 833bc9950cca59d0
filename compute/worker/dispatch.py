"""Dispatch: match a job onto a provider, hand it to that provider's worker, watch it, fail over.

Each attempt opens a lease through the market (cheapest provision that fits, within the owner's price range)
and records the job ``queued`` in the same transaction; the API process the provider's worker is connected to
pushes it over the worker's job stream within milliseconds (:mod:`compute.worker.delivery`). The dispatcher
waits through this process's job watcher (one query for every job in flight here) and meanwhile watches the
provider's heartbeats: when they lapse it marks the provider down (out of matching until it beats again),
abandons the job — which ends the lease as ``provider-lost``, refunding the escrow and slashing the stake —
and dispatches the work again to another provider. A result the lost provider sends later is refused (the job
is no longer ``running``), so the work is accepted and paid for exactly once.

Attempts of one piece of work share its ``work_key``: a dispatcher asked to run work that already has an
attempt returns a finished one as it is and adopts an open one, so a process that restarts and runs the same
work again neither places nor pays for it twice. Each attempt is recorded once (a unique index): of two
dispatchers placing the same attempt at the same moment, the second ends its fresh lease unused and adopts
the first one's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from compute.errors import ComputeError
from compute.market.demand import MatchRequest
from compute.market.leases import LeaseOut
from compute.market.matching import NoMatchError
from compute.models import Job, Lease, Provider
from compute.network import Network, get_network
from compute.providers.registry import is_alive, mark_down
from compute.worker import jobs, turns
from compute.worker.jobs import JobOut, JobSpec
from compute.worker.watcher import watcher
from cxmpute.errors import NotFound
from cxmpute.logging import get_logger
from cxmpute.settings import get_settings

log = get_logger(__name__)
MAX_ATTEMPTS = 8
LIVENESS_EVERY_S = 0.5
MAX_PAUSE_S = 1.0  # longest wait between placement tries while what fits is busy
MAX_AVOIDED = 64  # MatchRequest.avoid_providers' bound
T = TypeVar("T")

# The looks at jobs in flight run on threads of their own. On the event loop's default pool they queued behind
# the placements of work waiting for capacity (hundreds retrying while every provision is busy), so a job that
# had ended went unnoticed for seconds, and its capacity stayed unused meanwhile.
_watching = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cxmpute-dispatch-watch")


async def _watch_thread(call: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_watching, functools.partial(call, *args))


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


class WorkCancelled(ComputeError):
    """The work's owner cancelled it (its run was cancelled): it is not run again elsewhere."""

    status_code = 409


class _Pending:
    """Placements of one event loop waiting for capacity. Each job of this process that ends wakes the oldest
    one (the capacity its lease held is free again); a timeout covers capacity freed by other processes."""

    def __init__(self) -> None:
        self.waiting: deque[asyncio.Future] = deque()

    async def wait(self, timeout: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        try:
            await asyncio.wait({future}, timeout=timeout)
        finally:
            with contextlib.suppress(ValueError):
                self.waiting.remove(future)

    def freed(self) -> None:
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_result(None)
                return


_pendings: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pending] = weakref.WeakKeyDictionary()


def _pending() -> _Pending:
    loop = asyncio.get_running_loop()
    found = _pendings.get(loop)
    if found is None:
        found = _pendings[loop] = _Pending()
    return found


class Dispatcher:
    def __init__(self, network: Network | None = None):
        self.network = network or get_network()

    async def run(self, spec: JobSpec, spread: Spread | None = None) -> JobOut:
        """Run ``spec`` on the network; returns the accepted attempt (``done`` or ``failed``). Work that already
        has attempts (same ``work_key``) is not placed again while one is finished or open: a finished attempt
        is returned as it is (unless ``spec.rerun``), an open one is watched to its end. Raises
        :class:`WorkCancelled` once the work is cancelled."""
        deadline = time.monotonic() + spec.timeout_s
        earlier = await asyncio.to_thread(jobs.latest, self.network.store, spec.work_key)
        lost = [j.provider for j in earlier if j.status == "abandoned"]  # the next attempt prefers any other
        first = earlier[0].attempt + 1 if earlier else 1
        if earlier:
            if jobs.is_cancelled(earlier[0]):
                raise WorkCancelled("the work was cancelled", field="run_id")
            if earlier[0].status in ("done", "failed") and not spec.rerun:
                return earlier[0]
            if earlier[0].status in jobs.OPEN:
                adopted = await self._watch(earlier[0], deadline)
                if adopted.status in ("done", "failed"):
                    return adopted
                lost.append(adopted.provider)
        for attempt in range(first, first + MAX_ATTEMPTS):
            job = await self._attempt(spec, attempt, deadline, lost, spread)
            if job.status in ("done", "failed"):
                return job
            lost.append(job.provider)
        raise DispatchError(f"gave up after {MAX_ATTEMPTS} providers failed to run the work", field="resources")

    async def run_once(self, spec: JobSpec, attempt: int = 1, spread: Spread | None = None) -> JobOut:
        """Run ``spec`` on one provider without failing over: returns the job as it ended (``done``, ``failed``,
        or ``abandoned`` when its provider was lost). For work that must move as a group, e.g. training ranks."""
        deadline = time.monotonic() + spec.timeout_s
        return await self._attempt(spec, attempt, deadline, spread=spread)

    async def _attempt(
        self, spec: JobSpec, attempt: int, deadline: float, avoid: list[str] | None = None, spread: Spread | None = None
    ) -> JobOut:
        job = await self._place(spec, attempt, deadline, avoid or [], spread)
        return await self._watch(job, deadline)

    async def _place(
        self, spec: JobSpec, attempt: int, deadline: float, avoid: list[str], spread: Spread | None
    ) -> JobOut:
        """Open a lease and record the job, waiting while every provision that would fit is busy (a job another
        dispatcher recorded for this attempt meanwhile is adopted instead). Providers in ``avoid``, and those
        holding an open job of the ``spread`` group, are passed over while another can take the work, and taken
        when none can. A group places one job at a time, each seeing where the last went."""
        pause = 0.01
        while True:
            async with spread.lock if spread else contextlib.nullcontext():
                passed_over = list(avoid)
                if spread:
                    passed_over += [p for p in await asyncio.to_thread(self._holding, spread) if p not in passed_over]
                async with turns.turn(self.network.store, "placement"):
                    job = await asyncio.to_thread(
                        self._place_and_record, spec, attempt, deadline, pause, passed_over[:MAX_AVOIDED]
                    )
                if job is not None:
                    return job
            # Woken as soon as a job of this process ends; the timeout covers capacity other processes free.
            await _pending().wait(pause)
            self.network.market.sync()
            if pause == MAX_PAUSE_S:
                # Another dispatcher may have recorded this attempt while this one waited: adopt it, leasing
                # nothing. Asked once the wait is long, not on every retry: that race is rare, retries are not.
                won = await asyncio.to_thread(jobs.attempt_of, self.network.store, spec.work_key, attempt)
                if won is not None:
                    return won
            pause = min(pause * 2, MAX_PAUSE_S)

    def _place_and_record(
        self, spec: JobSpec, attempt: int, deadline: float, pause: float, passed_over: list[str]
    ) -> JobOut | None:
        recording = jobs.Recording(str(uuid.uuid4()), spec, attempt)
        lease = self._try_place(spec, deadline, pause, passed_over, recording)
        if lease is None:
            return None
        if recording.job is not None:
            return recording.job
        won = self._yield_to(spec.work_key, attempt, lease)
        if won is None:  # the attempt's record went away between the placement and this look
            raise DispatchError(f"attempt {attempt} of {spec.work_key} could not be recorded", field="work_key")
        return won

    def _yield_to(self, work_key: str, attempt: int, lease: LeaseOut) -> JobOut | None:
        """Another dispatcher recorded this attempt a moment before us (two executors that both believe they hold
        the run, one's claim having lapsed under load): its job is the work's, and watching it to its end is
        adopting it. Our lease ends unused: nothing metered, so the whole escrow goes back to the owner, its
        capacity is free again and, as for a cancellation, its provider is not blamed. Returns the job that won
        (None when no job holds the attempt)."""
        self.network.market.end(lease.id, "user-cancelled", None)
        won = jobs.attempt_of(self.network.store, work_key, attempt)
        if won is not None:
            log.info(
                "attempt %d of %s was placed by another dispatcher (job %s); adopting it, lease %s ended unused",
                attempt,
                work_key,
                won.id,
                lease.id,
            )
        return won

    def _try_place(
        self, spec: JobSpec, deadline: float, pause: float, passed_over: list[str], recording: jobs.Recording
    ) -> LeaseOut | None:
        """A lease, passing over ``passed_over`` unless only they fit; None while what fits is busy."""
        request = MatchRequest(
            kind=spec.provision,
            resources=spec.resources,
            price_min_gwei=spec.price_min_gwei,
            price_max_gwei=spec.price_max_gwei,
            duration_s=max(1, math.ceil(spec.timeout_s)),
            avoid_providers=passed_over,
        )
        try:
            return self.network.market.place(spec.owner, request, extra=recording)
        except NoMatchError as exc:
            if passed_over and exc.explanation.excluded.get("avoided"):
                return self._try_place(spec, deadline, pause, [], recording)
            if not exc.explanation.busy or time.monotonic() + pause > deadline:
                raise
            return None

    async def _watch(self, job: JobOut, deadline: float) -> JobOut:
        """Wait for the job to end, watching its provider's liveness; returns it ended (``abandoned`` when the
        provider was lost), or raises when it ran past ``deadline`` or was cancelled."""
        interval = get_settings().heartbeat_interval_s
        # A live provider that has not started the job is most likely saturated: move the work, don't slash.
        claim_by = time.monotonic() + max(60.0, 10 * interval)
        try:
            while True:
                await watcher(self.network.store).wait(job.id, LIVENESS_EVERY_S)  # paces the checks below
                job, alive, leased = await _watch_thread(self._state, job.id, job.provider, job.lease_id)
                if job.status not in jobs.OPEN:
                    break
                now = time.monotonic()
                if now > deadline:
                    await self._give_up(job.id, "expired", "the work ran past its time limit")
                    raise DispatchError(
                        f"the work did not finish within its time limit on provider {job.provider}",
                        field="timeout_seconds",
                        status_code=504,
                    )
                if not alive:
                    await _watch_thread(self._mark_down, job.provider)
                    job = await self._give_up(job.id, "provider-lost", "heartbeats lapsed")
                    break
                if not leased:
                    job = await self._give_up(job.id, "provider-lost", "its lease ended")
                    break
                if job.status == "queued" and now > claim_by:
                    job = await self._give_up(job.id, "expired", "the provider never started it")
                    break
            if job.status in ("done", "failed"):  # its lease ended in the API process: this process's index learns it
                await _watch_thread(self.network.market.refresh_provider, job.provider)
        finally:
            _pending().freed()  # whatever ended it, its lease is over: a waiting placement may fit
        if jobs.is_cancelled(job):
            raise WorkCancelled(f"job {job.id} was cancelled", field="run_id")
        return job

    def _holding(self, spread: Spread) -> list[str]:
        """The providers that hold an open job of the group."""
        keys = list(spread.work_keys())
        found = jobs.for_work(self.network.store, keys) if keys else []
        return sorted({j.provider for j in found if j.status in ("queued", "running")})

    def _state(self, job_id: str, provider_address: str, lease_id: str) -> tuple[JobOut, bool, bool]:
        """The job, whether its provider is alive and whether its lease is active: one read for each look, since
        every piece of work in flight looks twice a second."""
        with self.network.store.read() as session:
            row = session.get(Job, job_id)
            if row is None:
                raise NotFound(f"no job {job_id}", field="job_id")
            provider = session.get(Provider, provider_address)
            lease_row = session.get(Lease, lease_id)
            return (
                jobs.out(row),
                provider is not None and is_alive(provider),
                lease_row is not None and lease_row.status == "active",
            )

    def _mark_down(self, provider: str) -> None:
        with self.network.store.write() as session:
            mark_down(session, provider)

    async def _give_up(self, job_id: str, reason: str, why: str) -> JobOut:
        job = await _watch_thread(jobs.abandon, self.network.store, job_id, reason)
        if job.status != "abandoned" or jobs.is_cancelled(job):  # it ended between our last look and now
            return job
        log.warning("abandoned job %s on provider %s: %s", job_id, job.provider, why)
        return job
