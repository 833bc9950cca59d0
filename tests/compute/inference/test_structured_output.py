"""``response_format`` on the provider's inference server, over real HTTP: the official openai client and
LangChain get schema-valid JSON from a random-weight model, because decoding is constrained to the schema."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import httpx
import jsonschema
import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

QUESTION = [{"role": "user", "content": "What is the weather in Paris this week?"}]
FORECAST_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "sky": {"enum": ["sunny", "rainy", "cloudy"]},
        "warm": {"type": "boolean"},
    },
    "required": ["city", "days", "sky", "warm"],
}


class Forecast(BaseModel):
    city: str = Field(max_length=12)
    days: int = Field(ge=1, le=7)
    sky: Literal["sunny", "rainy", "cloudy"]


@pytest.fixture(scope="module")
def client(structured_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=structured_server, api_key="unused", max_retries=0)


@pytest.mark.parametrize("model", ["tools", "plain"])
def test_json_schema_answers_validate_against_the_schema(client, model):
    fmt = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": FORECAST_SCHEMA}}
    for temperature, seed in [(0, None), (1, 1), (1, 2)]:
        resp = client.chat.completions.create(
            model=model, messages=QUESTION, max_tokens=120, temperature=temperature, seed=seed, response_format=fmt
        )
        assert resp.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(resp.choices[0].message.content), FORECAST_SCHEMA)


def test_streamed_json_schema_answer_is_the_same_json(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": FORECAST_SCHEMA}}
    whole = client.chat.completions.create(
        model="tools", messages=QUESTION, max_tokens=120, temperature=0, response_format=fmt
    )
    chunks = list(
        client.chat.completions.create(
            model="tools", messages=QUESTION, max_tokens=120, temperature=0, response_format=fmt, stream=True
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == whole.choices[0].message.content
    jsonschema.validate(json.loads(streamed), FORECAST_SCHEMA)


def test_sdk_parse_returns_the_pydantic_model(client):
    resp = client.chat.completions.parse(
        model="tools", messages=QUESTION, max_tokens=120, temperature=0, response_format=Forecast
    )
    assert isinstance(resp.choices[0].message.parsed, Forecast)


def test_json_object_answers_are_json_objects(client):
    # an open object lets a random model write keys without end, so only answers that stop are complete
    answers = [
        client.chat.completions.create(
            model="tools",
            messages=QUESTION,
            max_tokens=60,
            temperature=1,
            seed=seed,
            response_format={"type": "json_object"},
        ).choices[0]
        for seed in range(6)
    ]
    complete = [a.message.content for a in answers if a.finish_reason == "stop"]
    assert complete
    assert all(isinstance(json.loads(text), dict) for text in complete)
    assert all(a.message.content.startswith("{") for a in answers)


def test_an_answer_cut_by_max_tokens_finishes_as_length(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": FORECAST_SCHEMA}}
    resp = client.chat.completions.create(
        model="tools", messages=QUESTION, max_tokens=3, temperature=0, response_format=fmt
    )
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 3


def test_langchain_with_structured_output_returns_the_model(structured_server):
    llm = ChatOpenAI(
        model="tools", base_url=structured_server, api_key="unused", temperature=0, max_tokens=120, max_retries=0
    )
    answer = llm.with_structured_output(Forecast).invoke("What is the weather in Paris this week?")
    assert isinstance(answer, Forecast)


def test_a_plain_text_format_leaves_the_answer_free(client):
    free = client.chat.completions.create(model="tools", messages=QUESTION, max_tokens=20, temperature=0)
    text = client.chat.completions.create(
        model="tools", messages=QUESTION, max_tokens=20, temperature=0, response_format={"type": "text"}
    )
    assert text.choices[0].message.content == free.choices[0].message.content


@pytest.mark.parametrize(
    "fmt, status",
    [
        ({"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "no-such-type"}}}, 400),
        ({"type": "json_schema", "json_schema": {"name": "bad", "schema": {"$ref": "#/$defs/missing"}}}, 400),
        ({"type": "json_schema"}, 422),
        ({"type": "xml"}, 422),
    ],
)
def test_an_unusable_response_format_is_refused_naming_it(structured_server, fmt, status):
    resp = httpx.post(
        f"{structured_server}/chat/completions", json={"model": "tools", "messages": QUESTION, "response_format": fmt}
    )
    assert resp.status_code == status
    assert resp.json()["error"]["param"].startswith("response_format")


def test_constrained_and_free_requests_batched_together_each_get_their_own_answer(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": FORECAST_SCHEMA}}
    free_alone = client.chat.completions.create(model="tools", messages=QUESTION, max_tokens=40, temperature=0)
    with ThreadPoolExecutor(6) as pool:
        free = [
            pool.submit(client.chat.completions.create, model="tools", messages=QUESTION, max_tokens=40, temperature=0)
            for _ in range(3)
        ]
        shaped = [
            pool.submit(
                client.chat.completions.create,
                model="tools",
                messages=QUESTION,
                max_tokens=120,
                temperature=1,
                seed=seed,
                response_format=fmt,
            )
            for seed in range(3)
        ]
        for future in shaped:
            jsonschema.validate(json.loads(future.result().choices[0].message.content), FORECAST_SCHEMA)
        for future in free:
            assert future.result().choices[0].message.content == free_alone.choices[0].message.content
