"""Tool-Using Agent (``agent.tools``): a chat model that calls other agents and deployed functions as tools.

Each step asks the model (the run owner's, through the platform's gateway by default) with the tools bound;
the calls it makes run, and their results, or their errors, go back to it as tool messages. When the model
answers without a call, or the steps run out, its answer ends the run. Every call is kept in the output's
``steps``, so the run view shows what the model did with which arguments and what came back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field, ValidationError

from agxnt.adapters import as_langchain_tool, run_blocking, tool_name
from agxnt.agent import Agent, Resources
from agxnt.context import AgentContext, BudgetExceeded, Cancelled
from agxnt.errors import AgentError
from agxnt.functions import InvokeFunction
from agxnt.llm import ModelUnavailable
from agxnt.mcp import CommandSource, McpSource, UrlSource, mcp_tools
from agxnt.registry import registry
from compute.functions import registry as functions
from cxmpute.errors import CxmputeError, NotFound

FUNCTION_PREFIX = "fn:"
MCP_PREFIX = "mcp:"
STEP_CHOICES = ("auto", "required", "none")
# Tools that cannot run inside another agent's step: one pauses the whole flow run for a person.
NOT_CALLABLE = {"hitl.approve"}


class ToolStep(BaseModel):
    """One tool call the model made, and what it gave back."""

    tool: str = Field(description="The tool as named in the agent's `tools`")
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: Any = Field(None, description="The tool's output, when it succeeded")
    error: str | None = Field(None, description="Why the call failed; the model was told the same")


_ANY_EVENT: dict[str, Any] = {"type": "object"}


class ToolAgent(Agent):
    """Answer a prompt with a language model that may call other agents and your deployed functions as tools,
    within a step budget; each call, its arguments and its result are kept in the output."""

    id = "agent.tools"
    name = "Tool-Using Agent"
    family = "Agents"
    version = "1"
    # What a tool may need: tools needing more (a runtime, a GPU, a browser) are refused, since they would run
    # inside this node without the matching and isolation their own node would get.
    resources = Resources(cpu=0.5, memory_mb=512, network=True)

    class Input(BaseModel):
        prompt: str = Field(..., min_length=1, description="The task for the model")
        # The builder edits this with an agent picker, which leaves out the agents that _refusal would refuse:
        # worked out when the schema is built, so that the picker and the run apply the same rule.
        tools: list[str] = Field(
            default_factory=list,
            max_length=32,
            description="Agent ids (e.g. io.template) or fn:<name> for your deployed functions",
            json_schema_extra=lambda schema: schema.update(
                {
                    "x-cxmpute-widget": "agent-list",
                    "x-cxmpute-exclude": [i for i in registry.ids() if _refusal(registry.get(i))],
                }
            ),
        )
        mcp_servers: list[UrlSource | CommandSource] = Field(
            default_factory=list,
            max_length=8,
            description="MCP servers whose tools the model may call too: {url, headers} over streamable HTTP "
            "(through the egress policy) or {command} run in the sandbox without network; each tool "
            "is named mcp:<its name> in steps and tool_choice",
        )
        system: str | None = Field(None, description="System message, before the prompt")
        model: str | None = Field(None, description="Model name on the gateway; default: the platform's model")
        tool_choice: Literal["auto", "required"] | list[str] = Field(
            "auto",
            description="For every step, or one per step: auto, required, none, or a tool from `tools` "
            "to force that call; steps past the list use auto",
        )
        max_steps: int = Field(
            8, ge=1, le=64, description="Most model steps that may call tools (the run's max_iterations caps it too)"
        )
        event_schemas: dict[str, dict[str, Any]] = Field(
            default_factory=dict,
            description="JSON Schema of the event each fn: tool takes, by its name in "
            "`tools`: the model is shown it (a constrained model keeps to it)",
        )
        max_tokens: int | None = Field(None, ge=1, le=32768, description="Most tokens per model reply")
        temperature: float | None = Field(None, ge=0.0, le=2.0)

    class Output(BaseModel):
        answer: str
        steps: list[ToolStep]

    async def run(self, input: Input, ctx: AgentContext) -> Output:
        resolved = await resolve_tools(input.tools, ctx, input.event_schemas, input.mcp_servers)
        tools = {tool.name: (label, tool) for label, tool in resolved.items()}
        choices = step_choices(
            input.tool_choice, {label: tool.name for label, tool in resolved.items()}, input.max_steps
        )
        llm = _model(ctx, input.model)
        options = {
            k: v for k, v in (("max_tokens", input.max_tokens), ("temperature", input.temperature)) if v is not None
        }
        bound = list(resolved.values())
        messages: list[BaseMessage] = [SystemMessage(input.system)] if input.system else []
        messages.append(HumanMessage(input.prompt))
        steps: list[ToolStep] = []
        limit = min(input.max_steps, ctx.max_iterations)
        for i in ctx.iterate(input.max_steps):
            reply = await _ask(_bind(llm, bound, choices[i], options), messages)
            if not reply.tool_calls and not reply.invalid_tool_calls:
                return self.Output(answer=_text(reply), steps=steps)
            reply, unreadable = _readable(reply, {name: label for name, (label, _) in tools.items()})
            messages.append(reply)
            for call in reply.tool_calls:
                step = unreadable.get(call["id"]) or await _call(tools, call["name"], call["args"])
                steps.append(step)
                messages.append(ToolMessage(_tool_content(step), tool_call_id=call["id"] or "", name=call["name"]))
                ctx.progress((i + 1) / limit, f"{step.tool}: {'failed' if step.error else 'ok'}")
        # The steps are spent: the model answers from what its tools gave, with no more calls.
        reply = await _ask(_bind(llm, bound, "none", options), messages)
        return self.Output(answer=_text(reply), steps=steps)


async def resolve_tools(
    names: list[str],
    ctx: AgentContext,
    event_schemas: dict[str, dict[str, Any]] | None = None,
    mcp_servers: list[McpSource] | None = None,
) -> dict[str, BaseTool]:
    """The tools ``names`` stand for, then those of ``mcp_servers`` (named ``mcp:<name>``), each running for
    ``ctx``'s owner, by name; a name that is unknown, repeated or not callable from this agent is an error
    naming ``tools``. ``event_schemas`` describe the events of the ``fn:`` tools, by name."""
    schemas = event_schemas or {}
    if stray := sorted(set(schemas) - {n for n in names if n.startswith(FUNCTION_PREFIX)}):
        raise AgentError(
            f"event_schemas names {', '.join(stray)}, which are not fn: tools in `tools`",
            field="event_schemas",
            status_code=422,
        )
    tools: list[tuple[str, BaseTool]] = []
    inner = dataclasses.replace(ctx, on_progress=None)  # a tool's own progress is not this node's
    for name in names:
        if name.startswith(FUNCTION_PREFIX):
            tools.append((name, await _function_tool(name.removeprefix(FUNCTION_PREFIX), inner, schemas.get(name))))
        else:
            tools.append((name, _agent_tool(name, inner)))
    for source in mcp_servers or []:
        tools += [(MCP_PREFIX + tool.name, tool) for tool in await mcp_tools(source, inner)]
    if not tools:
        raise AgentError(
            "no tools: name agents or functions in `tools`, or servers in `mcp_servers`", field="tools", status_code=422
        )
    seen: dict[str, str] = {}
    for name, tool in tools:
        if tool.name in seen:
            raise AgentError(
                f"tools {seen[tool.name]!r} and {name!r} have the same tool name {tool.name!r}",
                field="tools",
                status_code=422,
            )
        seen[tool.name] = name
    return dict(tools)


def _agent_tool(agent_id: str, ctx: AgentContext) -> BaseTool:
    if not registry.has(agent_id):
        raise AgentError(
            f"unknown tool {agent_id!r}: not an agent id (functions are named fn:<name>)",
            field="tools",
            status_code=422,
        )
    cls = registry.get(agent_id)
    if refusal := _refusal(cls):
        raise AgentError(f"tool {agent_id!r} cannot be used here: {refusal}", field="tools", status_code=422)
    return as_langchain_tool(cls, ctx)


def _refusal(cls: type[Agent]) -> str | None:
    """Why ``cls`` may not run as this agent's tool, or None when it may."""
    if cls.id == ToolAgent.id or issubclass(cls, ToolAgent):
        return "a tool-using agent cannot be a tool of one (its calls would nest without a bound)"
    if cls.id in NOT_CALLABLE:
        return "it pauses the run for a person, which only a workflow node can"
    needs, has = cls.resources, ToolAgent.resources
    lacking = []
    if needs.runtime is not None and needs.runtime != has.runtime:
        lacking.append("a runtime")
    if needs.gpu > has.gpu:
        lacking.append("a GPU")
    if needs.browser and not has.browser:
        lacking.append("a browser")
    if needs.network and not has.network:
        lacking.append("network access")
    if not lacking:
        return None
    return f"it needs {' and '.join(lacking)}, which {ToolAgent.id} does not have; give it a node of its own"


async def _function_tool(name: str, ctx: AgentContext, event_schema: dict[str, Any] | None) -> BaseTool:
    try:
        await asyncio.to_thread(functions.version, ctx.settings, ctx.owner, name)
    except NotFound:
        raise AgentError(
            f"unknown tool {FUNCTION_PREFIX}{name}: you have no function {name!r} deployed",
            field="tools",
            status_code=422,
        ) from None

    async def _invoke(event: Any = None) -> Any:
        output = await InvokeFunction()({"name": name, "event": event}, ctx)
        return output.result

    def _invoke_sync(event: Any = None) -> Any:
        return run_blocking(_invoke(event))

    event = {**(event_schema or _ANY_EVENT), "description": "The event the function's handler receives"}
    return StructuredTool.from_function(
        func=_invoke_sync,
        coroutine=_invoke,
        name=tool_name(f"fn_{name}"),
        args_schema={"type": "object", "properties": {"event": event}, "required": ["event"]},
        description=f"Call the deployed function {name!r} with an event; returns the handler's result.",
    )


def _readable(reply: AIMessage, labels: dict[str, str]) -> tuple[AIMessage, dict[str, ToolStep]]:
    """``reply`` with its unreadable calls (arguments that are no JSON object, say cut off by the token limit)
    kept as calls without arguments, so the history stays valid to send back; and their failed steps by id."""
    failed = {
        call["id"] or "": ToolStep(
            tool=labels.get(call["name"] or "", call["name"] or ""),
            error=f"the arguments were not a JSON object: {(call['args'] or '')[:200]!r}",
        )
        for call in reply.invalid_tool_calls
    }
    if not failed:
        return reply, {}
    kept = [
        {"name": call["name"] or "", "args": {}, "id": call["id"], "type": "tool_call"}
        for call in reply.invalid_tool_calls
    ]
    return reply.model_copy(update={"tool_calls": [*reply.tool_calls, *kept], "invalid_tool_calls": []}), failed


def step_choices(tool_choice: str | list[str], names: dict[str, str], steps: int) -> list[str]:
    """Each step's tool choice as the model client takes it (auto, required, none or a tool's name), given
    ``names``, each tool in ``tools`` to its name for the model."""
    if isinstance(tool_choice, str):
        return [tool_choice] * steps
    for choice in tool_choice:
        if choice not in STEP_CHOICES and choice not in names:
            raise AgentError(
                f"tool_choice {choice!r} is neither one of {', '.join(STEP_CHOICES)} nor a tool in `tools`",
                field="tool_choice",
                status_code=422,
            )
    chosen = [choice if choice in STEP_CHOICES else names[choice] for choice in tool_choice[:steps]]
    return chosen + ["auto"] * (steps - len(chosen))


def _model(ctx: AgentContext, model: str | None) -> BaseChatModel:
    llm = ctx.llm
    if model is None:
        return llm
    if "model_name" not in type(llm).model_fields:
        raise AgentError(
            f"the platform's model is not chosen by name here, so {model!r} cannot be used; leave `model` empty",
            field="model",
            status_code=422,
        )
    return llm.model_copy(update={"model_name": model})


def _bind(llm: BaseChatModel, tools: list[BaseTool], choice: str, options: dict[str, Any]) -> Any:
    try:
        return llm.bind_tools(tools, tool_choice=choice, **options)
    except NotImplementedError:
        raise AgentError(
            "the configured language model cannot call tools: set CXMPUTE_LLM_BASE_URL to an "
            "OpenAI-compatible server, or serve a model with a tool chat template on the gateway",
            field="model",
            status_code=422,
        ) from None


async def _ask(model: Any, messages: list[BaseMessage]) -> AIMessage:
    try:
        return await model.ainvoke(messages)
    except CxmputeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model client raises its own transport and API error types
        raise ModelUnavailable(f"the language model failed ({type(exc).__name__}: {exc})", field="model") from None


async def _call(tools: dict[str, tuple[str, BaseTool]], name: str, arguments: dict[str, Any]) -> ToolStep:
    """Run one call the model made; a failure becomes the step's error rather than the run's."""
    if name not in tools:
        return ToolStep(tool=name, arguments=arguments, error=f"there is no tool {name!r}")
    label, tool = tools[name]
    try:
        result = await tool.ainvoke(arguments)
    except (Cancelled, BudgetExceeded):
        raise
    except CxmputeError as exc:  # the tool's own failure (an agent's, or a function's invocation)
        return ToolStep(tool=label, arguments=arguments, error=exc.message)
    except ToolException as exc:  # an MCP server's error result
        return ToolStep(tool=label, arguments=arguments, error=str(exc))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return ToolStep(tool=label, arguments=arguments, error=f"invalid arguments: {problems}")
    return ToolStep(tool=label, arguments=arguments, result=result)


def _tool_content(step: ToolStep) -> str:
    if step.error is not None:
        return json.dumps({"error": step.error})
    return json.dumps(step.result, default=str)


def _text(reply: AIMessage) -> str:
    content = reply.content
    if isinstance(content, list):
        content = "".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content)
    return str(content).strip()
