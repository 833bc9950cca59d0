"""The other two faces of an agent: a LangChain tool and a Prefect task."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from langchain_core.tools import BaseTool, StructuredTool
from prefect import Task, task

from agxnt.agent import Agent
from agxnt.context import AgentContext

T = TypeVar("T")


def tool_name(agent_id: str) -> str:
    # OpenAI-style tool names allow only [A-Za-z0-9_-]
    return re.sub(r"[^A-Za-z0-9_-]", "_", agent_id)


def run_blocking(work: Coroutine[Any, Any, T]) -> T:
    """Wait for ``work`` from synchronous code, even code called from inside a running event loop, where
    ``asyncio.run`` refuses: the work gets a fresh loop on a worker thread of its own."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxmpute-tool") as pool:
        return pool.submit(asyncio.run, work).result()


def as_langchain_tool(agent_cls: type[Agent], ctx: AgentContext | None = None) -> BaseTool:
    """The agent as a LangChain tool whose args schema is the agent's Input model; ``invoke`` and
    ``ainvoke`` both run it."""
    agent = agent_cls()
    context = ctx or AgentContext()

    async def _call(**kwargs: Any) -> dict[str, Any]:
        output = await agent(agent_cls.Input.model_validate(kwargs), context)
        return output.model_dump(mode="json")

    def _call_sync(**kwargs: Any) -> dict[str, Any]:
        return run_blocking(_call(**kwargs))

    return StructuredTool.from_function(
        func=_call_sync,
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
