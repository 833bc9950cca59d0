"""The Prefect task that carries a job to one provider's worker.

Routing uses Prefect's background tasks: a task run created as *deferred* is pushed by the Prefect
server, over the websocket of ``/task_runs/subscriptions/scheduled``, to the task workers subscribed to
its task key — and every provider's worker subscribes to its own key only. The task run takes no
parameters (so no shared result storage is needed between machines): its id is the job's id, and the
worker fetches the job from the platform API.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from functools import lru_cache

from prefect import Task
from prefect.context import TaskRunContext

TASK_NAME = "cxmpute-job"

_executor: Callable[[str], Awaitable[None]] | None = None
_lock = threading.Lock()


def task_key(provider: str) -> str:
    return f"{TASK_NAME}-{provider.lower()}"


async def execute_job() -> None:
    """Runs on the provider's worker: hands the job this task run stands for to the worker's executor."""
    if _executor is None:
        raise RuntimeError("no provider worker is running in this process")
    await _executor(str(TaskRunContext.get().task_run.id))


def set_executor(executor: Callable[[str], Awaitable[None]] | None) -> None:
    global _executor
    with _lock:
        _executor = executor


class _ProviderTask(Task):
    """A task whose key names its provider, kept through ``with_options`` (the task worker copies tasks)."""

    def with_options(self, **kwargs):
        copy = super().with_options(**kwargs)
        copy.task_key = self.task_key
        return copy


def _never_shared(context, parameters) -> str:
    # Jobs take no parameters, so any input-based cache key would make every job of a run share one result.
    return f"{TASK_NAME}-{context.task_run.id}"


@lru_cache(maxsize=4096)
def job_task(provider: str) -> Task:
    """The task whose runs reach ``provider``'s worker (one object per provider: building a Task is costly)."""
    task = _ProviderTask(execute_job, name=TASK_NAME, retries=0, cache_key_fn=_never_shared)
    task.task_key = task_key(provider)
    return task
