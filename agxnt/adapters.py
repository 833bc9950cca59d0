"""The other two faces of an agent: a LangChain tool and a Prefect task."""

from __future__ import annotations

import re
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from prefect import Task, task

from agxnt.agent import Agent
from agxnt.context import AgentContext


def tool_name(agent_id: str) -> str:
    # OpenAI-style tool names allow only [A-Za-z0-9_-]
    return re.sub(r"[^A-Za-z0-9_-]", "_", agent_id)


def as_langchain_tool(agent_cls: type[Agent], ctx: AgentContext | None = None) -> BaseTool:
    """The agent as a LangChain tool whose args schema is the agent's Input model."""
    agent = agent_cls()
    context = ctx or AgentContext()

    async def _call(**kwargs: Any) -> dict[str, Any]:
        output = await agent(agent_cls.Input.model_validate(kwargs), context)
        return output.model_dump(mode="json")

    return StructuredTool.from_function(
        coroutine=_call,
        name=tool_name(agent_cls.id),
        description=agent_cls.description or agent_cls.name,
        args_schema=agent_cls.Input,
    )


def as_prefect_task(agent_cls: type[Agent], **task_options: Any) -> Task:
    """The agent as a Prefect task taking the Input as a dict and returning the Output as a dict."""

    async def _run(input: dict[str, Any], owner: str = "local") -> dict[str, Any]:
        output = await agent_cls()(input, AgentContext(owner=owner))
        return output.model_dump(mode="json")

    options = {"name": agent_cls.id, "task_run_name": agent_cls.id, **task_options}
    return task(**options)(_run)
