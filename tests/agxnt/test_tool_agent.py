"""The tool-using agent against a real inference server (a tiny random-weight model whose chat template renders
tools): forced calls are valid for the tool's schema, each call runs the real tool and is kept in ``steps``,
failures go back to the model, and the step budget holds. Tools it may not use are refused up front."""

from __future__ import annotations

import sys

import httpx
import pytest
from langchain_core.messages import ToolMessage
from langchain_openai import ChatOpenAI

from agxnt import toolagent
from agxnt.adapters import as_langchain_tool
from agxnt.builtins import TemplateAgent
from agxnt.context import AgentContext, Services
from agxnt.errors import AgentError
from agxnt.registry import registry
from agxnt.toolagent import ToolAgent
from tests.support.tool_agents import register_tool_agents
from tests.support.tool_server import tool_inference_server


@pytest.fixture(scope="module", autouse=True)
def server(tmp_path_factory):
    register_tool_agents()
    with tool_inference_server(tmp_path_factory.mktemp("models")) as url:
        yield url


@pytest.fixture
def progress() -> list[tuple[float, str | None]]:
    return []


@pytest.fixture
def ctx(server, progress) -> AgentContext:
    return AgentContext(services=Services(llm=model(server)), on_progress=lambda f, m: progress.append((f, m)))


def model(server: str) -> ChatOpenAI:
    # an async client of its own: langchain-openai would share one across the tests' event loops
    return ChatOpenAI(
        model="tools",
        base_url=server,
        api_key="unused",
        max_retries=0,
        temperature=0,
        http_async_client=httpx.AsyncClient(timeout=60),
    )


def run(ctx: AgentContext, **input):
    return ToolAgent()({"prompt": "Shout hello, then add 2 and 3.", "max_tokens": 200, **input}, ctx)


async def test_forced_calls_run_the_real_tools_and_are_kept_in_steps(ctx, progress):
    out = await run(
        ctx,
        tools=["tooltest.shout", "tooltest.add"],
        tool_choice=["tooltest.shout", "tooltest.add", "required"],
        max_steps=3,
    )
    assert [s.tool for s in out.steps] == ["tooltest.shout", "tooltest.add", out.steps[2].tool]
    assert out.steps[2].tool in {"tooltest.shout", "tooltest.add"}
    for step in out.steps:
        assert step.error is None
        cls = registry.get(step.tool)
        cls.Input.model_validate(step.arguments)  # constrained decoding kept the arguments valid
        assert step.result == (await cls()(step.arguments, ctx)).model_dump(mode="json")
    assert out.steps[0].result["text"] == out.steps[0].arguments["word"].upper() + "!"
    assert isinstance(out.answer, str)
    assert [m for _, m in progress] == [f"{s.tool}: ok" for s in out.steps]
    assert [round(f, 2) for f, _ in progress] == [0.33, 0.67, 1.0]


async def test_a_failing_tool_goes_back_to_the_model_and_into_steps(ctx, monkeypatch):
    seen: list[list] = []
    ask = toolagent._ask

    async def spy(model, messages):
        seen.append(list(messages))
        return await ask(model, messages)

    monkeypatch.setattr(toolagent, "_ask", spy)
    out = await run(
        ctx, tools=["tooltest.broken", "tooltest.add"], tool_choice=["tooltest.broken", "tooltest.add"], max_steps=2
    )
    assert out.steps[0].tool == "tooltest.broken" and out.steps[0].error == "the broken tool broke"
    assert out.steps[0].result is None
    assert out.steps[1].error is None and out.steps[1].result == {"sum": sum(out.steps[1].arguments.values())}
    told = [m for m in seen[1] if isinstance(m, ToolMessage)]
    assert len(told) == 1 and "the broken tool broke" in told[0].content


async def test_the_run_budget_caps_the_steps(server, progress):
    ctx = AgentContext(services=Services(llm=model(server)), max_iterations=1)
    out = await run(ctx, tools=["tooltest.add"], tool_choice="required", max_steps=5)
    assert len(out.steps) == 1 and out.steps[0].tool == "tooltest.add"  # then it answered without tools


async def test_auto_answers_in_text_without_calls(ctx):
    out = await run(ctx, tools=["tooltest.add"], tool_choice="auto", max_steps=2, max_tokens=8)
    # a random model rarely writes a well-formed call of its own; whatever it did is recorded
    assert all(s.tool == "tooltest.add" for s in out.steps)
    assert isinstance(out.answer, str)


async def test_arguments_cut_off_by_the_token_limit_are_a_failed_step(ctx):
    out = await run(ctx, tools=["io.template"], tool_choice=["io.template"], max_steps=1, max_tokens=120)
    [step] = out.steps
    assert step.tool == "io.template" and step.result is None
    assert step.error.startswith("the arguments were not a JSON object")


@pytest.mark.parametrize(
    "tools, extra, field, says",
    [
        (["no.such.agent"], {}, "tools", "unknown tool 'no.such.agent'"),
        (["fn:never-deployed-here"], {}, "tools", "no function 'never-deployed-here'"),
        (["agent.tools"], {}, "tools", "cannot be a tool"),
        (["hitl.approve"], {}, "tools", "pauses the run"),
        (["code.exec"], {}, "tools", "needs a runtime"),
        (["web.internet"], {}, "tools", "needs a browser"),
        (["tooltest.add", "tooltest.add"], {}, "tools", "same tool name"),
        (["tooltest.add"], {"tool_choice": ["tooltest.shout"]}, "tool_choice", "'tooltest.shout'"),
        (["tooltest.add"], {"event_schemas": {"fn:x": {}}}, "event_schemas", "fn:x"),
    ],
)
async def test_tools_it_may_not_use_are_refused_naming_the_field(ctx, tools, extra, field, says):
    with pytest.raises(AgentError) as raised:
        await run(ctx, tools=tools, **extra)
    assert raised.value.status_code == 422 and raised.value.field == field
    assert says in raised.value.message


def test_an_agents_langchain_tool_runs_synchronously():
    tool = as_langchain_tool(TemplateAgent)
    assert tool.invoke({"template": "Hi {{ n }}", "variables": {"n": 1}}) == {"text": "Hi 1"}


async def test_an_agents_langchain_tool_runs_synchronously_inside_a_running_loop():
    tool = as_langchain_tool(TemplateAgent)
    assert tool.invoke({"template": "Hi {{ n }}", "variables": {"n": 2}}) == {"text": "Hi 2"}
    assert await tool.ainvoke({"template": "Hi {{ n }}", "variables": {"n": 3}}) == {"text": "Hi 3"}


MCP_SERVER = """
from typing import Literal

from mcp.server.fastmcp import FastMCP

server = FastMCP("words")


@server.tool(name="words.shout")
def shout(word: Literal["alpha", "beta"]) -> str:
    '''Shout one of two words.'''
    return word.upper() + "!"


server.run("stdio")
"""


async def test_a_local_mcp_servers_tool_is_called_and_kept_in_steps(ctx):
    if reason := ctx.services.runtimes.get("sandbox").check():
        pytest.skip(f"no sandbox here: {reason}")
    out = await run(
        ctx,
        tools=[],
        mcp_servers=[{"command": [sys.executable, "-c", MCP_SERVER]}],
        tool_choice=["mcp:words_shout"],
        max_steps=1,
    )
    assert len(out.steps) == 1
    step = out.steps[0]
    assert step.tool == "mcp:words_shout" and step.error is None, step
    assert step.arguments["word"] in {"alpha", "beta"} and step.result == step.arguments["word"].upper() + "!"


async def test_no_tools_at_all_is_refused_naming_tools(ctx):
    with pytest.raises(AgentError) as refused:
        await run(ctx, tools=[])
    assert refused.value.status_code == 422 and refused.value.field == "tools"
