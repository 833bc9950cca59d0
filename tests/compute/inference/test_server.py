"""The provider's inference server over real HTTP, driven by the official openai client."""

from __future__ import annotations

import base64
import threading
import time

import httpx
import numpy as np
import openai
import pytest

from compute.inference import backends
from compute.inference.server import create_app
from cxmpute.ports import free_port

KEY = "server-key-123"


@pytest.fixture(scope="module")
def server(tiny_lm, tiny_embedder):
    import uvicorn

    models = [
        backends.load(backends.ModelSpec.parse("text", f"tiny={tiny_lm}"), "cpu"),
        backends.load(backends.ModelSpec.parse("embedding", f"emb={tiny_embedder}"), "cpu"),
    ]
    port = free_port()
    srv = uvicorn.Server(
        uvicorn.Config(create_app(models, api_key=KEY), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def test_lists_what_it_serves_by_kind(server):
    resp = httpx.get(f"{server}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert {m["id"]: m["kind"] for m in resp.json()["data"]} == {"tiny": "text", "emb": "embedding"}


def test_refuses_callers_without_its_key(server):
    assert httpx.get(f"{server}/v1/models").status_code == 401
    assert httpx.get(f"{server}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{server}/healthz").status_code == 200


def test_streamed_chat_pieces_add_up_to_the_whole_answer(client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital?"}]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=30, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=messages,
            max_tokens=30,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason


def test_completion_honours_stop_strings_and_echo(client):
    prompt = "The lazy dog"
    full = client.completions.create(model="tiny", prompt=prompt, max_tokens=40, temperature=0).choices[0].text
    stop = "ass"  # the seeded tiny model repeats it in this prompt's continuation
    assert full.index(stop) > 0
    cut = client.completions.create(model="tiny", prompt=prompt, max_tokens=40, temperature=0, stop=[stop, "zzz"])
    assert cut.choices[0].text == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model="tiny", prompt=prompt, max_tokens=40, temperature=0, stop=stop, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == full[: full.index(stop)]
    echoed = client.completions.create(model="tiny", prompt=prompt, max_tokens=3, temperature=0, echo=True)
    assert echoed.choices[0].text.startswith(prompt)


def test_embeddings_as_floats_and_base64_agree(client, server):
    texts = ["memory stores passages", "the lazy dog"]
    floats = client.embeddings.create(model="emb", input=texts, encoding_format="float")
    packed = httpx.post(
        f"{server}/v1/embeddings",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "emb", "input": texts, "encoding_format": "base64"},
    ).json()
    for f, p in zip(floats.data, packed["data"]):
        assert np.allclose(f.embedding, np.frombuffer(base64.b64decode(p["embedding"]), dtype=np.float32), atol=1e-6)
    assert np.isclose(np.linalg.norm(floats.data[0].embedding), 1.0, atol=1e-5)
    short = client.embeddings.create(model="emb", input="the lazy dog", dimensions=8)
    assert len(short.data[0].embedding) == 8
    assert floats.usage.prompt_tokens > 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"model": "tiny", "messages": []}, "messages"),
        ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
        (
            {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 21},
            "top_logprobs",
        ),
        ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_chat_requests_are_422_naming_the_field(server, body, field):
    resp = httpx.post(f"{server}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status_code == 422
    assert resp.json()["error"]["param"] == field


def test_wrong_model_or_kind_or_oversized_prompt_is_refused(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        client.chat.completions.create(model="emb", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="text model"):
        client.embeddings.create(model="tiny", input="x")
    with pytest.raises(openai.UnprocessableEntityError, match="context"):
        client.completions.create(model="tiny", prompt="The quick brown fox " * 1000, max_tokens=2)
    with pytest.raises(openai.UnprocessableEntityError, match="dimensions"):
        client.embeddings.create(model="emb", input="x", dimensions=4096)


def test_model_specs_name_what_they_serve():
    assert backends.ModelSpec.parse("text", "org/model").name == "org/model"
    assert backends.ModelSpec.parse("text", "/models/llama-3").name == "llama-3"
    assert backends.ModelSpec.parse("text", "archive:acme/tiny").name == "acme/tiny"
    assert backends.ModelSpec.parse("text", "chat=/models/llama-3") == backends.ModelSpec(
        "text", "/models/llama-3", "chat"
    )
    with pytest.raises(backends.InferenceError):
        backends.load(backends.ModelSpec.parse("text", "/no/such/model"), "cpu")
