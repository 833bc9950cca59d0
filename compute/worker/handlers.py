"""Job handlers: what a provider worker runs for each job kind, found through ``cxmpute.jobs`` entry points.

A handler is ``async def handler(payload: dict, owner: str) -> dict``; it raises a
:class:`cxmpute.errors.CxmputeError` for failures that are the job's own fault (bad input), anything else
for faults of the machine. Packages above ``compute`` (agents, functions) plug their kinds in here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from compute.errors import ComputeError

Handler = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]


@lru_cache(maxsize=1)
def handlers() -> dict[str, Handler]:
    return {ep.name: ep.load() for ep in entry_points(group="cxmpute.jobs")}


def handler(kind: str) -> Handler:
    found = handlers().get(kind)
    if found is None:
        raise ComputeError(f"this worker cannot run {kind!r} jobs (known: {sorted(handlers())})", field="kind")
    return found
