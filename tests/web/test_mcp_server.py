"""The platform's MCP endpoint over real HTTP, driven by the MCP SDK's own client: an API key lists the agents
and its owner's workflows and calls them; no key, a bad key, or another owner's key is refused."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

import web.mcp
from compute.functions import package
from tests.support.mcp import api_key, signed_in

GREETING = {
    "name": "greeting",
    "description": "Greets someone",
    "inputs": {"who": {"type": "string", "description": "Whom to greet"}},
    "outputs": {"text": {"node": "t", "field": "text"}},
    "nodes": [
        {"id": "w", "agent": "io.input", "params": {"name": "who"}},
        {"id": "t", "agent": "io.template", "params": {"template": "hello {{ who }}"}},
    ],
    "edges": [{"source": "w", "source_field": "value", "target": "t", "target_field": "variables.who"}],
}

DOUBLER = "def handler(event, context):\n    return {'doubled': event['n'] * 2}\n"


@asynccontextmanager
async def mcp_session(api_url: str, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
    async with (
        httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=300)) as http,
        streamable_http_client(f"{api_url}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@pytest.fixture(scope="module")
def owner(api_url: str) -> tuple[dict[str, str], str]:
    """A signed-in owner with one saved workflow: its key's Authorization header and the workflow's id."""
    auth = signed_in(api_url)
    resp = httpx.post(f"{api_url}/v1/workflows", json=GREETING, headers=auth, timeout=30)
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {api_key(api_url, auth)}"}, resp.json()["id"]


async def test_a_key_lists_agents_and_its_workflows_and_calls_them(api_url, owner):
    headers, workflow_id = owner
    async with mcp_session(api_url, headers) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert tools["io.template"].inputSchema["required"] == ["template"]
        assert "hitl.approve" not in tools
        workflow = tools[f"workflow.{workflow_id}"]
        assert workflow.description == "Greets someone"
        assert workflow.inputSchema["required"] == ["who"]

        rendered = await session.call_tool(
            "io.template", {"template": "{{ a }}+{{ b }}", "variables": {"a": 1, "b": 2}}
        )
        assert not rendered.isError, rendered.content
        assert rendered.structuredContent == {"text": "1+2"}

        ran = await session.call_tool(f"workflow.{workflow_id}", {"who": "mcp"})
        assert not ran.isError, ran.content
        assert ran.structuredContent["state"] == "completed"
        assert ran.structuredContent["outputs"] == {"text": "hello mcp"}

        bad = await session.call_tool("io.template", {"variables": {}})
        assert bad.isError and "template" in bad.content[0].text


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-key", "Basic abc"])
async def test_without_a_valid_key_nothing_reaches_the_mcp_server(api_url, authorization):
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        **({"Authorization": authorization} if authorization else {}),
    }
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    async with httpx.AsyncClient(timeout=30) as http:
        resp = await http.post(f"{api_url}/mcp", json=initialize, headers=headers)
    assert resp.status_code == 401, resp.text
    assert "jsonrpc" not in resp.text

    with pytest.raises(ExceptionGroup) as refused:  # the SDK's client gets no session out of it
        async with mcp_session(api_url, {"Authorization": authorization} if authorization else {}):
            pass
    assert refused.group_contains(httpx.HTTPStatusError, match="401 Unauthorized")


async def test_another_owners_key_neither_sees_nor_runs_the_workflow(api_url, owner):
    _, workflow_id = owner
    stranger = {"Authorization": f"Bearer {api_key(api_url, signed_in(api_url))}"}
    async with mcp_session(api_url, stranger) as session:
        names = {t.name for t in (await session.list_tools()).tools}
        assert "io.template" in names
        assert not any(n.startswith("workflow.") for n in names)
        ran = await session.call_tool(f"workflow.{workflow_id}", {"who": "intruder"})
        assert ran.isError and "not found" in ran.content[0].text
    async with httpx.AsyncClient(timeout=30) as http:
        runs = (await http.get(f"{api_url}/v1/runs", headers=stranger)).json()
    assert runs["total"] == 0


async def test_a_key_without_the_workflows_scope_gets_no_workflow_tools(api_url, owner):
    auth = signed_in(api_url)
    async with httpx.AsyncClient(timeout=30) as http:
        (await http.post(f"{api_url}/v1/workflows", json=GREETING, headers=auth)).raise_for_status()
    agents_only = {"Authorization": f"Bearer {api_key(api_url, auth, ['agents'])}"}
    async with mcp_session(api_url, agents_only) as session:
        names = {t.name for t in (await session.list_tools()).tools}
        assert "io.template" in names and not any(n.startswith("workflow.") for n in names)


@pytest.fixture
def no_warm_sandboxes_left() -> Iterator[None]:
    """Warm interpreters hold sandboxes; later tests (and the host) must not inherit them."""
    yield
    from compute.functions.pool import close_all_pools

    close_all_pools()


async def test_a_key_calls_its_own_function_and_not_anothers(api_url, owner, tmp_path: Path, no_warm_sandboxes_left):
    headers, _ = owner
    (tmp_path / "handler.py").write_text(DOUBLER)
    name = f"double-{uuid.uuid4().hex[:8]}"
    body = {"package_base64": base64.b64encode(package.build(tmp_path)).decode()}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=120) as http:
        assert (await http.put(f"/v1/functions/{name}", json=body)).status_code == 201

    async with mcp_session(api_url, headers) as session:
        assert f"function.{name}" in {t.name for t in (await session.list_tools()).tools}
        called = await session.call_tool(f"function.{name}", {"event": {"n": 21}})
        assert not called.isError, called.content
        assert called.structuredContent["result"] == {"doubled": 42}

    stranger = {"Authorization": f"Bearer {api_key(api_url, signed_in(api_url))}"}
    async with mcp_session(api_url, stranger) as session:
        assert f"function.{name}" not in {t.name for t in (await session.list_tools()).tools}
        called = await session.call_tool(f"function.{name}", {"event": {"n": 1}})
        assert called.isError and f"no function {name!r}" in called.content[0].text


async def test_a_workflow_slower_than_the_wait_answers_its_run_id(api_url, monkeypatch):
    monkeypatch.setattr(web.mcp, "WORKFLOW_WAIT_S", 0.5)  # the API is served from this process
    auth = signed_in(api_url)
    slow = {
        "name": "slow",
        "outputs": {"value": {"node": "w", "field": "value"}},
        "nodes": [{"id": "w", "agent": "util.wait", "params": {"seconds": 5, "value": "late"}}],
    }
    async with httpx.AsyncClient(base_url=api_url, headers=auth, timeout=30) as http:
        saved = (await http.post("/v1/workflows", json=slow)).json()
    headers = {"Authorization": f"Bearer {api_key(api_url, auth)}"}
    async with mcp_session(api_url, headers) as session:
        ran = await session.call_tool(f"workflow.{saved['id']}", {})
    assert not ran.isError, ran.content
    answer = ran.structuredContent
    assert answer["state"] not in {"completed", "failed"} and answer["outputs"] is None
    assert answer["url"] == f"/v1/runs/{answer['run_id']}"
    async with httpx.AsyncClient(base_url=api_url, headers=auth, timeout=30) as http:
        assert (await http.get(answer["url"])).status_code == 200
