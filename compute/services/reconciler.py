"""The reconciler: keeps each service's replicas at the count its autoscaler wants, and stops what is no
longer wanted.

Each replica slot is driven by one task that dispatches a ``service`` job onto a ``container`` provision
through the market (:class:`~compute.worker.dispatch.Dispatcher`, which opens the lease, watches the
provider's heartbeats and, when they lapse, abandons the job — the lease ends ``provider-lost`` — and
dispatches it again to another provider). When a job ends while its slot is still wanted (the container
exited, or its lease term ran out) the task starts the work again. A stop is asked for through the replica's
record: its provider's next report is answered "stop", the container is removed and the job completes,
which meters its seconds into the lease and ends it, refunding the rest of the escrow.

One reconciler runs per platform API process; a restarted platform abandons the jobs its predecessor left
running (their leases end, refunding escrow) and dispatches the slots afresh.
"""

from __future__ import annotations

import asyncio
import math
import time

from compute.network import get_network
from compute.provisions import Resources
from compute.services import slots
from compute.services.autoscale import Autoscaler
from compute.services.gateway import load
from compute.services.models import Replica, Service
from compute.services.replica import ReplicaJob
from compute.worker import jobs
from compute.worker.dispatch import Dispatcher, Spread
from compute.worker.jobs import JobSpec
from cxmpute.errors import CxmputeError
from cxmpute.logging import get_logger
from cxmpute.loops import LoopService
from cxmpute.settings import Settings, get_settings

log = get_logger(__name__)
# The job ends this long before its lease does, so its seconds are metered while the lease is active.
TERM_MARGIN_S = 60.0
MAX_BACKOFF_S = 30.0


class Reconciler(LoopService):
    name = "service-reconciler"
    every_s = 1.0

    def __init__(self, settings: Settings | None = None):
        super().__init__()
        self.settings = settings or get_settings()
        self.drivers: dict[str, asyncio.Task] = {}
        self.scalers: dict[str, Autoscaler] = {}
        self.spreads: dict[str, Spread] = {}  # a service's replicas go to different providers while they can

    async def run_once(self) -> None:
        await self.tick()

    async def on_stop(self) -> None:
        drivers = list(self.drivers.values())
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)

    async def tick(self) -> None:
        now = time.monotonic()
        for service, replicas in await asyncio.to_thread(slots.services_to_reconcile, self.settings):
            wanted = [r for r in replicas if r.status != "stopping"]
            if service.status != "active":
                self.scalers.pop(service.id, None)
                self.spreads.pop(service.id, None)
                doomed = wanted
            else:
                scaler = self.scalers.setdefault(service.id, Autoscaler(self.settings.service_scale_down_s))
                count = scaler.desired(
                    load.take_peak(service.id),
                    len(wanted),
                    service.target_inflight,
                    service.min_replicas,
                    service.max_replicas,
                    now,
                )
                for _ in range(count - len(wanted)):
                    replicas.append(await asyncio.to_thread(slots.add_replica, self.settings, service.id))
                doomed = wanted[count:] if count < len(wanted) else []
            for replica in doomed:
                await asyncio.to_thread(slots.set_status, self.settings, replica.id, "stopping")
            for replica in replicas:
                task = self.drivers.get(replica.id)
                if task is None or task.done():
                    self.drivers[replica.id] = asyncio.create_task(self._drive(replica.id))
                elif replica in doomed or replica.status == "stopping":
                    await self._stop_unstarted(replica.id, task)
        for replica_id in [k for k, t in self.drivers.items() if t.done()]:
            del self.drivers[replica_id]

    async def _stop_unstarted(self, replica_id: str, task: asyncio.Task) -> None:
        """A slot still waiting for capacity has nothing to stop on a provider: end its wait now."""
        if await asyncio.to_thread(self._open_jobs, replica_id):
            return  # its provider's next report is answered "stop"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(self._abandon_open, replica_id)
        await asyncio.to_thread(slots.set_status, self.settings, replica_id, "stopped")

    def _open_jobs(self, replica_id: str) -> list[str]:
        return [
            j.id
            for j in jobs.for_work(get_network().store, [slots.work_key(replica_id)])
            if j.status in ("queued", "running")
        ]

    def _abandon_open(self, replica_id: str) -> None:
        net = get_network()
        for job_id in self._open_jobs(replica_id):
            jobs.abandon(net.store, job_id, "expired")

    def _spread(self, service_id: str) -> Spread:
        if service_id not in self.spreads:
            self.spreads[service_id] = Spread(
                lambda: [slots.work_key(r) for r in slots.replica_ids(self.settings, service_id)]
            )
        return self.spreads[service_id]

    def _spec(self, service: Service, replica: Replica) -> JobSpec:
        term = self.settings.service_term_s
        payload = ReplicaJob(
            replica_id=replica.id,
            token=replica.token,
            service=service.name,
            port=service.port,
            env=service.env,
            cpu=service.cpu,
            memory_mb=service.memory_mb,
            pids=service.pids,
            image=service.image,
            network=service.network,
            run_s=term - TERM_MARGIN_S,
        )
        # A slot runs the same work term after term: each term is placed anew, never adopted from the last.
        return JobSpec(
            kind="service",
            provision="container",
            payload=payload.model_dump(),
            owner=service.owner,
            work_key=slots.work_key(replica.id),
            rerun=True,
            resources=Resources(cpu=service.cpu, memory_mb=service.memory_mb),
            price_min_gwei=service.price_min_gwei,
            price_max_gwei=service.price_max_gwei,
            timeout_s=term,
        )

    async def _drive(self, replica_id: str) -> None:
        """Keep one replica slot running until it is asked to stop."""
        # Jobs a previous platform process dispatched for this slot are no longer watched: end them first.
        await asyncio.to_thread(self._abandon_open, replica_id)
        failures = 0
        while True:
            service, replica = await asyncio.to_thread(slots.load, self.settings, replica_id)
            if replica.status == "stopping" or service.status != "active":
                await asyncio.to_thread(slots.set_status, self.settings, replica_id, "stopped")
                return
            ran = False
            try:
                job = await Dispatcher().run(self._spec(service, replica), spread=self._spread(service.id))
            except CxmputeError as exc:
                error, ok = exc.message, False
            except Exception as exc:  # the platform's own fault: keep the slot, try again later
                log.exception("replica %s could not be dispatched", replica_id)
                error, ok = f"{type(exc).__name__}: {exc}", False
            else:
                ran, ok = True, job.status == "done"
                error = None if ok else (job.error or "the replica's job failed")
            failures = 0 if ok else failures + 1
            await asyncio.to_thread(slots.set_status, self.settings, replica_id, "pending", error=error, restarted=ran)
            if failures:
                await asyncio.sleep(min(MAX_BACKOFF_S, math.pow(2, failures - 1)))
