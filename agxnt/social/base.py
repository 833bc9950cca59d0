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

class SocialAgent(Agent):
    family = "Social"
    actions: ClassVar[dict[str, str]]  # action name -> method name

    async def run(self, input: BaseModel, ctx: AgentContext) -> BaseModel:
        method = getattr(self, self.actions[input.action])
        secrets = list(ctx.secrets.values())
        try:
            output = await method(input, ctx)
        except AgentError as exc:
            error = type(exc)(redact(exc.message, secrets), field=exc.field, status_code=exc.status_code)
            raise error from None
        except httpx.HTTPError as exc:
            raise AgentError(redact(f"{self.name} request failed: {type(exc).__name__}: {exc}", secrets),
                             status_code=502) from None
        return self.Output.model_validate(redact(output.model_dump(mode="json"), list(ctx.secrets.values())))
