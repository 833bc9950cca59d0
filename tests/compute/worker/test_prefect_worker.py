"""Prefect finds our worker type the way it finds any integration's, and the worker creates its pool."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.workers.base import BaseWorker

from compute.worker.prefect_worker import WORKER_TYPE, CxmputeWorker


def test_prefect_discovers_the_cxmpute_worker_type():
    assert BaseWorker.get_worker_class_from_type(WORKER_TYPE) is CxmputeWorker
    assert WORKER_TYPE in BaseWorker.get_all_available_worker_types()


async def test_a_provider_worker_creates_the_pool_and_polls_its_own_queue(prefect_api):
    queue = "0x00000000000000000000000000000000000000aa"
    async with CxmputeWorker(work_pool_name="cx-network-test", work_queues=[queue]) as worker:
        await worker.sync_with_backend()
        await worker.get_and_submit_flow_runs()
    async with get_client() as client:
        pool = await client.read_work_pool("cx-network-test")
        assert pool.type == WORKER_TYPE
        assert "command" in pool.base_job_template["job_configuration"]
        queues = [q.name for q in await client.read_work_queues(work_pool_name="cx-network-test")]
    assert queue in queues
