"""The continuous batcher: batched decoding gives each request exactly what it would get alone, requests join
a running batch mid-flight, and a request that leaves early stops costing steps."""

from __future__ import annotations

import asyncio

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from compute.inference.batching import BatchingGenerator, Finished, Sampling

PROMPTS = [
    "The quick brown",
    "Memory stores passages and answers",
    "user: what is",
    "Providers publish provisions at",
    "Context passages are numbered",
    "The lazy dog",
]


@pytest.fixture(scope="module")
def lm(tiny_lm):
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    return model, tokenizer


@pytest.fixture
def batcher(lm):
    model, tokenizer = lm
    generator = BatchingGenerator(model, {tokenizer.eos_token_id}, max_batch=4, context_limit=2048)
    yield generator
    generator.close()


def _alone(lm, prompt: str, n: int) -> list[int]:
    model, tokenizer = lm
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    tokens = out[0, inputs["input_ids"].shape[1] :].tolist()
    return tokens[: tokens.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in tokens else tokens


async def _collect(batcher, tokenizer, prompt: str, n: int, delay: float = 0.0, **sampling):
    await asyncio.sleep(delay)
    tokens, finished = [], None
    async for item in batcher.stream(tokenizer(prompt)["input_ids"], Sampling(max_new_tokens=n, **sampling)):
        if isinstance(item, Finished):
            finished = item
        else:
            tokens.append(item)
    return tokens, finished


async def test_concurrent_requests_joining_mid_flight_match_generating_alone(lm, batcher):
    _, tokenizer = lm
    # more requests than batch rows, staggered, with different lengths: rows leave and others join mid-batch
    jobs = [(p, 6 + 5 * i, 0.01 * i) for i, p in enumerate(PROMPTS * 2)]
    results = await asyncio.gather(*(_collect(batcher, tokenizer, p, n, d) for p, n, d in jobs))
    for (prompt, n, _), (tokens, finished) in zip(jobs, results):
        assert tokens == _alone(lm, prompt, n)
        assert finished.completion_tokens == len(tokens)
        assert finished.prompt_tokens == len(tokenizer(prompt)["input_ids"])
        assert finished.reason == ("length" if len(tokens) == n else "stop")


async def test_seeded_sampling_repeats_and_differs_from_greedy(lm, batcher):
    _, tokenizer = lm
    a, b = await asyncio.gather(
        *(_collect(batcher, tokenizer, "The quick", 20, temperature=1.5, seed=7) for _ in range(2))
    )
    assert a[0] == b[0]
    greedy, _ = await _collect(batcher, tokenizer, "The quick", 20)
    assert a[0] != greedy


async def test_a_request_that_leaves_early_is_dropped_from_the_batch(lm, batcher):
    _, tokenizer = lm
    stream = batcher.stream(tokenizer("The quick")["input_ids"], Sampling(max_new_tokens=2000))
    assert isinstance(await anext(stream), int)
    await stream.aclose()
    for _ in range(100):
        if not batcher._running:
            break
        await asyncio.sleep(0.02)
    assert batcher._running == []
    # the batcher goes on serving others
    tokens, finished = await _collect(batcher, tokenizer, "The lazy dog", 5)
    assert tokens == _alone(lm, "The lazy dog", 5)


async def test_the_context_limit_ends_generation(lm):
    model, tokenizer = lm
    generator = BatchingGenerator(model, set(), context_limit=12)
    try:
        prompt = tokenizer("The quick brown")["input_ids"]
        tokens, finished = await _collect(generator, tokenizer, "The quick brown", 100)
        assert finished.reason == "length" and len(prompt) + len(tokens) == 12
    finally:
        generator.close()


async def test_absolute_position_models_batch_too(lm):
    """GPT-2 learns position embeddings: each row's positions must count only its own tokens."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tokenizer = lm
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=256,
            eos_token_id=tokenizer.eos_token_id,
        )
    ).eval()
    generator = BatchingGenerator(gpt2, {tokenizer.eos_token_id}, context_limit=256)
    try:
        jobs = [(p, 5 + 4 * i, 0.01 * i) for i, p in enumerate(PROMPTS)]
        results = await asyncio.gather(*(_collect(generator, tokenizer, p, n, d) for p, n, d in jobs))
        for (prompt, n, _), (tokens, _) in zip(jobs, results):
            assert tokens == _alone((gpt2, tokenizer), prompt, n)
    finally:
        generator.close()


def test_models_whose_cache_cannot_be_stacked_are_refused_at_load(lm, tmp_path):
    from transformers import MistralConfig, MistralForCausalLM

    from compute.inference import backends

    _, tokenizer = lm
    tokenizer.save_pretrained(tmp_path / "windowed")
    MistralForCausalLM(
        MistralConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            sliding_window=4,
        )
    ).save_pretrained(tmp_path / "windowed")
    with pytest.raises(backends.InferenceError, match="DynamicSlidingWindowLayer") as caught:
        backends.load(backends.ModelSpec.parse("text", str(tmp_path / "windowed")), "cpu")
    assert caught.value.field == "text"
