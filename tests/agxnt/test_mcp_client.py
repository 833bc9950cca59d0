"""MCP servers as tool sources: a FastMCP server on loopback over streamable HTTP (through the egress policy),
and the same server over stdio inside the sandbox; their tools call through, and a URL the policy refuses
never gets a request."""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from langchain_core.tools import ToolException

from agxnt.context import AgentContext, Services
from agxnt.errors import AgentError
from agxnt.mcp import CommandSource, UrlSource, mcp_tools
from agxnt.web.egress import EgressDenied
from cxmpute.ports import free_port
from cxmpute.settings import Settings

SERVER = """
import os

from mcp.server.fastmcp import FastMCP

server = FastMCP("arith")
calls = []


@server.tool(name="math.add")
def add(a: int, b: int) -> int:
    '''Add two integers.'''
    calls.append((a, b))
    return a + b


@server.tool()
def fail(reason: str) -> str:
    '''Always fails.'''
    raise ValueError(reason)


@server.tool()
def uid() -> int:
    '''The user the server runs as.'''
    return os.getuid()
"""


@pytest.fixture(scope="module")
def remote(tmp_path_factory) -> Iterator[tuple[str, list]]:
    """The FastMCP server on 127.0.0.1 over streamable HTTP: its endpoint URL and the calls it received."""
    source = tmp_path_factory.mktemp("mcp") / "server.py"
    source.write_text(SERVER)  # the same source the stdio test runs in the sandbox
    module = runpy.run_path(str(source))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(module["server"].streamable_http_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp", module["calls"]
    server.should_exit = True
    thread.join(10)


def context(settings: Settings) -> AgentContext:
    return AgentContext(owner="0x" + "1" * 40, settings=settings, services=Services(settings))


def allowing(url: str) -> AgentContext:
    return context(Settings(web_allowed_hosts=[httpx.URL(url).netloc.decode()]))


async def test_a_remote_servers_tools_call_through(remote):
    url, calls = remote
    tools = {t.name: t for t in await mcp_tools({"url": url}, allowing(url))}
    assert set(tools) == {"math_add", "fail", "uid"}  # dots are no function name a chat model accepts
    assert tools["math_add"].description == "Add two integers."
    assert set(tools["math_add"].args) == {"a", "b"}

    assert await tools["math_add"].ainvoke({"a": 2, "b": 40}) == "42"
    assert calls[-1] == (2, 40)
    with pytest.raises(ToolException, match="no such luck"):
        await tools["fail"].ainvoke({"reason": "no such luck"})


async def test_a_url_the_egress_policy_refuses_gets_no_request(remote):
    url, calls = remote
    before = len(calls)
    with pytest.raises(EgressDenied) as refused:
        await mcp_tools(UrlSource(url=url), context(Settings()))  # loopback, exempted by nothing
    assert refused.value.status_code == 403 and "loopback" in refused.value.message
    assert len(calls) == before


async def test_the_platform_api_is_refused_even_where_its_host_is_allowed(remote, api_url):
    settings = Settings(api_url=api_url, web_allowed_hosts=[httpx.URL(api_url).netloc.decode()])
    with pytest.raises(EgressDenied, match="internal services"):
        await mcp_tools({"url": f"{api_url}/mcp"}, context(settings))


async def test_a_source_is_a_url_or_a_command():
    with pytest.raises(AgentError) as bad:
        await mcp_tools({"url": "file:///etc/passwd"}, context(Settings()))
    assert bad.value.status_code == 422


async def test_a_stdio_server_runs_in_the_sandbox_and_its_tools_call_through():
    ctx = context(Settings())
    runtime = ctx.services.runtimes.get("sandbox")
    if reason := runtime.check():
        pytest.skip(f"no sandbox here: {reason}")
    source = CommandSource(command=[sys.executable, "-c", SERVER + "\nserver.run('stdio')\n"])
    tools = {t.name: t for t in await mcp_tools(source, ctx)}
    assert await tools["math_add"].ainvoke({"a": 1, "b": 2}) == "3"
    assert int(await tools["uid"].ainvoke({})) != os.getuid()  # the sandbox's own user, not the platform's


async def test_a_stdio_server_that_exits_fails_at_once():
    ctx = context(Settings())
    if reason := ctx.services.runtimes.get("sandbox").check():
        pytest.skip(f"no sandbox here: {reason}")
    started = time.monotonic()
    with pytest.raises(AgentError) as failed:
        await mcp_tools({"command": ["/bin/true"]}, ctx)
    assert failed.value.status_code == 502
    assert time.monotonic() - started < 30  # not the 120 s a silent server is given
