"""Invoke Function (``fn.invoke``): a workflow node that calls a deployed serverless function.

The invocation goes through the same path as ``POST /v1/functions/{name}/invoke``: the platform's warm pool,
or a provider when a max price is set, and it is recorded with its logs and metrics like any other.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from compute.functions import invocations
from compute.functions.invocations import InvocationOut, InvokeIn


class InvokeFunction(Agent):
    """Call one of your deployed functions with an event and return its result."""

    id = "fn.invoke"
    name = "Invoke Function"
    family = "Code"
    version = "1"
    resources = Resources(cpu=0.1, memory_mb=64)

    class Input(InvokeIn):
        name: str = Field(..., min_length=1, max_length=63, description="The function's name")
        event: Any = Field(None, description="The JSON value passed to handler(event, context)")
        fail_on_error: bool = Field(
            True, description="Fail the node when the function fails, instead of reporting it in the output"
        )

    class Output(InvocationOut):
        pass

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        request = InvokeIn(event=input.event, version=input.version, price_max_gwei=input.price_max_gwei)
        record = await invocations.invoke(ctx.settings, ctx.owner, input.name, request)
        if input.fail_on_error and record.status != "ok":
            raise AgentError(
                f"function {input.name!r} failed ({record.status}): {record.error}",
                field="name",
                status_code=record.error_status or 422,
            )
        return self.Output(**record.model_dump())
