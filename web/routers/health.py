"""Liveness (`/healthz`: the API process answers) and readiness (`/readyz`: the platform can serve requests).

Readiness asks each dependency one cheap question, all at once, each within a bound, so a dependency that
hangs makes the answer "not ready", never a request that hangs. Both routes are public: a check's detail is a
count or a fixed phrase and an error's type name, never an address, a path or an error's own text, which may
carry a URL with its credentials.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import httpx
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from cxmpute import __version__
from cxmpute.db import session_scope
from cxmpute.http import async_client
from cxmpute.settings import Settings
from flows.queue import live_executors
from stxrage import open_storage
from web.deps import SettingsDep, public

router = APIRouter(tags=["health"])

PREFECT_TIMEOUT_S = 1.0
CHECK_TIMEOUT_S = 2.0  # the bound on every check, whatever it waits on


class NotReady(Exception):
    """A check's answer that its dependency cannot serve; the message is published as is."""


class Check(BaseModel):
    ok: bool
    detail: str = Field(..., description="What the check found: a count or a short phrase, never an address")
    latency_ms: float


class Readiness(BaseModel):
    status: Literal["ready", "not-ready"]
    checks: dict[str, Check] = Field(..., description="database, prefect, executors, storage")


@router.get("/healthz", dependencies=[Depends(public)], summary="Liveness check")
async def healthz() -> dict:
    # On the event loop, not in the thread pool: a liveness answer must not queue behind busy requests.
    return {"status": "ok", "version": __version__}


async def _database(settings: Settings) -> str:
    def query() -> None:
        with session_scope() as session:
            session.execute(text("SELECT 1"))

    await asyncio.to_thread(query)
    return "answers"


async def _prefect(settings: Settings) -> str:
    from prefect.settings import get_current_settings

    api = get_current_settings().api.url
    if not api:  # each process would run a temporary server of its own: the executors' runs are not in it
        raise NotReady("no Prefect server configured (PREFECT_API_URL)")
    async with async_client(timeout=PREFECT_TIMEOUT_S) as client:
        try:
            resp = await client.get(f"{api.rstrip('/')}/health")
        except httpx.TimeoutException:
            raise NotReady(f"the Prefect server did not answer within {PREFECT_TIMEOUT_S:g} s") from None
        except httpx.TransportError as exc:
            raise NotReady(f"the Prefect server is unreachable ({type(exc).__name__})") from None
    if resp.status_code != 200:
        raise NotReady(f"the Prefect server answered {resp.status_code}")
    return "answers"


async def _executors(settings: Settings) -> str:
    def count() -> tuple[int, int, int]:
        with session_scope() as session:
            live = live_executors(session)
        return len(live), sum(e.capacity for e in live), sum(e.running for e in live)

    live, capacity, running = await asyncio.to_thread(count)
    if not live:
        raise NotReady("no live executor: runs are accepted but none starts (cxmpute executor start)")
    return f"{live} live, running {running} of {capacity} slots"


async def _storage(settings: Settings) -> str:
    def probe() -> str:
        store = open_storage(settings)
        nodes = [n for n in store.nodes() if n.status != "evicted"]
        active = sum(n.status == "active" for n in nodes)
        if nodes:
            if not active:
                raise NotReady(f"none of {len(nodes)} storage nodes is active")
            return f"{active} of {len(nodes)} nodes active"
        # The embedded default: the local directory becomes the one node on the first put.
        store.root.mkdir(parents=True, exist_ok=True)
        if not os.access(store.root, os.W_OK | os.X_OK):
            raise NotReady("the local store's directory is not writable")
        return "local store writable"

    return await asyncio.to_thread(probe)


# Each check gets the settings of the request that asked.
CHECKS: dict[str, Callable[[Settings], Awaitable[str]]] = {
    "database": _database,
    "prefect": _prefect,
    "executors": _executors,
    "storage": _storage,
}


async def _run(check: Callable[[Settings], Awaitable[str]], settings: Settings) -> Check:
    started = time.perf_counter()
    try:
        detail, ok = await asyncio.wait_for(check(settings), CHECK_TIMEOUT_S), True
    except NotReady as exc:
        detail, ok = str(exc), False
    except TimeoutError:
        detail, ok = f"no answer within {CHECK_TIMEOUT_S:g} s", False
    except Exception as exc:  # noqa: BLE001 - any failure is the answer; its text may hold a URL, so only its type
        detail, ok = f"failed ({type(exc).__name__})", False
    return Check(ok=ok, detail=detail, latency_ms=round((time.perf_counter() - started) * 1000, 1))


@router.get(
    "/readyz",
    dependencies=[Depends(public)],
    response_model=Readiness,
    summary="Readiness check",
    description="Each dependency the platform needs to serve, checked at once and each within "
    f"{CHECK_TIMEOUT_S:g} s: the database, the Prefect server, live executors, storage. "
    "200 when every check is ok, 503 otherwise.",
    responses={503: {"model": Readiness, "description": "A dependency is not ready; its check says why"}},
)
async def readyz(settings: SettingsDep) -> JSONResponse:
    results = await asyncio.gather(*(_run(check, settings) for check in CHECKS.values()))
    body = Readiness(
        status="ready" if all(r.ok for r in results) else "not-ready", checks=dict(zip(CHECKS, results, strict=True))
    )
    return JSONResponse(
        body.model_dump(), status_code=200 if body.status == "ready" else 503, headers={"Cache-Control": "no-store"}
    )
