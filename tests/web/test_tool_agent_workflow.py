"""A workflow whose tool-using agent calls two other agents and a deployed function, run through the API: its
model is served by a provider's inference server behind the platform's gateway (the tiny tool-calling LM,
acting for the run's owner), and every call it made, with its arguments and real result, is in the run view."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import httpx
import pytest

from compute.functions import package
from cxmpute.settings import reset_settings
from tests.support.inference import publish_provider, serve, user_key, wait_served
from tests.support.tool_agents import register_tool_agents
from tests.support.tool_chat_model import build_tiny_tool_lm

pytestmark = pytest.mark.slow

HANDLER = """
def handler(event, context):
    return {"echo": event["word"], "length": len(event["word"])}
"""
WORD = {"type": "object", "properties": {"word": {"type": "string", "maxLength": 10}}, "required": ["word"]}


@pytest.fixture(scope="module")
def platform(api_url, tmp_path_factory):
    """The session's API with a provider serving the tiny tool-calling LM as ``tools`` behind its gateway."""
    import torch

    from compute.network import get_network

    register_tool_agents()
    net = get_network()
    torch.manual_seed(0)
    model = build_tiny_tool_lm(tmp_path_factory.mktemp("models") / "tiny-tool-lm")
    with httpx.Client(base_url=api_url, timeout=120) as http:
        wallet, _, provision = publish_provider(http, net, ["tools"])
        server = serve(["--model", f"tools={model}"], tmp_path_factory.mktemp("provider"), wallet, provision, api_url)
        try:
            wait_served(http, {"tools": 1}, [server])
            yield http, net
        finally:
            server.stop()


@pytest.fixture
def gateway_model(api_url, monkeypatch):
    """Agents get the platform's own gateway as their model, as `cxmpute up` configures them."""
    monkeypatch.delenv("CXMPUTE_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("CXMPUTE_LLM_MODEL", raising=False)
    monkeypatch.setenv("CXMPUTE_API_URL", api_url)
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


def deploy(http: httpx.Client, auth: dict[str, str], tmp_path: Path) -> str:
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "handler.py").write_text(HANDLER)
    name = f"word-{uuid.uuid4().hex[:8]}"
    body = {"package_base64": base64.b64encode(package.build(folder)).decode()}
    resp = http.put(f"/v1/functions/{name}", json=body, headers=auth)
    assert resp.status_code == 201, resp.text
    return name


def finished(http: httpx.Client, auth: dict[str, str], run_id: str) -> dict:
    for _ in range(900):
        view = http.get(f"/v1/runs/{run_id}", headers=auth).json()
        if view["state"] in {"completed", "failed", "cancelled"} and all(
            n["state"] in {"completed", "failed", "skipped"} for n in view["nodes"].values()
        ):
            return view
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish: {view}")


def test_the_tool_agent_calls_two_agents_and_a_function_with_each_call_in_the_run_view(
    platform, gateway_model, tmp_path
):
    http, net = platform
    _, auth, _ = user_key(http, net)
    function = deploy(http, auth, tmp_path)
    tools = ["tooltest.shout", "tooltest.add", f"fn:{function}"]
    doc = {
        "name": "tool-agent",
        "inputs": {"task": {"type": "string"}},
        "nodes": [
            {"id": "task", "agent": "io.input", "params": {"name": "task"}},
            {
                "id": "agent",
                "agent": "agent.tools",
                "params": {
                    "tools": tools,
                    "tool_choice": tools,
                    "max_steps": 3,
                    "model": "tools",
                    "max_tokens": 200,
                    "temperature": 0,
                    "event_schemas": {f"fn:{function}": WORD},
                },
            },
        ],
        "edges": [{"source": "task", "source_field": "value", "target": "agent", "target_field": "prompt"}],
        "outputs": {"answer": {"node": "agent", "field": "answer"}},
    }
    started = http.post(
        "/v1/runs", json={"document": doc, "inputs": {"task": "Shout, add, then echo a word."}}, headers=auth
    )
    assert started.status_code == 202, started.text
    view = finished(http, auth, started.json()["id"])
    assert view["state"] == "completed", view

    steps = view["nodes"]["agent"]["output"]["steps"]
    assert [s["tool"] for s in steps] == tools
    assert all(s["error"] is None for s in steps), steps
    shout, add, echo = steps
    assert shout["result"] == {"text": shout["arguments"]["word"].upper() + "!"}
    assert add["result"] == {"sum": add["arguments"]["a"] + add["arguments"]["b"]}
    word = echo["arguments"]["event"]["word"]
    assert echo["result"] == {"echo": word, "length": len(word)}
    assert view["outputs"]["answer"] == view["nodes"]["agent"]["output"]["answer"]

    # the function ran for the run's owner, and the gateway served the model to that account
    invocations = http.get(f"/v1/functions/{function}/invocations", headers=auth).json()
    assert [i["status"] for i in invocations] == ["ok"] and invocations[0]["result"]["echo"] == word
    served = http.get("/v1/inference/requests", headers=auth).json()
    assert [r["model"] for r in served] == ["tools"] * 4  # three steps, then the answer without tools
