"""Text-generation throughput of the inference server at 1, 8, 32 and 128 concurrent streaming requests, against
naive sequential ``model.generate`` on the same model in the same run.

By default the model is a small Llama built from a config (random weights, a BPE tokenizer trained on the
fly, about 4M parameters): on a CPU-only machine a realistically sized model would measure the matrix
multiplies, not the serving. ``CXMPUTE_BENCH_INFERENCE_MODEL`` names another (a local path or cached hub
id), for a GPU machine. ``CXMPUTE_BENCH_INFERENCE_TOKENS`` sets the tokens per request (default 64).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.results import table, write_section

TOKENS = int(os.environ.get("CXMPUTE_BENCH_INFERENCE_TOKENS", "64"))
LEVELS = (1, 8, 32, 128)
MAX_BATCH = 128  # sequences the server decodes per step: every stream of the highest level at once
BASELINE_RUNS = 8
PROMPTS = [
    "Providers publish provisions at a price",
    "The quick brown fox",
    "Memory stores passages and",
    "Workflows compose agents into",
    "A lease is metered per second and",
    "Storage splits files into chunks",
]


def build_small_llm(path: Path) -> Path:
    """A ~4M-parameter Llama with a tokenizer trained on a small corpus, saved for ``from_pretrained``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)  # the same weights every run, so runs generate the same texts

    corpus = [p + " " + w for p in PROMPTS for w in ("network", "compute", "tokens", "models", "agents")] * 40
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=2000,
            special_tokens=["<unk>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    tokenizer.save_pretrained(path)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def sequential_generate(model, tokenizer, runs: int) -> tuple[int, float]:
    """The baseline: one prompt at a time through ``model.generate``, as a naive server would."""
    import torch

    tokens, start = 0, time.perf_counter()
    for i in range(runs):
        inputs = tokenizer(PROMPTS[i % len(PROMPTS)], return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        new = out[0, inputs["input_ids"].shape[1] :]
        tokens += int((new != tokenizer.eos_token_id).sum())
    return tokens, time.perf_counter() - start


async def _one(http, model: str, prompt: str) -> tuple[int, float]:
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first = None
    tokens = 0
    async with http.stream("POST", "/v1/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif first is None:
                first = time.perf_counter() - start
    return tokens, first or 0.0


def _per_client(level: int) -> int:
    return max(2, BASELINE_RUNS // level)


async def concurrent(base_url: str, model: str, level: int) -> tuple[int, float, float]:
    """``level`` clients, each sending streaming requests in turn (at least 8 in all, at least 2 each):
    tokens, seconds, median time to first token."""
    from cxmpute.http import async_client

    # a connection per client: the default pool (100) would queue the highest level's streams in the client
    limits = httpx.Limits(max_connections=level, max_keepalive_connections=level)
    async with async_client(base_url, timeout=600.0, limits=limits) as http:

        async def client(i: int) -> list[tuple[int, float]]:
            return [await _one(http, model, PROMPTS[(i + r) % len(PROMPTS)]) for r in range(_per_client(level))]

        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(client(i) for i in range(level))) for r in rs]
        elapsed = time.perf_counter() - start
    firsts = sorted(f for _, f in results)
    return sum(t for t, _ in results), elapsed, firsts[len(firsts) // 2]


def _start_server(source: str, device: str, home: Path) -> tuple[subprocess.Popen, str]:
    """``cxmpute inference serve`` in its own process, as a provider runs it."""
    from cxmpute.http import client
    from cxmpute.ports import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxmpute.cli",
            "inference",
            "serve",
            "--model",
            f"bench={source}",
            "--port",
            str(port),
            "--device",
            device,
            "--max-batch",
            str(MAX_BATCH),
        ],
        env={**os.environ, "CXMPUTE_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    with client(url, timeout=2.0) as http:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if http.get("/healthz").status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the inference server did not start")


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from compute.inference.backends import default_device

    hf_logging.set_verbosity_error()
    device = default_device()
    source = os.environ.get("CXMPUTE_BENCH_INFERENCE_MODEL")
    with tempfile.TemporaryDirectory() as tmp:
        if source is None:
            source = str(build_small_llm(Path(tmp) / "small-llm"))
            label = "small Llama built from a config (random weights)"
        else:
            label = source
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype="auto").to(device).eval()
        params = sum(p.numel() for p in model.parameters())
        sequential_generate(model, tokenizer, 1)  # warm-up

        proc, url = _start_server(source, device, Path(tmp) / "home")
        # The baseline runs before each level and once after the last; its fastest run is the one compared
        # against, so a busy moment of the machine cannot flatter the server.
        baselines, levels = [], []
        try:
            asyncio.run(concurrent(url, "bench", 1))  # warm-up
            for level in LEVELS:
                baselines.append(sequential_generate(model, tokenizer, BASELINE_RUNS))
                levels.append((level, *asyncio.run(concurrent(url, "bench", level))))
        finally:
            proc.terminate()
            proc.wait(30)
        baselines.append(sequential_generate(model, tokenizer, BASELINE_RUNS))
    base_tokens, base_s = max(baselines, key=lambda b: b[0] / b[1])
    base_rate = base_tokens / base_s
    rows = [
        [
            "sequential `model.generate` (baseline)",
            1,
            BASELINE_RUNS,
            base_tokens,
            round(base_s, 2),
            round(base_rate, 1),
            "—",
            "1.00",
        ]
    ]
    for level, tokens, seconds, first in levels:
        rate = tokens / seconds
        rows.append(
            [
                f"inference server, {level} concurrent",
                level,
                level * _per_client(level),
                tokens,
                round(seconds, 2),
                round(rate, 1),
                round(first * 1000, 1),
                f"{rate / base_rate:.2f}",
            ]
        )
    body = table(
        ["what", "concurrent", "requests", "tokens", "seconds", "tokens/s", "median first token ms", "x baseline"], rows
    )
    write_section(
        "Inference throughput",
        f"""Model: {label}, {params / 1e6:.1f}M parameters, on {device};
{TOKENS} new tokens per request, greedy. The baseline ({BASELINE_RUNS} prompts one after another through
`model.generate`, in the benchmark's process) runs before each server level and after the last; the
fastest of those runs is the one reported and compared against. The server is `cxmpute inference serve`
in its own process, loading the same folder; its requests stream over HTTP (`/v1/completions`,
`stream: true`) from `level` clients that each send requests in turn (at least {BASELINE_RUNS} in all, at
least 2 each); its decode loop batches them continuously (up to {MAX_BATCH} sequences per step).

{body}

The machine is shared, so absolute figures move between runs; the ratios are the figures to read. A
single stream pays for HTTP, server-sent events and incremental detokenization on top of each step, so
it trails a bare `generate` call; concurrent streams share each step. On a CPU a model this small is
bound by per-step overhead, which batching shares across sequences; a realistically sized model belongs
on a GPU (`CXMPUTE_BENCH_INFERENCE_MODEL`), where the same batching keeps the device busy.""",
    )
