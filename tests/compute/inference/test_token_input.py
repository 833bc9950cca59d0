"""Token-id and multi-prompt input over real HTTP: embeddings of OpenAI's cl100k_base ids (what LangChain's
OpenAIEmbeddings sends by default) and completions of the model's own ids, through the openai SDK."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest
from langchain_openai import OpenAIEmbeddings

from compute.inference import backends
from tests.support.openai_server import byte_level_cl100k, serving

KEY = "token-input-key"
TEXTS = ["the quick brown fox", "jumps over the lazy dog", "héllo wörld"]


@pytest.fixture(scope="module")
def models(tiny_lm, tiny_embedder):
    return [
        backends.load(backends.ModelSpec.parse("text", f"tiny={tiny_lm}"), "cpu"),
        backends.load(backends.ModelSpec.parse("embedding", f"emb={tiny_embedder}"), "cpu"),
    ]


@pytest.fixture(scope="module")
def base_url(models):
    with byte_level_cl100k(), serving(models, api_key=KEY) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0)


def test_langchain_default_embeddings_match_embedding_the_texts(base_url, client):
    embedder = OpenAIEmbeddings(model="emb", base_url=base_url, api_key=KEY)
    assert embedder.check_embedding_ctx_length  # the default that sends token ids
    vectors = embedder.embed_documents(TEXTS)
    direct = client.embeddings.create(model="emb", input=TEXTS)
    assert len(vectors) == len(TEXTS)
    for got, want in zip(vectors, direct.data):
        assert np.allclose(got, want.embedding, atol=1e-5)
    assert np.allclose(embedder.embed_query(TEXTS[0]), direct.data[0].embedding, atol=1e-5)


def test_sdk_token_ids_one_or_many(client):
    ids = [list(t.encode()) for t in TEXTS]
    many = client.embeddings.create(model="emb", input=ids)
    one = client.embeddings.create(model="emb", input=ids[1])
    texts = client.embeddings.create(model="emb", input=TEXTS)
    assert [d.index for d in many.data] == [0, 1, 2]
    for a, b in zip(many.data, texts.data):
        assert np.allclose(a.embedding, b.embedding, atol=1e-5)
    assert np.allclose(one.data[0].embedding, texts.data[1].embedding, atol=1e-5)


def test_an_id_the_encoding_lacks_is_a_400_naming_input(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="emb", input=[[104, 999_999]])
    assert err.value.body["param"] == "input"


def test_completion_of_token_ids_equals_completion_of_their_text(models, client):
    tiny = models[0]
    prompt = "The quick brown fox"
    ids = tiny.encode(prompt)
    by_text = client.completions.create(model="tiny", prompt=prompt, max_tokens=8, temperature=0)
    by_ids = client.completions.create(model="tiny", prompt=ids, max_tokens=8, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    echoed = client.completions.create(model="tiny", prompt=ids, max_tokens=4, temperature=0, echo=True)
    assert echoed.choices[0].text.startswith(tiny.decode(ids))


def test_several_prompts_give_one_choice_each_in_order(models, client):
    tiny = models[0]
    prompts = ["The quick brown fox", "Once upon a time", "In the beginning"]
    alone = [
        client.completions.create(model="tiny", prompt=p, max_tokens=6, temperature=0).choices[0].text for p in prompts
    ]
    together = client.completions.create(model="tiny", prompt=prompts, max_tokens=6, temperature=0)
    assert [c.index for c in together.choices] == [0, 1, 2]
    assert [c.text for c in together.choices] == alone
    as_ids = client.completions.create(
        model="tiny", prompt=[tiny.encode(p) for p in prompts], max_tokens=6, temperature=0
    )
    assert [c.text for c in as_ids.choices] == alone
    assert together.usage.prompt_tokens == sum(len(tiny.encode(p)) for p in prompts)

    stream = client.completions.create(model="tiny", prompt=prompts, max_tokens=6, temperature=0, stream=True)
    texts = ["", "", ""]
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    assert texts == alone


@pytest.mark.parametrize("prompt", [[], [[]], [-1], [10**9]])
def test_bad_prompts_are_refused_naming_prompt(base_url, prompt):
    resp = httpx.post(
        f"{base_url}/completions", json={"model": "tiny", "prompt": prompt}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert resp.status_code in (400, 422)
    assert resp.json()["error"]["param"].startswith("prompt")
