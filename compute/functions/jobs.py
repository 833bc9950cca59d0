"""The ``function`` job kind: a provider's worker runs an invocation matched to it on its own warm pool."""

from __future__ import annotations

import base64
from typing import Any

from pydantic import BaseModel, Field

from compute.functions.pool import FunctionSpec, default_pool


class FunctionJob(BaseModel):
    spec: FunctionSpec
    event: Any = None
    package_base64: str = Field(..., description="The package zip; used only when no interpreter is warm")


async def run_function(payload: dict[str, Any], owner: str) -> dict[str, Any]:
    """Invoke the function; a failing handler is a finished job whose outcome says so (the work was done)."""
    job = FunctionJob.model_validate(payload)
    spec = job.spec.model_copy(update={"owner": owner})  # interpreters are never shared between accounts
    outcome = await default_pool().invoke(spec, job.event, lambda: base64.b64decode(job.package_base64))
    return outcome.model_dump(mode="json")
