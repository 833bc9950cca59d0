"""Running one agent as a job: the same entry point for a node run where the flow runs and one run by a
provider's worker (registered as the ``agent`` job kind in ``cxmpute.jobs``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.registry import registry
from agxnt.secrets import redact


class AgentJob(BaseModel):
    agent: str
    version: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None
    node_id: str | None = None
    deadline: float | None = Field(None, description="Unix time the run's budget ends")
    max_iterations: int = 100


async def run_agent(payload: dict[str, Any], owner: str) -> dict[str, Any]:
    """Run the agent the payload names on its inputs; returns its output with every secret it read redacted.

    Raises :class:`AgentError` naming the failing input fields when the inputs do not validate.
    """
    job = AgentJob.model_validate(payload)
    cls = registry.get(job.agent, job.version)
    ctx = AgentContext(
        owner=owner, run_id=job.run_id, node_id=job.node_id, deadline=job.deadline, max_iterations=job.max_iterations
    )
    try:
        output = await cls()(job.inputs, ctx)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise AgentError(f"invalid input: {problems}", status_code=422) from exc
    # Outputs are persisted and shown in run views: no secret an agent used may appear there.
    return redact(output.model_dump(mode="json"), ctx.secrets.values())
