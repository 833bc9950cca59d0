"""Sequential Internet (`web.sequential`): a chain of web steps, each able to use what came before.

A step's params may hold templates: ``"{{ prev.results[0].url }}"`` (a whole-value expression keeps its
type) or ``"Notes on {{ steps[0].page.title }}"`` (text). Names: ``prev`` (the previous step's output),
``steps`` (every earlier output, in order) and ``context`` (the agent's ``context`` input).
"""

from __future__ import annotations

import re
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, Field

from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext
from agxnt.errors import AgentError
from agxnt.registry import registry
from cxmpute.errors import CxmputeError

_jinja = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
_WHOLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)


class ChainStep(BaseModel):
    agent: str = Field(..., pattern=r"^web\.(internet|dive|deep|browser)$", description="The web agent to run")
    params: dict[str, Any] = Field(default_factory=dict, description="Its input; strings may be templates")


class StepResult(BaseModel):
    agent: str
    params: dict[str, Any] = Field(..., description="The input after templates were filled in")
    output: dict[str, Any]


def fill(value: Any, names: dict[str, Any], field: str) -> Any:
    """Fill templates in a params value, recursively."""
    if isinstance(value, dict):
        return {k: fill(v, names, f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, names, f"{field}.{i}") for i, v in enumerate(value)]
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        whole = _WHOLE.match(value)
        if whole and "{{" not in whole.group(1):
            return _jinja.compile_expression(whole.group(1), undefined_to_none=False)(**names)
        return _jinja.from_string(value).render(**names)
    except jinja2.UndefinedError as exc:
        raise AgentError(
            f"template refers to something earlier steps did not produce: {exc.message}", field=field
        ) from None
    except jinja2.TemplateError as exc:
        raise AgentError(f"template error: {exc}", field=field) from None


class SequentialInternetAgent(Agent):
    """Run web steps in order; each step's params can use the results of the steps before it."""

    id = "web.sequential"
    name = "Sequential Internet"
    family = "Web"
    resources = Resources(network=True, browser=True, cpu=1.0, memory_mb=1024)

    class Input(BaseModel):
        steps: list[ChainStep] = Field(..., min_length=1, max_length=20)
        context: Any = Field(None, description="A value the steps' templates can use as `context`")

    class Output(BaseModel):
        steps: list[StepResult]
        last: dict[str, Any] = Field(..., description="The last step's output")

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        done: list[StepResult] = []
        for i in ctx.iterate(len(input.steps)):
            step = input.steps[i]
            outputs = [r.output for r in done]
            names = {"prev": outputs[-1] if outputs else {}, "steps": outputs, "context": input.context}
            params = fill(step.params, names, f"steps.{i}.params")
            agent = registry.get(step.agent)()
            try:
                result = await agent(agent.Input.model_validate(params), ctx)
            except CxmputeError as exc:
                where = f"steps.{i}.params.{exc.field}" if exc.field else f"steps.{i}"
                raise exc.rephrased(f"step {i + 1} ({step.agent}): {exc.message}", field=where) from None
            except ValueError as exc:  # pydantic's ValidationError: the filled-in params do not fit the agent
                raise AgentError(
                    f"step {i + 1} ({step.agent}) has bad params: {exc}", field=f"steps.{i}.params", status_code=422
                ) from None
            done.append(StepResult(agent=step.agent, params=params, output=result.model_dump(mode="json")))
            ctx.progress((i + 1) / len(input.steps), f"step {i + 1} of {len(input.steps)}")
        return self.Output(steps=done, last=done[-1].output)
