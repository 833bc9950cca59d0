"""The provider worker: joins the network, keeps its heartbeat, and runs the jobs matched to it.

One process per provider machine. It signs in with the provider's wallet, registers its hardware, tops up
its stake, publishes (or re-activates) its provision, then serves node-level work pushed to it over one
long-lived stream from the platform API (:mod:`compute.worker.delivery`: each job arrives claimed, with what
to run, and starts at once) and, with a work pool, a :class:`~compute.worker.prefect_worker.CxmputeWorker`
polling this provider's queue of the network's work pool and the pool's default queue (whole flow runs, e.g.
from deployments).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from eth_account import Account
from pydantic import BaseModel, Field

from compute.providers.hardware import detect
from compute.provisions import Resources
from compute.runtimes import runtime_registry
from compute.worker.delivery import MAX_HELD, Push, StreamIn
from compute.worker.handlers import handler
from compute.worker.jobs import Claimed
from compute.worker.platform import Platform
from cxmpute.client import PlatformError, PlatformUnreachable
from cxmpute.errors import CxmputeError
from cxmpute.logging import get_logger
from cxmpute.recursion import cap_recursion
from cxmpute.settings import get_settings

log = get_logger(__name__)
RECONNECT_S = (0.05, 5.0)  # first and longest pause between attempts to reopen the job stream
REPORT_FOR_S = 300.0  # how long a result is retried while the platform is unreachable


class Offer(BaseModel):
    """What this provider publishes: one provision of agent compute."""

    name: str = Field(..., min_length=1, max_length=100)
    region: str = "local"
    price_gwei: int = Field(..., gt=0, description="Ask per compute-unit-second")
    resources: Resources = Field(default_factory=Resources)
    stake_gwei: int = Field(0, ge=0, description="Stake to hold (topped up on chain at start)")
    concurrency: int = Field(4, ge=1, le=MAX_HELD, description="Jobs run at once")
    work_pool: str | None = Field(None, description="Also poll this Prefect work pool's queue for flow runs")


class ProviderWorker:
    def __init__(self, api_url: str, wallet: Account, offer: Offer, chain_rpc_url: str | None = None):
        self.platform = Platform(api_url, wallet, chain_rpc_url)
        self.offer = offer
        self.provision_id: str | None = None
        self.container_provision_id: str | None = None
        self.vm_provision_id: str | None = None
        self.ran = 0
        self.running: dict[str, asyncio.Task] = {}  # jobs pushed here and not yet reported, by id

    @property
    def address(self) -> str:
        return self.platform.address

    async def join(self) -> None:
        p = self.platform
        await p.sign_in()
        profile = await asyncio.to_thread(detect, get_settings().data_dir)
        profile.runtimes = await asyncio.to_thread(runtime_registry(get_settings()).available)
        await p.register(self.offer.name, self.offer.region, profile)
        await p.heartbeat()
        lost = await p.call("POST", "/v1/work/recover")
        if lost:
            log.warning("jobs of an earlier run of this provider were lost and handed back: %s", lost)
        if self.offer.stake_gwei:
            await p.ensure_stake(self.offer.stake_gwei)
        self.provision_id = await self._publish("agent")
        # The machine's other offers share the agent provision's capacity: one machine is never sold twice.
        # Container services need a Docker engine on this machine; without one, no such provision is offered.
        if await asyncio.to_thread(runtime_registry(get_settings()).runtime("container").check) is None:
            self.container_provision_id = await self._publish("container", shares=self.provision_id)
        # Virtual machines need a hypervisor (QEMU) on this machine; without one, no vm provision is offered.
        if await asyncio.to_thread(runtime_registry(get_settings()).runtime("vm").check) is None:
            self.vm_provision_id = await self._publish("vm", shares=self.provision_id)

    async def _publish(self, kind: str, shares: str | None = None) -> str:
        """Re-activate this machine's provision of ``kind`` from an earlier start, or publish a new one (in the
        capacity group of ``shares``)."""
        o = self.offer
        for prov in await self.platform.call("GET", "/v1/provisions"):
            if prov["kind"] == kind and prov["status"] != "retired" and Resources(**prov["resources"]) == o.resources:
                await self.platform.call(
                    "PATCH", f"/v1/provisions/{prov['id']}", {"price_gwei": o.price_gwei, "status": "active"}
                )
                return prov["id"]
        created = await self.platform.call(
            "POST",
            "/v1/provisions",
            {
                "kind": kind,
                "price_gwei": o.price_gwei,
                "region": o.region,
                "resources": o.resources.model_dump(),
                "shares_capacity_with": shares,
            },
        )
        return created["id"]

    async def serve_jobs(self) -> None:
        """Hold the stream of jobs pushed to this provider, reopening it with backoff whenever it drops. Jobs
        dispatched meanwhile wait queued on the platform and arrive when it is back."""
        pause = RECONNECT_S[0]
        while True:
            terms = StreamIn(concurrency=self.offer.concurrency, held=sorted(self.running))
            try:
                async with self.platform.client.stream("POST", "/v1/work/stream", json=terms.model_dump()) as resp:
                    async for line in resp.aiter_lines():
                        if line:
                            pause = RECONNECT_S[0]  # connected: the next drop starts the backoff over
                            self._on_push(Push.model_validate_json(line))
                log.warning("the platform closed the job stream; reconnecting")
            except (PlatformUnreachable, PlatformError) as exc:
                log.warning("job stream unavailable (%s); reconnecting in %.2f s", exc.message, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECONNECT_S[1])

    def _on_push(self, push: Push) -> None:
        if push.type == "job" and push.job is not None and push.job.id not in self.running:
            self.running[push.job.id] = asyncio.create_task(self.execute(push.job), name=f"job-{push.job.id}")
        elif push.type == "stop" and push.id in self.running:
            log.info("job %s was abandoned on the platform: stopping it", push.id)
            self.running[push.id].cancel()

    async def execute(self, job: Claimed) -> None:
        """Run a job pushed here (already claimed for this provider) and report its outcome. A job stopped by
        the platform is cancelled inside its handler, whose own cleanup kills what it started; it reports
        nothing, since the platform no longer accepts a result for it."""
        try:
            started, t0 = time.time(), time.monotonic()
            report: dict[str, Any]
            try:
                result = await handler(job.kind)(job.payload, job.owner)
                report = {"ok": True, "result": result}
            except CxmputeError as exc:
                report = {"ok": False, "error": exc.message[:2000], "error_status": min(max(exc.status_code, 400), 599)}
            except Exception as exc:
                log.exception("job %s failed", job.id)
                report = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000], "error_status": 500}
            report |= {"seconds": time.monotonic() - t0, "started_ts": started}
            self.ran += 1
            await self._report(job.id, report)
        finally:
            self.running.pop(job.id, None)

    async def _report(self, job_id: str, report: dict[str, Any]) -> None:
        """Send the outcome, retrying while the platform is unreachable (the job stays held meanwhile, so a
        reconnecting stream does not hand it out again). A refusal (409: abandoned) is final."""
        give_up, pause = time.monotonic() + REPORT_FOR_S, RECONNECT_S[0]
        while True:
            try:
                await self.platform.call("POST", f"/v1/work/{job_id}/result", report, ok=(409,))
                return
            except PlatformUnreachable as exc:
                if time.monotonic() > give_up:
                    log.error("result of job %s not delivered: %s", job_id, exc.message)
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, RECONNECT_S[1])

    async def run(self) -> None:
        cap_recursion()  # the chain's libraries, imported by now, raised it
        await self.join()
        stop = threading.Event()
        beats = threading.Thread(
            target=self.platform.beat_forever,
            name="heartbeats",
            daemon=True,
            args=(get_settings().heartbeat_interval_s, stop),
        )
        beats.start()
        workers = [self.serve_jobs()]
        if self.offer.work_pool:
            from compute.worker.prefect_worker import DEFAULT_QUEUE, CxmputeWorker

            # Its own queue takes the runs the platform routes here; the pool's default queue takes runs of
            # deployments that name no queue, which any provider may run.
            flow_worker = CxmputeWorker(
                work_pool_name=self.offer.work_pool,
                work_queues=[self.address.lower(), DEFAULT_QUEUE],
                name=f"{self.offer.name}-{self.address[:10]}",
            )
            workers.append(flow_worker.start())
        log.info("provider %s serving provision %s", self.address, self.provision_id)
        try:
            await asyncio.gather(*workers)
        finally:
            stop.set()
            for task in self.running.values():
                task.cancel()
            await asyncio.gather(*self.running.values(), return_exceptions=True)
            await self.platform.close()
