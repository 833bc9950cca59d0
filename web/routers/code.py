"""The runtimes this machine offers and the caller's open Sequential Code sessions.

Running code goes through the agents (``code.exec``, ``code.sequential``); these routes let a client
see which runtimes it may ask for, list its sessions and close one. Only a session's owner sees it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from agxnt.context import default_services
from compute.runtimes import DEFAULT_RUNTIME, RuntimeRegistry
from compute.runtimes.code import SessionInfo
from web.deps import owner_in, public

router = APIRouter(prefix="/v1", tags=["code"])


class RuntimeInfo(BaseModel):
    name: str
    description: str
    available: bool
    unavailable_reason: str | None = None
    default: bool


def runtimes() -> RuntimeRegistry:
    return default_services().runtimes


@router.get(
    "/runtimes",
    dependencies=[Depends(public)],
    summary="Runtimes user code can run in, and whether this machine offers each",
    response_model=list[RuntimeInfo],
)
def list_runtimes(registry: RuntimeRegistry = Depends(runtimes)) -> list[RuntimeInfo]:
    infos = []
    for name in registry.names():
        why = registry.runtime(name).check()
        infos.append(
            RuntimeInfo(
                name=name,
                description=registry.runtime(name).description,
                available=why is None,
                unavailable_reason=why,
                default=name == DEFAULT_RUNTIME,
            )
        )
    return infos


@router.get("/code/sessions", summary="Your open Sequential Code sessions", response_model=list[SessionInfo])
async def list_sessions(
    owner: str = Depends(owner_in("agents")), registry: RuntimeRegistry = Depends(runtimes)
) -> list[SessionInfo]:
    await registry.sessions.reap()
    return registry.sessions.list(owner)


@router.delete("/code/sessions/{session_id}", status_code=204, summary="Close one of your code sessions")
async def close_session(
    session_id: str, owner: str = Depends(owner_in("agents")), registry: RuntimeRegistry = Depends(runtimes)
) -> None:
    await registry.sessions.close(session_id, owner)
