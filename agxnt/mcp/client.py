"""MCP servers as tool sources: each tool a server lists becomes a LangChain tool that calls it.

A remote server (``{"url": ...}``) is reached over streamable HTTP with the agent's own HTTP client, so every
request and redirect hop passes the egress policy. A stdio server (``{"command": [...]}``) runs in the
platform's sandbox runtime, with no network and the sandbox's limits, and speaks MCP over its stdin and
stdout. Each tool call opens a session of its own: a LangChain tool has no lifecycle to close a held one in,
and a session per call leaves no server process or HTTP session behind an agent that stops early.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import httpx
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from mcp.shared.message import SessionMessage
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agxnt.context import AgentContext
from agxnt.errors import AgentError
from compute.runtimes import Limits, SandboxSpec
from compute.runtimes.base import BackgroundProcess
from cxmpute.errors import CxmputeError

HTTP_TIMEOUT_S = 120.0
# Longest wait for any one answer of a server: a stdio server that died never answers.
READ_TIMEOUT = timedelta(seconds=120)
MAX_MESSAGE_BYTES = 8 * 2**20
EXIT_POLL_S = 0.5
STDIO_LIMITS = Limits(wall_seconds=600, cpu_seconds=300, memory_mb=1024, disk_mb=16)
# What chat-model APIs accept as a function name (OpenAI's rule, the strictest in use).
_TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]")


class UrlSource(BaseModel):
    """A remote MCP server over streamable HTTP."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(..., pattern=r"^https?://", description="The server's MCP endpoint")
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with every request (credentials)")


class CommandSource(BaseModel):
    """A stdio MCP server started inside the sandbox."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] = Field(..., min_length=1, description="argv of the server, run in the sandbox")


McpSource = UrlSource | CommandSource
_SOURCE: TypeAdapter[McpSource] = TypeAdapter(McpSource)


def parse_source(source: McpSource | dict[str, Any]) -> McpSource:
    """A source from its JSON form; a malformed one is the caller's 422."""
    if isinstance(source, UrlSource | CommandSource):
        return source
    try:
        return _SOURCE.validate_python(source)
    except ValidationError as exc:
        raise AgentError(
            f"an MCP source is {{'url': ...}} or {{'command': [...]}}: {exc.errors()[0]['msg']}",
            field="source",
            status_code=422,
        ) from None


async def mcp_tools(source: McpSource | dict[str, Any], ctx: AgentContext) -> list[BaseTool]:
    """The tools the server at ``source`` lists, each calling it for ``ctx``'s owner."""
    source = parse_source(source)
    async with _session(source, ctx) as session:
        listed = await _list_all(session)
    names: set[str] = set()
    return [_tool(source, ctx, t, _unique(_tool_name(t.name), names)) for t in listed]


async def _list_all(session: ClientSession) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    while True:
        page = await session.list_tools(cursor=cursor)
        tools += page.tools
        cursor = page.nextCursor
        if not cursor:
            return tools


def _tool_name(name: str) -> str:
    return _TOOL_NAME.sub("_", name)[:64] or "tool"


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name[:60]}_{n}"
    taken.add(candidate)
    return candidate


def _tool(source: McpSource, ctx: AgentContext, listed: types.Tool, name: str) -> BaseTool:
    async def call(**arguments: Any) -> str:
        async with _session(source, ctx) as session:
            result = await session.call_tool(listed.name, arguments)
        text = _text(result)
        if result.isError:
            raise ToolException(text)
        return text

    return StructuredTool(
        name=name,
        description=listed.description or listed.title or listed.name,
        args_schema=listed.inputSchema,
        coroutine=call,
    )


def _text(result: types.CallToolResult) -> str:
    parts = [
        block.text if isinstance(block, types.TextContent) else f"[{block.type} content not shown]"
        for block in result.content
    ]
    if not parts and result.structuredContent is not None:
        parts = [json.dumps(result.structuredContent)]
    return "\n".join(parts)


@asynccontextmanager
async def _session(source: McpSource, ctx: AgentContext) -> AsyncIterator[ClientSession]:
    streams = _http_streams(source, ctx) if isinstance(source, UrlSource) else _sandbox_streams(source, ctx)
    try:
        async with streams as (read, write), ClientSession(read, write, read_timeout_seconds=READ_TIMEOUT) as session:
            await session.initialize()
            yield session
    except (ExceptionGroup, httpx.HTTPError, McpError, OSError, TimeoutError) as exc:
        # The SDK's task groups wrap what went wrong; the platform's own refusals (egress) keep their status.
        cause = _cause(exc)
        if isinstance(cause, CxmputeError):
            raise cause from None
        raise AgentError(
            f"MCP server {_where(source)} failed: {cause or type(cause).__name__}", field="source", status_code=502
        ) from None


def _where(source: McpSource) -> str:
    return source.url if isinstance(source, UrlSource) else " ".join(source.command)


def _cause(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def _http_streams(source: UrlSource, ctx: AgentContext) -> AsyncIterator[tuple[Any, Any]]:
    # Checked up front so a refused URL is a clear 403; the client's transport checks every request again.
    await ctx.services.egress.check(source.url, field="url")
    async with (
        ctx.services.http(headers=source.headers, timeout=HTTP_TIMEOUT_S) as http,
        streamable_http_client(source.url, http_client=http) as (read, write, _),
    ):
        yield read, write


@asynccontextmanager
async def _sandbox_streams(source: CommandSource, ctx: AgentContext) -> AsyncIterator[tuple[Any, Any]]:
    runtime = ctx.services.runtimes.get("sandbox")
    async with await runtime.start(SandboxSpec(limits=STDIO_LIMITS)) as sandbox:
        process = sandbox.start_process(source.command)
        incoming: asyncio.Queue[bytes] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        # Set after the start: a stdio MCP server writes nothing before the client's first message.
        process.on_stdout = lambda chunk: loop.call_soon_threadsafe(incoming.put_nowait, chunk)
        read_writer, read = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        write, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
        async with anyio.create_task_group() as tasks, write_reader:
            tasks.start_soon(_from_process, incoming, read_writer, process)
            tasks.start_soon(_to_process, write_reader, process)
            try:
                yield read, write
            finally:
                process.on_stdout = None
                tasks.cancel_scope.cancel()


async def _from_process(incoming: asyncio.Queue[bytes], out: Any, process: BackgroundProcess) -> None:
    """The server's stdout, one JSON-RPC message a line. A server that exits closes the stream, which fails
    the requests still waiting at once (the sandbox gives no end-of-file, so its liveness is polled)."""
    buffer = b""
    async with out:
        while True:
            try:
                buffer += await asyncio.wait_for(incoming.get(), EXIT_POLL_S)
            except TimeoutError:
                if process.alive() or not incoming.empty():
                    continue
                return
            *lines, buffer = buffer.split(b"\n")
            if len(buffer) > MAX_MESSAGE_BYTES:
                await out.send(AgentError(f"an MCP message over {MAX_MESSAGE_BYTES} bytes", status_code=502))
                return
            for line in filter(bytes.strip, lines):
                try:
                    message = types.JSONRPCMessage.model_validate_json(line)
                except ValidationError as exc:
                    await out.send(exc)
                    continue
                await out.send(SessionMessage(message))


async def _to_process(messages: Any, process: BackgroundProcess) -> None:
    async for message in messages:
        line = message.message.model_dump_json(by_alias=True, exclude_none=True) + "\n"
        # A pipe write blocks while the server is not reading; keep the event loop free meanwhile.
        await anyio.to_thread.run_sync(process.send, line.encode())
