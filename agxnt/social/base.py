"""What every social agent shares: a dispatch from ``action`` to a method, and redaction of the
account's secrets from everything the agent returns or raises."""

from __future__ import annotations

from typing import ClassVar

import httpx
from pydantic import BaseModel

from agxnt.agent import Agent
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.secrets import redact
from cxmpute.errors import CxmputeError


class SocialAgent(Agent):
    family = "Social"
    actions: ClassVar[dict[str, str]]  # action name -> method name

    async def run(self, input: BaseModel, ctx: AgentContext) -> BaseModel:
        method = getattr(self, self.actions[input.action])
        # The replacement error is raised outside the handler so the original, unmasked one is not
        # kept as its __context__.
        try:
            output = await method(input, ctx)
        except CxmputeError as exc:
            failure = exc.rephrased(redact(exc.message, ctx.secrets.values()), field=exc.field)
        except httpx.HTTPError as exc:
            message = redact(f"{self.name} request failed: {type(exc).__name__}: {exc}", ctx.secrets.values())
            failure = AgentError(message, status_code=502)
        else:
            return self.Output.model_validate(redact(output.model_dump(mode="json"), ctx.secrets.values()))
        raise failure
