"""Sampling options over real HTTP through the openai SDK: n choices, log-probabilities, presence and
frequency penalties and logit bias, in whole answers and in streams."""

from __future__ import annotations

import httpx
import openai
import pytest

from compute.inference import backends
from tests.support.openai_server import serving

KEY = "sampling-key"
CHAT = [{"role": "user", "content": "Tell me about the quick brown fox."}]


@pytest.fixture(scope="module")
def tiny(tiny_lm) -> backends.TextModel:
    return backends.load(backends.ModelSpec.parse("text", f"tiny={tiny_lm}"), "cpu")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def base_url(tiny):
    with serving([tiny], api_key=KEY) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0)


def _ids(tiny: backends.TextModel, text: str) -> list[int]:
    return tiny.encode(text)


def test_n_chat_choices_are_sampled_independently_and_repeatably(client):
    first = client.chat.completions.create(model="tiny", messages=CHAT, n=3, max_tokens=12, temperature=1.0, seed=7)
    again = client.chat.completions.create(model="tiny", messages=CHAT, n=3, max_tokens=12, temperature=1.0, seed=7)
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert len(set(texts)) > 1
    assert [c.message.content for c in again.choices] == texts
    assert first.usage.completion_tokens >= 3


def test_n_streamed_chunks_name_their_choice(client):
    stream = client.chat.completions.create(
        model="tiny",
        messages=CHAT,
        n=3,
        max_tokens=10,
        temperature=1.0,
        seed=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, reasons, usage = ["", "", ""], [None, None, None], None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            reasons[choice.index] = choice.finish_reason or reasons[choice.index]
    assert all(reasons) and all(texts)
    assert usage is not None and usage.completion_tokens >= 3


def test_n_completions_with_several_prompts_are_grouped_by_prompt(client):
    answer = client.completions.create(
        model="tiny", prompt=["The quick", "Once upon"], n=2, max_tokens=5, temperature=0
    )
    texts = [c.text for c in answer.choices]
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    assert texts[0] == texts[1] and texts[2] == texts[3]  # greedy: a prompt's choices agree


def test_chat_logprobs_describe_each_token(client):
    answer = client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=10, temperature=0, logprobs=True, top_logprobs=3
    )
    content = answer.choices[0].logprobs.content
    assert "".join(t.token for t in content) == answer.choices[0].message.content
    for token in content:
        assert token.logprob <= 0 and token.bytes == list(token.token.encode())
        assert len(token.top_logprobs) == 3
        assert token.top_logprobs[0].logprob == pytest.approx(token.logprob)  # greedy takes the likeliest
        assert token.top_logprobs[0].logprob >= token.top_logprobs[1].logprob >= token.top_logprobs[2].logprob

    plain = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=10, temperature=0, logprobs=True)
    assert all(t.top_logprobs == [] for t in plain.choices[0].logprobs.content)
    unasked = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=10, temperature=0)
    assert unasked.choices[0].logprobs is None


def test_streamed_chat_logprobs_match_the_whole_answer(client):
    whole = client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=10, temperature=0, logprobs=True, top_logprobs=2
    )
    stream = client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=10, temperature=0, logprobs=True, top_logprobs=2, stream=True
    )
    tokens = [t for chunk in stream for c in chunk.choices if c.logprobs for t in c.logprobs.content]
    assert [(t.token, round(t.logprob, 4)) for t in tokens] == [
        (t.token, round(t.logprob, 4)) for t in whole.choices[0].logprobs.content
    ]


def test_completion_logprobs_in_the_legacy_shape(client):
    answer = client.completions.create(
        model="tiny", prompt="The quick brown fox", max_tokens=8, temperature=0, logprobs=2
    )
    choice = answer.choices[0]
    lp = choice.logprobs
    assert "".join(lp.tokens) == choice.text
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    assert all(
        len(top) <= 2 and max(top.values()) == pytest.approx(p) for top, p in zip(lp.top_logprobs, lp.token_logprobs)
    )
    stream = client.completions.create(
        model="tiny", prompt="The quick brown fox", max_tokens=8, temperature=0, logprobs=2, stream=True
    )
    parts = [c.logprobs for chunk in stream for c in chunk.choices if c.logprobs]
    assert [t for p in parts for t in p.tokens] == lp.tokens
    assert [o for p in parts for o in p.text_offset] == lp.text_offset


def test_logit_bias_forces_and_bans_tokens(tiny, client):
    forced = _ids(tiny, "fox")[-1]
    answer = client.completions.create(
        model="tiny", prompt="The quick brown", max_tokens=5, temperature=0, logit_bias={str(forced): 100}, logprobs=0
    )
    assert answer.choices[0].text == tiny.decode([forced] * 5)

    greedy = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=6, temperature=0)
    first = tiny.encode(greedy.choices[0].text)[0]
    banned = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=6, temperature=0)
    ban_chat = tiny.encode(banned.choices[0].message.content)[0]
    without = client.completions.create(
        model="tiny", prompt="The quick brown", max_tokens=6, temperature=0, logit_bias={str(first): -100}
    )
    assert first not in tiny.encode(without.choices[0].text)
    chat_without = client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=6, temperature=0, logit_bias={str(ban_chat): -100}
    )
    assert chat_without.choices[0].message.content != banned.choices[0].message.content


def _count(tiny: backends.TextModel, answer, token: int) -> int:
    return tiny.encode(answer.choices[0].text).count(token)


def test_frequency_penalty_breaks_a_greedy_repetition(tiny, client):
    # a small bias makes greedy decoding repeat one token; the penalty grows with each repeat until it stops
    token = _ids(tiny, "fox")[-1]
    ask = {
        "model": "tiny",
        "prompt": "The quick brown",
        "max_tokens": 12,
        "temperature": 0,
        "logit_bias": {str(token): 3},
    }
    repeated = client.completions.create(**ask)
    assert repeated.choices[0].text == tiny.decode([token] * 12)
    penalized = client.completions.create(**ask, frequency_penalty=2.0)
    assert 1 <= _count(tiny, penalized, token) < 12
    assert client.completions.create(**ask, frequency_penalty=2.0).choices[0].text == penalized.choices[0].text


def test_negative_presence_penalty_makes_greedy_decoding_repeat(tiny, client):
    ask = {"model": "tiny", "prompt": "The quick brown", "max_tokens": 12, "temperature": 0, "logprobs": 0}
    plain = client.completions.create(**ask)
    first = plain.choices[0].logprobs.tokens[0]
    eager = client.completions.create(**ask, presence_penalty=-2.0)
    assert eager.choices[0].logprobs.tokens.count(first) > plain.choices[0].logprobs.tokens.count(first)


@pytest.mark.parametrize(
    "path, extra, field",
    [
        ("chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("chat/completions", {"top_logprobs": 2}, "top_logprobs"),
        ("chat/completions", {"n": 0}, "n"),
        ("completions", {"n": 0}, "n"),
        ("chat/completions", {"n": 17}, "n"),
        ("completions", {"logprobs": 21}, "logprobs"),
        ("chat/completions", {"logit_bias": {"fox": 5}}, "logit_bias"),
        ("completions", {"logit_bias": {"12": 101}}, "logit_bias"),
        ("chat/completions", {"logit_bias": {"99999999": 1}}, "logit_bias"),
        ("completions", {"presence_penalty": 2.5}, "presence_penalty"),
        ("chat/completions", {"frequency_penalty": -3}, "frequency_penalty"),
        ("completions", {"best_of": 2}, "best_of"),
        ("completions", {"echo": True, "logprobs": 1}, "logprobs"),
    ],
)
def test_invalid_values_are_refused_naming_the_field(base_url, path, extra, field):
    body = {"model": "tiny", "max_tokens": 2, **extra}
    body.update({"messages": CHAT} if path.startswith("chat") else {"prompt": "The quick"})
    resp = httpx.post(f"{base_url}/{path}", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status_code in (400, 422), resp.text
    assert resp.json()["error"]["param"] == field


def test_langchain_chat_gets_n_generations_and_logprobs(base_url):
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        model="tiny",
        base_url=base_url,
        api_key=KEY,
        temperature=0,
        max_tokens=6,
        n=2,
        logprobs=True,
        top_logprobs=2,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        logit_bias={"5": -100},
        max_retries=0,
    )
    result = chat.generate([[HumanMessage(CHAT[0]["content"])]])
    generations = result.generations[0]
    assert len(generations) == 2
    for generation in generations:
        content = generation.message.response_metadata["logprobs"]["content"]
        assert "".join(t["token"] for t in content) == generation.text
        assert all(len(t["top_logprobs"]) == 2 for t in content)
