"""The agent catalogue and direct invocation of one agent."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, ValidationError

from agxnt import AgentContext, AgentInfo, registry
from agxnt.errors import AgentError
from web.deps import owner_in, public

router = APIRouter(prefix="/v1/agents", tags=["agents"])


class AgentList(BaseModel):
    items: list[AgentInfo]
    total: int


class InvokeRequest(BaseModel):
    input: dict[str, Any] = Field(default_factory=dict, description="Values for the agent's Input model")
    version: str | None = Field(None, description="Agent version; newest when empty")


class InvokeResponse(BaseModel):
    agent: str
    version: str
    output: dict[str, Any]


@router.get(
    "",
    dependencies=[Depends(public)],
    response_model=AgentList,
    summary="List agents with their input/output JSON Schemas",
)
def list_agents(
    family: str | None = None, q: str | None = Query(None, description="Search id, name, description")
) -> AgentList:
    items = registry.catalogue()
    if family:
        items = [a for a in items if a.family.lower() == family.lower()]
    if q:
        needle = q.lower()
        items = [a for a in items if needle in f"{a.id} {a.name} {a.description}".lower()]
    return AgentList(items=items, total=len(items))


@router.get(
    "/{agent_id}", dependencies=[Depends(public)], response_model=AgentInfo, summary="One agent's catalogue entry"
)
def get_agent(agent_id: str, version: str | None = None) -> AgentInfo:
    return registry.get(agent_id, version).info(registry.versions(agent_id))


@router.post("/{agent_id}/invoke", response_model=InvokeResponse, summary="Run one agent and return its output")
async def invoke(agent_id: str, body: InvokeRequest, owner: str = Depends(owner_in("agents"))) -> InvokeResponse:
    cls = registry.get(agent_id, body.version)
    try:
        data = cls.Input.model_validate(body.input)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise AgentError(f"input.{field}: {first['msg']}", field=f"input.{field}", status_code=422) from None
    output = await cls()(data, AgentContext(owner=owner))
    return InvokeResponse(agent=cls.id, version=cls.version, output=output.model_dump(mode="json"))
