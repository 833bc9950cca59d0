"""The Agent contract: registry from entry points, typed I/O, and the LangChain and Prefect faces."""

from __future__ import annotations

import time

import pytest
from langchain_core.tools import BaseTool
from prefect import flow

from agxnt import AgentContext, AgentError, registry
from agxnt.adapters import as_langchain_tool, as_prefect_task
from agxnt.context import BudgetExceeded

BUILDER = {"io.input", "io.template", "io.output", "io.json", "util.wait", "http.request", "hitl.approve"}


def test_registry_loads_entry_points():
    ids = set(registry.ids())
    assert BUILDER <= ids
    for info in registry.catalogue():
        assert info.input_schema["type"] == "object" and info.output_schema["type"] == "object"
        assert info.name and info.family and info.version


def test_unknown_agent_is_a_404_error():
    with pytest.raises(AgentError) as exc:
        registry.get("no.such.agent")
    assert exc.value.status_code == 404 and exc.value.field == "agent"


async def test_agent_validates_input_and_runs():
    cls = registry.get("io.template")
    out = await cls()({"template": "{{ a }}+{{ b }}", "variables": {"a": 1, "b": 2}}, AgentContext())
    assert out.text == "1+2"


async def test_langchain_face_is_a_base_tool():
    tool = as_langchain_tool(registry.get("io.template"))
    assert isinstance(tool, BaseTool) and tool.name == "io_template"
    assert tool.args_schema.model_json_schema()["required"] == ["template"]
    assert await tool.ainvoke({"template": "x{{ y }}", "variables": {"y": "z"}}) == {"text": "xz"}


def test_prefect_face_runs_as_a_task(prefect_api):
    template = as_prefect_task(registry.get("io.template"))

    @flow
    def one() -> dict:
        return template({"template": "ok {{ n }}", "variables": {"n": 1}})

    assert one() == {"text": "ok 1"}


def test_iteration_budget():
    ctx = AgentContext(max_iterations=3)
    assert list(ctx.iterate(10)) == [0, 1, 2]
    assert list(ctx.iterate(2)) == [0, 1]
    expired = AgentContext(deadline=time.time() - 1)
    with pytest.raises(BudgetExceeded):
        list(expired.iterate(5))


def test_missing_secret_names_it():
    with pytest.raises(AgentError) as exc:
        AgentContext().secret("twitter_token")
    assert exc.value.field == "twitter_token"


def test_catalogue_is_rebuilt_when_an_agent_registers():
    from pydantic import BaseModel

    from agxnt import Agent

    class Io(BaseModel):
        x: int = 0

    class Late(Agent):
        id = "test.late"
        name = "Late"
        Input = Io
        Output = Io

        async def run(self, input, ctx):
            return input

    before = registry.catalogue()
    assert registry.catalogue() is before  # cached between calls
    registry.register(Late)
    assert "test.late" in {a.id for a in registry.catalogue()}
