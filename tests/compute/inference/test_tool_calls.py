"""Tool calls on the provider's inference server, over real HTTP: tools go through the model's chat template,
forced calls are decoded under a grammar so a random-weight model still makes valid ones, and the calls come
back (whole or streamed) in OpenAI's shape, as the official openai client and LangChain read them."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from compute.inference.structured import ToolCallParser, collect_calls

QUESTION = [{"role": "user", "content": "What is the weather in Paris this week?"}]


class GetWeather(BaseModel):
    """The weather forecast for a city."""

    city: str = Field(max_length=12)
    days: int = Field(ge=1, le=7)


class GetTime(BaseModel):
    """The local time in a city."""

    city: str = Field(max_length=12)


WEATHER = convert_to_openai_tool(GetWeather)
TIME = convert_to_openai_tool(GetTime)
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}


@pytest.fixture(scope="module")
def client(structured_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=structured_server, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def llm(structured_server) -> ChatOpenAI:
    return ChatOpenAI(
        model="tools", base_url=structured_server, api_key="unused", temperature=0, max_tokens=120, max_retries=0
    )


@pytest.mark.parametrize(
    "choice, names",
    [
        ("required", {"GetWeather", "GetTime"}),
        ({"type": "function", "function": {"name": "GetTime"}}, {"GetTime"}),
    ],
)
def test_forced_calls_name_a_tool_with_arguments_valid_for_it(client, choice, names):
    resp = client.chat.completions.create(
        model="tools", messages=QUESTION, tools=[WEATHER, TIME], tool_choice=choice, max_tokens=120, temperature=0
    )
    assert resp.choices[0].finish_reason == "tool_calls"
    message = resp.choices[0].message
    assert message.content is None
    [call] = message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in names
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_streamed_call_arrives_as_tool_call_deltas_with_its_arguments_piece_by_piece(client):
    whole = client.chat.completions.create(
        model="tools", messages=QUESTION, tools=[WEATHER], tool_choice="required", max_tokens=120, temperature=0
    )
    chunks = list(
        client.chat.completions.create(
            model="tools",
            messages=QUESTION,
            tools=[WEATHER],
            tool_choice="required",
            max_tokens=120,
            temperature=0,
            stream=True,
        )
    )
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
    assert len(deltas) > 2 and {d.index for d in deltas} == {0}
    assert deltas[0].function.name == "GetWeather" and deltas[0].id.startswith("call_")
    assert all(d.id is None and d.function.name is None for d in deltas[1:])
    assert "".join(d.function.arguments for d in deltas) == whole.choices[0].message.tool_calls[0].function.arguments
    assert not "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_langchain_bind_tools_gets_the_named_call(llm):
    answer = llm.bind_tools([GetWeather, GetTime], tool_choice="GetWeather").invoke("Weather in Paris?")
    [call] = answer.tool_calls
    assert call["name"] == "GetWeather"
    GetWeather.model_validate(call["args"])


def test_langchain_bind_tools_with_any_tool(llm):
    answer = llm.bind_tools([GetWeather, GetTime], tool_choice="any").invoke("Weather in Paris?")
    [call] = answer.tool_calls
    jsonschema.validate(call["args"], SCHEMAS[call["name"]])


def test_langchain_streamed_chunks_add_up_to_the_call(llm):
    bound = llm.bind_tools([GetWeather], tool_choice="GetWeather")
    chunks = list(bound.stream("Weather in Paris?"))
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    [call] = whole.tool_calls
    assert call["name"] == "GetWeather"
    assert call["args"] == bound.invoke("Weather in Paris?").tool_calls[0]["args"]
    GetWeather.model_validate(call["args"])


def test_a_tool_result_is_taken_in_the_follow_up_turn(llm, client):
    bound = llm.bind_tools([GetWeather], tool_choice="GetWeather")
    question = HumanMessage("Weather in Paris?")
    called = bound.invoke([question])
    result = ToolMessage(content='{"sky": "sunny", "high_c": 24}', tool_call_id=called.tool_calls[0]["id"])
    answer = llm.bind_tools([GetWeather], tool_choice="none").invoke([question, called, result])
    assert isinstance(answer, AIMessage) and not answer.tool_calls
    # the template rendered the call and its result into the prompt
    shorter = llm.bind_tools([GetWeather], tool_choice="none").invoke([question])
    grown = answer.usage_metadata["input_tokens"] - shorter.usage_metadata["input_tokens"]
    assert grown > len(result.content) // 4


def test_auto_lets_the_model_answer_in_text(client):
    resp = client.chat.completions.create(
        model="tools", messages=QUESTION, tools=[WEATHER], tool_choice="auto", max_tokens=20, temperature=0
    )
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].message.content
    assert resp.choices[0].finish_reason in {"stop", "length"}


def _parse(parser: ToolCallParser, text: str, size: int) -> tuple[str, list[tuple[str, dict]]]:
    """The answer text and the calls ``parser`` reads in ``text`` streamed ``size`` characters at a time."""
    items = [item for i in range(0, len(text), size) for item in parser.feed(text[i : i + size])] + parser.close()
    calls = collect_calls([item for item in items if not isinstance(item, str)])
    return "".join(i for i in items if isinstance(i, str)), [
        (c.function.name, json.loads(c.function.arguments)) for c in calls
    ]


def test_auto_answers_read_calls_out_of_the_model_text():
    text = (
        'Let me check.\n<tool_call>\n{"name": "GetWeather", "arguments": {"city": "Paris}", "days": 2}}\n'
        '</tool_call>\n<tool_call>\n{"arguments": {"city": "Oslo"}, "name": "GetTime"}\n</tool_call>'
    )
    for size in (1, 3, 7, len(text)):  # however the text is split into streamed pieces
        answer, calls = _parse(ToolCallParser({"GetWeather", "GetTime"}), text, size)
        assert answer == "Let me check."
        assert calls == [("GetWeather", {"city": "Paris}", "days": 2}), ("GetTime", {"city": "Oslo"})]


def test_blocks_that_are_not_calls_stay_text():
    text = (
        '<tool_call>{"name": "Nope", "arguments": {}}</tool_call> a < b '
        '<tool_call>{"name": "GetWeather", "arguments": {"city": "Rome", "days": 1}}</tool_call>'
        '<tool_call>{"name": "GetWeather", "arguments": {"city": "Oslo", "days": 1}}</tool_call>'
    )
    for size in (1, 5, len(text)):
        answer, calls = _parse(ToolCallParser({"GetWeather"}, max_calls=1), text, size)
        assert calls == [("GetWeather", {"city": "Rome", "days": 1})]
        assert answer.startswith('<tool_call>{"name": "Nope"') and " a < b" in answer and "Oslo" in answer


@pytest.mark.parametrize(
    "body, field",
    [
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "GetTime"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER, WEATHER]}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "no-such-type"}}}]}, "tools"),
        ({"model": "plain", "tools": [WEATHER]}, "tools"),
    ],
)
def test_tool_requests_the_server_cannot_honour_are_400_naming_the_field(structured_server, body, field):
    resp = httpx.post(f"{structured_server}/chat/completions", json={"model": "tools", "messages": QUESTION, **body})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == field


@pytest.mark.parametrize(
    "body, field",
    [
        ({"functions": [WEATHER["function"]]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
    ],
)
def test_the_deprecated_functions_form_is_refused_not_ignored(structured_server, body, field):
    resp = httpx.post(f"{structured_server}/chat/completions", json={"model": "tools", "messages": QUESTION, **body})
    assert resp.status_code == 422
    assert resp.json()["error"]["param"] == field


def test_tools_with_tool_choice_none_are_served_by_a_model_without_a_tool_template(client):
    resp = client.chat.completions.create(
        model="plain", messages=QUESTION, tools=[WEATHER], tool_choice="none", max_tokens=5, temperature=0
    )
    assert resp.choices[0].message.tool_calls is None


def test_arguments_that_are_not_json_in_a_past_call_are_refused(client):
    messages = QUESTION + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "GetWeather", "arguments": "{not json"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    with pytest.raises(openai.BadRequestError, match="arguments"):
        client.chat.completions.create(model="tools", messages=messages, tools=[WEATHER], max_tokens=5)


def test_auto_with_a_response_format_answers_in_that_format_or_calls(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMAS["GetWeather"]}}
    kinds = set()
    for seed in range(6):
        choice = client.chat.completions.create(
            model="tools",
            messages=QUESTION,
            tools=[TIME],
            tool_choice="auto",
            response_format=fmt,
            max_tokens=120,
            temperature=1,
            seed=seed,
        ).choices[0]
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls"
            [call] = choice.message.tool_calls
            jsonschema.validate(json.loads(call.function.arguments), SCHEMAS["GetTime"])
            kinds.add("call")
        else:
            assert choice.finish_reason == "stop"
            jsonschema.validate(json.loads(choice.message.content), SCHEMAS["GetWeather"])
            kinds.add("answer")
    assert kinds == {"call", "answer"}
