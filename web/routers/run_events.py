"""Live run views over server-sent events: the builder watches a run's node states, outputs and logs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.sorting import LogSort
from pydantic import BaseModel

from cxmpute.errors import NotFound
from flows import prefect_api
from flows.history import RunView, read_run
from web.deps import owner_in

router = APIRouter(prefix="/v1/runs", tags=["runs"])

POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 15.0
SETTLE_GRACE_SECONDS = 10.0  # a finished run's last node states arrive as events shortly after it ends
LOG_DRAIN_SECONDS = 3.0  # run logs reach the Prefect API in batches, about every two seconds
LOG_PAGE = 200


class LogLine(BaseModel):
    time: str
    level: int
    node: str | None
    message: str


def _owned(run_id: str, owner: str) -> RunView:
    view = read_run(run_id)
    if view.owner != owner:
        raise NotFound(f"run {run_id} not found", field="run_id")
    return view


def _logs(run_id: str, offset: int, nodes: dict[str, str]) -> list[LogLine]:
    client = prefect_api.client()
    logs = client.read_logs(
        LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)])),
        limit=LOG_PAGE,
        offset=offset,
        sort=LogSort.TIMESTAMP_ASC,
    )
    return [
        LogLine(
            time=log.timestamp.isoformat(),
            level=log.level,
            message=log.message,
            node=nodes.get(str(log.task_run_id)) if log.task_run_id else None,
        )
        for log in logs
    ]


def _event(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"


@router.get(
    "/{run_id}/events",
    summary="Stream a run's view and logs as server-sent events",
    description="`run` events carry the whole run view whenever it changes, `log` events one log line, "
    "`end` closes the stream once every node is settled (or after `max_seconds`).",
    response_class=StreamingResponse,
)
async def events(
    run_id: str,
    request: Request,
    owner: str = Depends(owner_in("workflows")),
    max_seconds: float = Query(3600, gt=0, le=24 * 3600),
) -> StreamingResponse:
    first = await run_in_threadpool(_owned, run_id, owner)  # a 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        view, last, logged = first, None, 0
        started = beat = time.monotonic()
        finished_at: float | None = None
        settled_at: float | None = None
        while True:
            data = view.model_dump_json()
            if data != last:
                yield _event("run", data)
                last = data
            nodes = {n.task_run_id: n.node for n in view.nodes.values() if n.task_run_id}
            lines = await run_in_threadpool(_logs, view.flow_run_id, logged, nodes) if view.flow_run_id else []
            for line in lines:
                yield _event("log", line.model_dump_json())
            logged += len(lines)
            now = time.monotonic()
            if view.finished and finished_at is None:
                finished_at = now
            if view.settled and settled_at is None:
                settled_at = now
            drained = settled_at is not None and now - settled_at > LOG_DRAIN_SECONDS and len(lines) < LOG_PAGE
            if (
                drained
                or now - started > max_seconds
                or (finished_at is not None and now - finished_at > SETTLE_GRACE_SECONDS + LOG_DRAIN_SECONDS)
            ):
                yield _event("end", json.dumps({"state": view.state}))
                return
            if now - beat > HEARTBEAT_SECONDS:
                yield ": keep-alive\n\n"
                beat = now
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_SECONDS)
            view = await run_in_threadpool(read_run, run_id)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
