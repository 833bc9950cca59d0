"""With no model configured, the platform's own gateway is the model: when no provider serves it, an agent
that needs a model fails with a 503 saying how to configure one, not with the gateway's refusal."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest
from typer.testing import CliRunner

from agxnt.llm import GATEWAY_MODEL, NoLanguageModel, chat_model
from cxmpute.settings import Settings, reset_settings


class _Gateway(BaseHTTPRequestHandler):
    served: ClassVar[list[str]] = []

    def _send(self, doc: dict) -> None:
        data = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": m, "object": "model"} for m in type(self).served]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._send(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "served"}}
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    def log_message(self, *args):
        pass


@pytest.fixture
def gateway():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


async def test_a_gateway_serving_no_model_is_a_503_naming_the_setting(gateway):
    _Gateway.served = ["some-embedding"]
    llm = chat_model(Settings(api_url=gateway))
    with pytest.raises(NoLanguageModel) as raised:
        await llm.ainvoke("hello")
    assert raised.value.status_code == 503 and raised.value.field == "CXMPUTE_LLM_BASE_URL"
    assert "cxmpute inference serve" in raised.value.message and gateway in raised.value.message
    with pytest.raises(NoLanguageModel):
        llm.invoke("hello")


async def test_a_gateway_serving_the_model_answers(gateway):
    _Gateway.served = [GATEWAY_MODEL]
    llm = chat_model(Settings(api_url=gateway))
    assert (await llm.ainvoke("hello")).content == "served"
    assert llm.invoke("hello").content == "served"


@pytest.fixture
def no_model(api_url, monkeypatch):
    """The platform as `cxmpute up` leaves it: no model setting, its own gateway with no provider serving."""
    monkeypatch.delenv("CXMPUTE_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("CXMPUTE_LLM_MODEL", raising=False)
    monkeypatch.setenv("CXMPUTE_API_URL", api_url)
    reset_settings()
    yield api_url
    monkeypatch.delenv("CXMPUTE_API_URL")
    reset_settings()


def test_an_agent_that_needs_a_model_answers_503_through_the_api(no_model):
    resp = httpx.post(
        f"{no_model}/v1/agents/web.deep/invoke", json={"input": {"question": "why is the sky blue?"}}, timeout=60
    )
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["field"] == "CXMPUTE_LLM_BASE_URL"
    assert "no language model is configured" in body["detail"] and "cxmpute inference serve" in body["detail"]


def test_memory_ask_says_how_to_configure_a_model(no_model):
    from cxmpute.cli import app

    runner = CliRunner()
    memory = f"nollm-{uuid.uuid4().hex[:8]}"
    wrote = runner.invoke(app, ["memory", "write", "-m", memory, "The tide rises twice a day."])
    assert wrote.exit_code == 0, wrote.output
    asked = runner.invoke(app, ["memory", "ask", "-m", memory, "How often does the tide rise?"])
    assert asked.exit_code == 1, asked.output
    assert "CXMPUTE_LLM_BASE_URL" in asked.output and "cxmpute inference serve" in asked.output
    assert "401" not in asked.output and "Traceback" not in asked.output


def test_an_agent_reaches_the_gateway_as_its_run_owner(api_url):
    """The gateway serves accounts only: the model an agent gets carries a short session of the run's owner,
    which the platform accepts as that account, so what the gateway serves is billed to it."""
    from eth_account import Account

    from agxnt.context import AgentContext
    from compute.identity.tokens import authenticate
    from compute.network import get_network

    owner = Account.create().address
    model = AgentContext(owner=owner, settings=Settings(api_url=api_url)).llm
    key = model.openai_api_key.get_secret_value()
    assert key.startswith("cxs_")
    assert authenticate(get_network().store, key).address == owner
    balance = httpx.get(f"{api_url}/v1/account/balance", headers={"Authorization": f"Bearer {key}"})
    assert balance.status_code == 200 and balance.json()["address"] == owner
    assert AgentContext(owner=owner, settings=Settings(api_url=api_url)).llm.openai_api_key.get_secret_value() == key
