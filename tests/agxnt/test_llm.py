from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fixtures.tiny_llm import build_tiny_causal_lm
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from agxnt.llm import LocalChatModel, chat_model
from cxmpute.settings import Settings


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llm"))


def test_local_model_loads_through_from_pretrained_and_answers(tiny_model):
    llm = chat_model(Settings(llm_model=str(tiny_model)), max_new_tokens=8)
    assert isinstance(llm, LocalChatModel)
    reply = llm.invoke([SystemMessage("be brief"), HumanMessage("what is memory?")])
    assert isinstance(reply.content, str)
    assert 0 < reply.usage_metadata["output_tokens"] <= 8


async def test_local_model_async_and_prompt_longer_than_window(tiny_model):
    llm = chat_model(Settings(llm_model=str(tiny_model)), max_new_tokens=4)
    reply = await llm.ainvoke("word " * 2000)
    assert reply.usage_metadata["input_tokens"] <= 512


class _OpenAIHandler(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "grounded answer"}}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_compatible_url_speaks_the_chat_completions_wire_format():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        llm = chat_model(Settings(llm_base_url=url, llm_model="some-model", llm_api_key="k1"), max_retries=0)
        assert isinstance(llm, ChatOpenAI)
        assert llm.invoke("hello").content == "grounded answer"
        call = _OpenAIHandler.seen[-1]
        assert call["path"] == "/v1/chat/completions"
        assert call["auth"] == "Bearer k1"
        assert call["body"]["model"] == "some-model"
    finally:
        server.shutdown()


def test_default_is_the_platform_gateway():
    llm = chat_model(Settings(api_url="http://127.0.0.1:8123", llm_model=None, llm_base_url=None))
    assert isinstance(llm, ChatOpenAI)
    assert str(llm.openai_api_base).rstrip("/") == "http://127.0.0.1:8123/v1"


def test_platform_model_serves_calls_from_separate_event_loops():
    """The API's loop and each workflow run's loop all call the model; none may inherit another's client."""
    import asyncio

    from agxnt.context import Services

    class KeepAlive(_OpenAIHandler):
        protocol_version = "HTTP/1.1"  # pooled connections are what tie a client to its loop

    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        services = Services(Settings(llm_base_url=f"http://127.0.0.1:{server.server_port}/v1", llm_model="m"))

        async def ask() -> str:
            return (await services.llm_for("0x0").ainvoke("hi")).content

        assert [asyncio.run(ask()) for _ in range(3)] == ["grounded answer"] * 3
    finally:
        server.shutdown()


def test_the_model_client_follows_no_redirect():
    """The model client skips the egress policy (the model service is the operator's), so a redirect from
    that service must not carry the prompt anywhere else."""
    import asyncio

    import openai

    from tests.support.canary import HttpCanary

    inside = HttpCanary()
    site = HttpCanary()
    try:
        site.redirect_all = f"http://127.0.0.1:{inside.port}/v1/chat/completions"
        llm = chat_model(Settings(llm_base_url=f"{site.url}/v1", llm_model="m"), max_retries=0)
        with pytest.raises(openai.APIStatusError):
            llm.invoke("hi")
        with pytest.raises(openai.APIStatusError):
            asyncio.run(llm.ainvoke("hi"))
    finally:
        inside.close()
        site.close()
    assert site.hits and not inside.hits
