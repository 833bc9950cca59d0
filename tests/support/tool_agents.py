"""Small agents with bounded inputs, registered in this process, for tool-calling tests: a random-weight model
decoding under their schemas always finishes a valid call, and each gives a result the test can recompute."""

from __future__ import annotations

from pydantic import BaseModel, Field

from agxnt.agent import Agent
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.registry import registry


class Shout(Agent):
    """Upper-case a short word."""

    id = "tooltest.shout"
    name = "Shout"

    class Input(BaseModel):
        word: str = Field(..., max_length=10)

    class Output(BaseModel):
        text: str

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        return self.Output(text=input.word.upper() + "!")


class Add(Agent):
    """Add two small numbers."""

    id = "tooltest.add"
    name = "Add"

    class Input(BaseModel):
        a: int = Field(..., ge=0, le=99)
        b: int = Field(..., ge=0, le=99)

    class Output(BaseModel):
        sum: int

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        return self.Output(sum=input.a + input.b)


class Broken(Agent):
    """Always fails."""

    id = "tooltest.broken"
    name = "Broken"

    class Input(BaseModel):
        flag: bool

    class Output(BaseModel):
        never: str

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        raise AgentError("the broken tool broke", field="flag")


def register_tool_agents() -> None:
    for cls in (Shout, Add, Broken):
        registry.register(cls)
