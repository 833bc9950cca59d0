"""The platform as an MCP server (streamable HTTP at ``/mcp``): the agent catalogue, the caller's deployed
functions and the caller's saved workflows, each an MCP tool.

The endpoint authenticates like the API (``Authorization: Bearer`` session token or API key) before the SDK
sees a byte, and never falls back to the anonymous local wallet: an MCP client is a program somebody pointed
at this port, so it has to say whose account it spends. Each kind of tool needs the scope its API route
needs (``agents``, ``workloads``, ``workflows``). The SDK runs stateless, so no MCP session outlives the
request that carries its credential.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from agxnt import AgentContext, registry
from compute.functions import invocations
from compute.functions import registry as functions
from compute.functions.invocations import InvokeIn
from compute.identity.tokens import Principal
from cxmpute import __version__
from cxmpute.db import session_scope
from cxmpute.errors import CxmputeError, Forbidden, Unauthorized
from cxmpute.settings import get_settings
from flows import runner, store
from flows.history import RunView, read_run
from flows.problems import WorkflowInvalid
from flows.run_inputs import check_inputs
from web.deps import current_principal

MCP_PATH = "/mcp"
# A workflow tool waits this long for the run's outputs, then answers the run id to follow at /v1/runs/{id}.
WORKFLOW_WAIT_S = 60.0
WORKFLOW_POLL_S = 0.2
WORKFLOW_PREFIX = "workflow."
FUNCTION_PREFIX = "function."
# hitl.approve only answers inside a run paused for a person; called alone it can do nothing but fail.
HIDDEN_AGENTS = frozenset({"hitl.approve"})
_PRINCIPAL = "cxmpute.principal"

server: Server = Server("cxmpute", version=__version__)


class WorkflowAnswer(BaseModel):
    """What a workflow tool returns: the outputs once the run ended within the wait, else the run to follow."""

    run_id: str
    state: str
    outputs: dict[str, Any] | None = None
    error: str | None = None
    url: str


def _caller() -> Principal:
    """The principal the endpoint authenticated for the HTTP request this MCP message came in."""
    request = server.request_context.request
    return request.scope[_PRINCIPAL]


def _exposed_agent(agent_id: str) -> bool:
    # Agents named like a function or workflow tool would shadow it, so the catalogue gives way.
    return agent_id not in HIDDEN_AGENTS and not agent_id.startswith((WORKFLOW_PREFIX, FUNCTION_PREFIX))


def _agent_tools() -> list[types.Tool]:
    return [
        types.Tool(
            name=info.id, title=info.name, description=info.description or info.name, inputSchema=info.input_schema
        )
        for info in registry.catalogue()
        if _exposed_agent(info.id)
    ]


def _function_tools(owner: str) -> list[types.Tool]:
    schema = {
        "type": "object",
        "properties": {"event": {"description": "The JSON value passed to handler(event, context)"}},
    }
    return [
        types.Tool(
            name=f"{FUNCTION_PREFIX}{fn.name}",
            title=fn.name,
            description=f"Your deployed function {fn.name!r} (version {fn.version})",
            inputSchema=schema,
        )
        for fn in functions.latest_all(get_settings(), owner)
    ]


def _workflow_tools(owner: str) -> list[types.Tool]:
    with session_scope() as session:
        summaries, _ = store.list_(session, owner, limit=500)
        saved = [store.get(session, owner, s.id) for s in summaries]
    return [
        types.Tool(
            name=f"{WORKFLOW_PREFIX}{wf.id}",
            title=wf.name,
            description=wf.document.description or f"Your workflow {wf.name!r}: runs it and returns its outputs",
            inputSchema=_workflow_schema(wf.document),
        )
        for wf in saved
    ]


def _workflow_schema(document: Any) -> dict[str, Any]:
    properties = {
        name: {**({"type": d.type} if d.type else {}), "description": d.description}
        for name, d in document.inputs.items()
    }
    # check_inputs is the rule a run is held to, so asking it about an empty run names the required inputs.
    required = [p.field.split(".", 1)[1] for p in check_inputs(document, {}) if p.code == "missing_run_input"]
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


@server.list_tools()
async def _list_tools() -> list[types.Tool]:
    principal = _caller()
    tools = _agent_tools() if "agents" in principal.scopes else []
    if "workloads" in principal.scopes:
        tools += await anyio.to_thread.run_sync(_function_tools, principal.address)
    if "workflows" in principal.scopes:
        tools += await anyio.to_thread.run_sync(_workflow_tools, principal.address)
    return tools


@server.call_tool(validate_input=False)  # each tool validates against the owner's own definition below
async def _call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
    principal = _caller()
    try:
        if name.startswith(WORKFLOW_PREFIX):
            principal.require("workflows")
            return await _run_workflow(principal.address, name.removeprefix(WORKFLOW_PREFIX), arguments)
        if name.startswith(FUNCTION_PREFIX):
            principal.require("workloads")
            return await _invoke_function(principal.address, name.removeprefix(FUNCTION_PREFIX), arguments)
        principal.require("agents")
        return await _run_agent(principal.address, name, arguments)
    except CxmputeError as exc:
        return _error(exc.message)
    except (WorkflowInvalid, ValidationError) as exc:
        return _error(str(exc))


async def _run_agent(owner: str, agent_id: str, arguments: dict[str, Any]) -> types.CallToolResult:
    if not _exposed_agent(agent_id):
        return _error(f"unknown tool {agent_id!r}")
    cls = registry.get(agent_id)
    output = await cls()(cls.Input.model_validate(arguments), AgentContext(owner=owner))
    return _result(output.model_dump(mode="json"))


async def _invoke_function(owner: str, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
    request = InvokeIn(event=arguments.get("event"))
    record = await invocations.invoke(get_settings(), owner, name, request)
    answer = record.model_dump(mode="json")
    return _result(answer) if record.status == "ok" else _error(json.dumps(answer))


async def _run_workflow(owner: str, workflow_id: str, arguments: dict[str, Any]) -> types.CallToolResult:
    def start() -> str:
        with session_scope() as session:  # closed before the run is queued, as the API's run route does
            saved = store.get(session, owner, workflow_id)
        return runner.start_run(
            saved.document,
            arguments,
            owner,
            tags=[f"workflow:{workflow_id}"],
            workflow_id=workflow_id,
            workflow_version=saved.version,
        )

    run_id = await anyio.to_thread.run_sync(start)
    view = await _outcome(run_id)
    answer = WorkflowAnswer(
        run_id=run_id, state=view.state, outputs=view.outputs, error=view.error, url=f"/v1/runs/{run_id}"
    ).model_dump(mode="json")
    return _error(json.dumps(answer)) if view.state in {"failed", "cancelled"} else _result(answer)


async def _outcome(run_id: str) -> RunView:
    """The run once it ended, else as it stands after WORKFLOW_WAIT_S. Polled from the event loop, so a
    waiting tool call holds no worker thread (the API's sync routes share that pool)."""
    with anyio.move_on_after(WORKFLOW_WAIT_S):
        while not (view := await anyio.to_thread.run_sync(lambda: read_run(run_id, with_results=False))).finished:
            await anyio.sleep(WORKFLOW_POLL_S)
        # Ended: wait_run settles the nodes' last states (they arrive a moment later) and reads the outputs.
        return await anyio.to_thread.run_sync(lambda: runner.wait_run(run_id))
    return view


def _result(structured: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(structured))], structuredContent=structured
    )


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], isError=True)


def _authenticate(authorization: str | None) -> Principal:
    if authorization is None:
        raise Unauthorized(
            "the MCP endpoint needs 'Authorization: Bearer <session token or API key>'", field="authorization"
        )
    principal = current_principal(authorization)
    if not principal.is_account:
        raise Forbidden(
            "the MCP endpoint acts for an account: use a session token or an API key", field="authorization"
        )
    return principal


class McpEndpoint:
    """The ASGI app at ``/mcp``: authenticates, then hands the request to the SDK's session manager.
    A refused credential raises here, so the API's error handlers answer it before the SDK reads the body."""

    def __init__(self, manager: StreamableHTTPSessionManager):
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization = Headers(scope=scope).get("authorization")
        scope[_PRINCIPAL] = await anyio.to_thread.run_sync(_authenticate, authorization)
        await self.manager.handle_request(scope, receive, send)


def install(app: FastAPI) -> None:
    """Serve the MCP endpoint on ``app``, its session manager running for the app's lifespan (the SDK's
    manager runs once, so each app gets its own)."""
    manager = StreamableHTTPSessionManager(server, stateless=True, json_response=True)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with manager.run():
            yield

    app.include_router(APIRouter(lifespan=lifespan))
    app.router.add_route(MCP_PATH, McpEndpoint(manager), methods=["GET", "POST", "DELETE"], include_in_schema=False)
