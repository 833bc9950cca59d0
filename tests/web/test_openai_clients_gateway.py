"""Tools, structured output, token-id embeddings, n choices and log-probabilities THROUGH THE GATEWAY, as the
clients users use reach them: the official ``openai`` SDK (sync and async) and LangChain, pointed at the
platform API with an API key, routed by the market to a provider's inference server. Where a field could be lost on
the way, the gateway's answer is compared with the provider's own to the same request, so a field the gateway
drops or a delta its relay loses shows; each request's record must count every token the provider reported,
every choice included.

The provider's server runs in this process, registered as its provision's endpoint: LangChain's default
embeddings send cl100k_base token ids, and offline only a tiktoken stand-in in this process gives the client
and the server the same encoding. An unknown model's ``openai.NotFoundError``, not retried, is covered in
tests/web/test_openai_conformance.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx
import jsonschema
import numpy as np
import openai
import pytest
from fixtures.tiny_embedder import build_tiny_embedder
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from compute.network import Network
from tests.support.inference import (
    SERVER_KEY,
    in_process_endpoint,
    platform_api,
    publish_provider,
    user_key,
    wait_served,
)
from tests.support.openai_server import byte_level_cl100k
from tests.support.tool_chat_model import build_tiny_tool_lm

if TYPE_CHECKING:
    from compute.inference.backends import TextModel

pytestmark = pytest.mark.slow

QUESTION = "What is the weather in Paris this week?"
MESSAGES = [{"role": "user", "content": QUESTION}]
TEXTS = ["the quick brown fox", "jumps over the lazy dog", "héllo wörld"]


class GetWeather(BaseModel):
    """The weather forecast for a city."""

    city: str = Field(max_length=12)
    days: int = Field(ge=1, le=7)


class GetTime(BaseModel):
    """The local time in a city."""

    city: str = Field(max_length=12)


class Forecast(BaseModel):
    city: str = Field(max_length=12)
    days: int = Field(ge=1, le=7)
    sky: Literal["sunny", "rainy", "cloudy"]


WEATHER = convert_to_openai_tool(GetWeather)
TIME = convert_to_openai_tool(GetTime)
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}


@dataclass
class Platform:
    """The platform API, a user's key for it, and the provider's server behind it."""

    http: httpx.Client
    net: Network
    key: str  # the user's API key
    api: str  # the gateway's OpenAI base URL
    provider: str  # the provider server's own OpenAI base URL, to compare with
    lm: TextModel  # the served text model, whose token ids completions take

    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.api, api_key=self.key, max_retries=0, timeout=120)

    def direct(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.provider, api_key=SERVER_KEY, max_retries=0, timeout=120)

    def chat(self, **options: object) -> ChatOpenAI:
        settings: dict = {"temperature": 0, "max_tokens": 120, **options}
        return ChatOpenAI(model="tools", base_url=self.api, api_key=self.key, max_retries=0, **settings)

    def records(self) -> list[dict]:
        resp = self.http.get("/v1/inference/requests", headers={"Authorization": f"Bearer {self.key}"})
        assert resp.status_code == 200, resp.text
        return resp.json()

    def record_after(self, seen: int, wait: float = 30) -> dict:
        """The newest request record once there are more than ``seen``: a stream's is written as it ends,
        which may be just after its last event reached the client."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            records = self.records()
            if len(records) > seen:
                return records[0]
            time.sleep(0.1)
        raise AssertionError(f"no request was recorded after the first {seen}")


def _models(root: Path) -> list:
    import torch

    from compute.inference import backends

    torch.manual_seed(0)  # fixed weights: the random model's unforced choices come out the same every run
    tools = build_tiny_tool_lm(root / "tools")
    emb = build_tiny_embedder(root / "emb")
    return [
        backends.load(backends.ModelSpec.parse("text", f"tools={tools}"), "cpu"),
        backends.load(backends.ModelSpec.parse("embedding", f"emb={emb}"), "cpu"),
    ]


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Platform]:
    from compute.inference.server import create_app

    root = tmp_path_factory.mktemp("clients")
    models = _models(root)
    with byte_level_cl100k(), platform_api(root / "platform.db") as (http, net):
        _, provider_auth, provision = publish_provider(http, net, ["tools", "emb"])
        app = create_app(models, api_key=SERVER_KEY)
        with in_process_endpoint(http, provider_auth, provision, app) as provider_url:
            wait_served(http, {"tools": 1, "emb": 1}, [])
            key = user_key(http, net)[2]
            yield Platform(http, net, key, f"{str(http.base_url).rstrip('/')}/v1", f"{provider_url}/v1", models[0])


def _scripted(model: str, events: Callable[[], AsyncIterator[str | bytes]]) -> Starlette:
    """An OpenAI-compatible server of another make serving ``model``: each chat completion streams ``events()``."""

    async def models(_: Request) -> JSONResponse:
        return JSONResponse(
            {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "elsewhere"}]}
        )

    async def chat(_: Request) -> StreamingResponse:
        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])


INLINE_USAGE = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}


def _usage_inline_server() -> Starlette:
    """An OpenAI-compatible server of another make, serving ``inline``, that reports a stream's usage on the
    event that finishes its choice, not on an event of its own: that event's call arguments and finish reason
    must reach the caller even when the caller did not ask for usage."""
    head = {"id": "chatcmpl-inline", "object": "chat.completion.chunk", "created": 0, "model": "inline"}

    def event(delta: dict, finish: str | None = None, **extra: object) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return f"data: {json.dumps({**head, 'choices': [choice], **extra})}\n\n"

    async def events() -> AsyncIterator[str]:
        yield event(
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_inline",
                        "type": "function",
                        "function": {"name": "GetTime", "arguments": ""},
                    }
                ],
            }
        )
        yield event({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]})
        yield event(
            {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}, "tool_calls", usage=INLINE_USAGE
        )
        yield "data: [DONE]\n\n"

    return _scripted("inline", events)


@pytest.fixture(scope="module")
def usage_inline(platform) -> Iterator[None]:
    _, provider_auth, provision = publish_provider(platform.http, platform.net, ["inline"])
    with in_process_endpoint(platform.http, provider_auth, provision, _usage_inline_server()):
        wait_served(platform.http, {"inline": 1}, [])
        yield


FRAMED_USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def _odd_framing_server() -> Starlette:
    """A server of another make whose stream is framed in every way server-sent events allow: CRLF line ends,
    a comment, ``data:`` with no space, an event field besides its data, and an event cut across two writes."""
    head = {"id": "chatcmpl-framed", "object": "chat.completion.chunk", "created": 0, "model": "framed"}

    def doc(delta: dict | None, **extra: object) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": None}]
        return json.dumps({**head, "choices": choices, **extra})

    async def events() -> AsyncIterator[bytes]:
        yield b": keep-alive\r\n\r\n"
        yield f"data:{doc({'role': 'assistant', 'content': 'Hel'})}\r\n\r\n".encode()
        cut = f"data: {doc({'content': 'lo'})}\n\n".encode()
        yield cut[:20]
        yield cut[20:]
        yield f"event: message\ndata: {doc({'content': ' there'})}\n\n".encode()
        yield f"data: {doc(None, usage=FRAMED_USAGE)}\n\ndata: [DONE]\n\n".encode()

    return _scripted("framed", events)


@pytest.fixture(scope="module")
def odd_framing(platform) -> Iterator[None]:
    _, provider_auth, provision = publish_provider(platform.http, platform.net, ["framed"])
    with in_process_endpoint(platform.http, provider_auth, provision, _odd_framing_server()):
        wait_served(platform.http, {"framed": 1}, [])
        yield


def _calls(chunks: list) -> list[tuple[int, str | None, str | None, str | None]]:
    """A stream's tool-call deltas and finish reasons, as (choice, name, argument piece, finish reason)."""
    seen = []
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                seen.append((choice.index, delta.function.name, delta.function.arguments, None))
            if choice.finish_reason:
                seen.append((choice.index, None, None, choice.finish_reason))
    return seen


def test_langchain_bind_tools_named_or_any_gets_a_valid_call(platform):
    llm = platform.chat()
    named = llm.bind_tools([GetWeather, GetTime], tool_choice="GetTime").invoke("What time is it in Oslo?")
    [call] = named.tool_calls
    assert call["name"] == "GetTime" and call["id"].startswith("call_")
    GetTime.model_validate(call["args"])

    anyone = llm.bind_tools([GetWeather, GetTime], tool_choice="any").invoke(QUESTION)
    [call] = anyone.tool_calls
    jsonschema.validate(call["args"], SCHEMAS[call["name"]])
    assert platform.records()[0]["status"] == "ok"


def test_langchain_streamed_tool_call_chunks_add_up_through_the_relay(platform):
    bound = platform.chat().bind_tools([GetWeather], tool_choice="GetWeather")
    seen = len(platform.records())
    chunks = list(bound.stream(QUESTION))
    assert len(chunks) > 3  # relayed piece by piece, not gathered into one
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    [call] = whole.tool_calls
    assert call["name"] == "GetWeather"
    GetWeather.model_validate(call["args"])
    assert call["args"] == bound.invoke(QUESTION).tool_calls[0]["args"]
    record = platform.record_after(seen)
    assert record["status"] == "ok" and record["completion_tokens"] > 0


def test_a_tool_result_goes_back_through_the_gateway_in_the_follow_up_turn(platform):
    question = HumanMessage("Weather in Paris?")
    called = platform.chat().bind_tools([GetWeather], tool_choice="GetWeather").invoke([question])
    result = ToolMessage(content='{"sky": "sunny", "high_c": 24}', tool_call_id=called.tool_calls[0]["id"])
    unbound = platform.chat().bind_tools([GetWeather], tool_choice="none")
    answer = unbound.invoke([question, called, result])
    assert isinstance(answer, AIMessage) and not answer.tool_calls
    # the past call and its result reached the provider's chat template: the prompt grew by them
    shorter = unbound.invoke([question])
    grown = answer.usage_metadata["input_tokens"] - shorter.usage_metadata["input_tokens"]
    assert grown > len(result.content) // 4
    assert platform.records()[0]["prompt_tokens"] == shorter.usage_metadata["input_tokens"]


def test_sdk_stream_relays_every_tool_call_delta_the_provider_sends(platform):
    ask = {
        "model": "tools",
        "messages": MESSAGES,
        "tools": [WEATHER, TIME],
        "max_tokens": 120,
        "temperature": 0,
        "tool_choice": {"type": "function", "function": {"name": "GetWeather"}},
        "stream": True,
    }
    relayed = list(platform.sdk().chat.completions.create(**ask))
    direct = list(platform.direct().chat.completions.create(**ask))
    assert _calls(relayed) == _calls(direct)
    deltas = [d for c in relayed for choice in c.choices for d in choice.delta.tool_calls or []]
    assert deltas[0].id.startswith("call_") and deltas[0].function.name == "GetWeather"
    GetWeather.model_validate_json("".join(d.function.arguments for d in deltas))
    assert _calls(relayed)[-1][3] == "tool_calls"


async def test_async_sdk_gets_tool_calls_and_parsed_models(platform):
    sdk = openai.AsyncOpenAI(base_url=platform.api, api_key=platform.key, max_retries=0, timeout=120)
    async with sdk:
        answer = await sdk.chat.completions.create(
            model="tools",
            messages=MESSAGES,
            tools=[WEATHER, TIME],
            tool_choice="required",
            max_tokens=120,
            temperature=0,
        )
        [call] = answer.choices[0].message.tool_calls
        assert answer.choices[0].finish_reason == "tool_calls"
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])

        pieces = []
        stream = await sdk.chat.completions.create(
            model="tools",
            messages=MESSAGES,
            tools=[WEATHER],
            tool_choice="required",
            max_tokens=120,
            temperature=0,
            stream=True,
        )
        async for chunk in stream:
            pieces.extend(d.function.arguments for c in chunk.choices for d in c.delta.tool_calls or [])
        GetWeather.model_validate_json("".join(pieces))

        parsed = await sdk.chat.completions.parse(
            model="tools", messages=MESSAGES, max_tokens=120, temperature=0, response_format=Forecast
        )
        assert isinstance(parsed.choices[0].message.parsed, Forecast)

        async with sdk.chat.completions.stream(
            model="tools", messages=MESSAGES, max_tokens=120, temperature=0, response_format=Forecast
        ) as stream:
            final = await stream.get_final_completion()
        assert final.choices[0].message.parsed == parsed.choices[0].message.parsed


def test_structured_output_through_the_gateway_is_the_model(platform):
    answer = platform.chat().with_structured_output(Forecast).invoke(QUESTION)
    assert isinstance(answer, Forecast)

    parsed = platform.sdk().chat.completions.parse(
        model="tools", messages=MESSAGES, max_tokens=120, temperature=0, response_format=Forecast
    )
    assert isinstance(parsed.choices[0].message.parsed, Forecast)
    # the schema reached the provider whole: the gateway's answer is the provider's own
    direct = platform.direct().chat.completions.parse(
        model="tools", messages=MESSAGES, max_tokens=120, temperature=0, response_format=Forecast
    )
    assert parsed.choices[0].message.parsed == direct.choices[0].message.parsed

    # a strict function tool from the model: the SDK parses the call's arguments into it
    called = platform.sdk().chat.completions.parse(
        model="tools",
        messages=MESSAGES,
        max_tokens=120,
        temperature=0,
        tools=[openai.pydantic_function_tool(GetWeather)],
        tool_choice="required",
    )
    [call] = called.choices[0].message.tool_calls
    assert isinstance(call.function.parsed_arguments, GetWeather)


def test_langchain_default_embeddings_send_token_ids_through_the_gateway(platform):
    embedder = OpenAIEmbeddings(model="emb", base_url=platform.api, api_key=platform.key, max_retries=0)
    assert embedder.check_embedding_ctx_length  # the default, which sends cl100k_base token ids
    vectors = embedder.embed_documents(TEXTS)
    direct = platform.direct().embeddings.create(model="emb", input=TEXTS)
    assert len(vectors) == len(TEXTS)
    for got, want in zip(vectors, direct.data):
        assert np.allclose(got, want.embedding, atol=1e-5)
    record = platform.records()[0]
    assert record["operation"] == "embeddings" and record["status"] == "ok"
    assert record["prompt_tokens"] == direct.usage.prompt_tokens

    assert np.allclose(embedder.embed_query(TEXTS[1]), direct.data[1].embedding, atol=1e-5)


def test_n_choices_with_logprobs_are_relayed_and_every_choice_is_counted(platform):
    ask = {
        "model": "tools",
        "messages": MESSAGES,
        "n": 2,
        "max_tokens": 8,
        "temperature": 1,
        "seed": 3,
        "logprobs": True,
        "top_logprobs": 2,
    }
    answer = platform.sdk().chat.completions.create(**ask)
    assert [c.index for c in answer.choices] == [0, 1]
    tokens = [len(c.logprobs.content) for c in answer.choices]
    assert all(t > 0 for t in tokens)
    assert all(len(t.top_logprobs) == 2 for c in answer.choices for t in c.logprobs.content)
    assert answer.usage.completion_tokens == sum(tokens)
    direct = platform.direct().chat.completions.create(**ask)
    assert [c.message.content for c in answer.choices] == [c.message.content for c in direct.choices]
    record = platform.records()[0]
    assert (record["prompt_tokens"], record["completion_tokens"]) == (answer.usage.prompt_tokens, sum(tokens))

    seen = len(platform.records())
    streamed: dict[int, int] = {0: 0, 1: 0}
    for chunk in platform.sdk().chat.completions.create(**ask, stream=True):
        assert chunk.usage is None  # not asked for: the gateway keeps to itself the usage it asked for
        for choice in chunk.choices:
            streamed[choice.index] += len(choice.logprobs.content) if choice.logprobs else 0
    assert list(streamed.values()) == tokens  # the same seed: the same choices, streamed
    record = platform.record_after(seen)
    assert record["completion_tokens"] == sum(tokens) and record["status"] == "ok"

    usage = [
        c.usage
        for c in platform.sdk().chat.completions.create(**ask, stream=True, stream_options={"include_usage": True})
        if c.usage is not None
    ]
    assert [(u.prompt_tokens, u.completion_tokens) for u in usage] == [(answer.usage.prompt_tokens, sum(tokens))]


def test_usage_on_a_choice_event_is_counted_without_losing_the_event(platform, usage_inline):
    sdk = platform.sdk()
    seen = len(platform.records())
    chunks = list(sdk.chat.completions.create(model="inline", messages=MESSAGES, stream=True))
    calls = _calls(chunks)
    assert calls[-1] == (0, None, None, "tool_calls")
    assert "".join(piece for _, _, piece, _ in calls if piece) == '{"city": "Oslo"}'
    assert all(chunk.usage is None for chunk in chunks)  # not asked for
    record = platform.record_after(seen)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (5, 7)

    asked = list(
        sdk.chat.completions.create(
            model="inline", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert _calls(asked) == calls and asked[-1].usage.completion_tokens == 7


def test_the_relay_reframes_a_stream_framed_any_way_the_format_allows(platform, odd_framing):
    sdk = platform.sdk()
    seen = len(platform.records())
    chunks = list(sdk.chat.completions.create(model="framed", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there"
    assert all(chunk.usage is None for chunk in chunks)  # not asked for: its event is dropped
    record = platform.record_after(seen)
    assert record["status"] == "ok" and (record["prompt_tokens"], record["completion_tokens"]) == (3, 4)

    asked = list(
        sdk.chat.completions.create(
            model="framed", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert asked[-1].usage.completion_tokens == 4 and len(asked) == len(chunks) + 1


def test_langchain_n_generations_with_logprobs(platform):
    llm = platform.chat(n=2, max_tokens=6, temperature=1, seed=5, logprobs=True, top_logprobs=2)
    result = llm.generate([[HumanMessage(QUESTION)]])
    [generations] = result.generations
    assert len(generations) == 2
    counted = 0
    for generation in generations:
        content = generation.message.response_metadata["logprobs"]["content"]
        assert content and all(len(t["top_logprobs"]) == 2 for t in content)
        counted += len(content)
    assert platform.records()[0]["completion_tokens"] == counted


def test_completions_of_token_ids_with_bias_and_penalties_reach_the_provider(platform):
    lm = platform.lm
    prompts = [lm.encode("The quick brown"), lm.encode("Once upon a time")]
    forced = lm.encode(" fox")[-1]
    answer = platform.sdk().completions.create(
        model="tools", prompt=prompts, n=2, max_tokens=4, temperature=0, logprobs=1, logit_bias={str(forced): 100}
    )
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    assert [c.text for c in answer.choices] == [lm.decode([forced] * 4)] * 4
    assert all(len(c.logprobs.tokens) == 4 for c in answer.choices)
    record = platform.records()[0]
    # each prompt counted once, each of its two choices' tokens counted
    assert (record["prompt_tokens"], record["completion_tokens"]) == (sum(map(len, prompts)), 16)
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (sum(map(len, prompts)), 16)

    # a small bias makes greedy decoding repeat one token; a frequency penalty grows with each repeat until
    # it stops, so the penalised text differs, and is what the provider says to the same request
    ask = {
        "model": "tools",
        "prompt": "The quick brown",
        "max_tokens": 12,
        "temperature": 0,
        "logit_bias": {str(forced): 3},
    }
    assert platform.sdk().completions.create(**ask).choices[0].text == lm.decode([forced] * 12)
    penalised = platform.sdk().completions.create(**ask, frequency_penalty=2).choices[0].text
    assert 1 <= lm.encode(penalised).count(forced) < 12
    assert penalised == platform.direct().completions.create(**ask, frequency_penalty=2).choices[0].text
