"""The network's Prefect worker type, ``cxmpute``: a provider's worker for whole flow runs.

Registered with Prefect through the ``prefect.collections`` entry point, so ``prefect worker start
--type cxmpute`` and work pools of type ``cxmpute`` know it. Each provider polls its own queue (named by
its address) of the network's work pool, which is how flow runs are routed to the provider the platform
picked, and the pool's default queue, where deployments that name no queue (``cxmpute deploy``) put their
runs for whichever provider takes them first. Flow runs execute as child processes of the worker, as
with Prefect's process worker; user code inside them runs in the agents' sandboxed runtimes.
"""

from __future__ import annotations

from prefect.exceptions import ObjectAlreadyExists
from prefect.workers.process import ProcessWorker

WORKER_TYPE = "cxmpute"
WORK_POOL = "cxmpute-network"
DEFAULT_QUEUE = "default"  # every work pool has it; Prefect puts runs there when a deployment names no queue


class CxmputeWorker(ProcessWorker):
    type = WORKER_TYPE
    _description = (
        "Runs flow runs on a Cxmpute provider machine; the platform routes work to a provider "
        "through its queue (named by the provider's address) of the network's work pool."
    )
    _display_name = "Cxmpute provider"
    _logo_url = ""

    async def sync_with_backend(self) -> None:
        """Also create this provider's queues: the platform routes flow runs to a provider by its queue, which
        must exist before anything is sent to it."""
        await super().sync_with_backend()
        if self._work_pool is None:
            return
        existing = {q.name for q in await self.client.read_work_queues(work_pool_name=self._work_pool_name)}
        for name in sorted(self._work_queues - existing):
            try:
                await self.client.create_work_queue(name=name, work_pool_name=self._work_pool_name)
            except ObjectAlreadyExists:  # another worker of the same provider created it first
                pass
