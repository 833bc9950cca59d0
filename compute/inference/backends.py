"""The models a provider's inference server holds, one class per kind, each loaded by hub id or local path.

- ``text``: a transformers causal LM behind the continuous batcher (:mod:`compute.inference.batching`);
- ``embedding``: a sentence-transformers model;
- ``image``: a diffusers pipeline (:mod:`compute.inference.diffusion`);
- ``speech``: the text-to-speech backend (:mod:`compute.inference.speech`).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from compute.errors import ComputeError
from compute.inference import structured
from compute.inference.batching import BatchingGenerator, Finished, Sampling, Scored

if TYPE_CHECKING:
    import llguidance

Kind = Literal["text", "embedding", "image", "speech"]
KINDS: tuple[str, ...] = ("text", "embedding", "image", "speech")


class InferenceError(ComputeError):
    pass


@dataclass
class TokenLogprob:
    """One generated token as text, with its log-probability and the likeliest tokens at its step."""

    text: str
    logprob: float
    top: list[tuple[str, float]]


def default_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class ModelSpec:
    """``name=source`` on the command line: serve ``source`` (hub id, path or ``archive:NAME``) as ``name``;
    without a name, a hub id or archive name is served as itself and a path as its last part."""

    kind: Kind
    source: str
    name: str

    @classmethod
    def parse(cls, kind: Kind, text: str) -> ModelSpec:
        name, sep, source = text.partition("=")
        if not sep:
            source = text
            if text.startswith("archive:"):
                name = text.removeprefix("archive:")
            elif text.startswith(("/", ".", "~")):
                name = text.rstrip("/").rsplit("/", 1)[-1]
            else:
                name = text
        if not name or not source:
            raise InferenceError(f"{text!r}: give SOURCE or NAME=SOURCE", field=kind)
        return cls(kind=kind, source=source, name=name)


class TextModel:
    kind: Kind = "text"

    def __init__(self, spec: ModelSpec, device: str, *, max_batch: int = 32, gather_ms: float = 5.0):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.name = spec.name
        self.tokenizer = AutoTokenizer.from_pretrained(spec.source)
        self.model = AutoModelForCausalLM.from_pretrained(spec.source, dtype="auto").to(device).eval()
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        limit = getattr(self.model.config, "max_position_embeddings", None) or getattr(
            self.model.config, "n_positions", None
        )
        self.context_limit: int | None = limit
        self.eos_ids = eos_ids
        self.generator = BatchingGenerator(
            self.model, eos_ids, max_batch=max_batch, gather_ms=gather_ms, context_limit=limit
        )
        try:
            self.generator.check()
        except ValueError:
            self.generator.close()
            raise

    def close(self) -> None:
        self.generator.close()

    @property
    def supports_tools(self) -> bool:
        """Whether the chat template renders tools and teaches the ``<tool_call>`` format calls are read in."""
        template = self.tokenizer.chat_template
        return isinstance(template, str) and "tools" in template and structured.TOOL_OPEN in template

    def chat_prompt(self, turns: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[int]:
        """``turns``: messages as chat templates take them (see :func:`structured.chat_turns`)."""
        if self.tokenizer.chat_template:
            ids = self.tokenizer.apply_chat_template(turns, tools=tools, tokenize=True, add_generation_prompt=True)
            return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        # base models without a chat template get a plain transcript ending on the assistant's turn
        text = "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"
        return self.encode(text)

    @cached_property
    def _grammar_tokenizer(self) -> llguidance.LLTokenizer:
        return structured.grammar_tokenizer(self.tokenizer, self.eos_ids)

    def constraint(self, grammar: str) -> structured.GrammarConstraint:
        """A fresh decoding constraint for one request (compiling it can take a moment: call off the loop)."""
        return structured.GrammarConstraint(self._grammar_tokenizer, grammar)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    @cached_property
    def vocab_size(self) -> int:
        """How many token ids the model both reads and scores (a model may pad its vocabulary past its
        tokenizer's; an id past this would fail the whole batch's step)."""
        rows = self.model.get_input_embeddings().num_embeddings
        output = self.model.get_output_embeddings()
        return rows if output is None else min(rows, output.weight.shape[0])

    def prompt_ids(self, prompt: str | list[int]) -> list[int]:
        """A completion prompt, text or token ids, as token ids."""
        if isinstance(prompt, str):
            return self.encode(prompt)
        if max(prompt) >= self.vocab_size:
            raise InferenceError(
                f"token id {max(prompt)} is outside the model's vocabulary of {self.vocab_size}",
                field="prompt",
                status_code=400,
            )
        return prompt

    def check_bias(self, bias: dict[int, float]) -> None:
        if bias and max(bias) >= self.vocab_size:
            raise InferenceError(
                f"token id {max(bias)} is outside the model's vocabulary of {self.vocab_size}",
                field="logit_bias",
                status_code=400,
            )

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    async def generate(
        self,
        prompt: list[int],
        sampling: Sampling,
        stops: list[str],
        constraint: structured.GrammarConstraint | None = None,
    ) -> AsyncIterator[str | TokenLogprob | Finished]:
        """Yield text pieces as they decode, then a :class:`Finished`; a stop string ends the text early.
        With ``sampling.top_logprobs`` set, each token's :class:`TokenLogprob` comes before the text it adds."""
        if len(prompt) > (self.context_limit or len(prompt) + 1) - 1:
            raise InferenceError(
                f"prompt of {len(prompt)} tokens does not fit the model's context of {self.context_limit}",
                field="messages",
                status_code=422,
            )
        ids: list[int] = []
        sent = ""
        scored: list[Scored] = []  # tokens whose text is not yet known: they end inside an unfinished character
        attributed = ""  # the decoded text the scored tokens so far account for
        async for item in self.generator.stream(prompt, sampling, constraint):
            finished = isinstance(item, Finished)
            if isinstance(item, Scored):
                ids.append(item.token)
                scored.append(item)
            elif not finished:
                ids.append(item)
            text = self.decode(ids)
            if not finished and text.endswith("\ufffd"):  # a multi-byte character still incomplete
                continue
            for score in self._logprobs(scored, text, attributed):
                yield score
            scored, attributed = [], text
            cut = _first_stop(text, stops, len(sent))
            if finished and cut is None:
                if len(text) > len(sent):
                    yield text[len(sent) :]
                yield item
                return
            if cut is not None:
                if cut > len(sent):
                    yield text[len(sent) : cut]
                yield Finished("stop", len(prompt), len(ids))
                return
            # hold back what could still grow into a stop string
            safe = len(text) - _partial_stop(text, stops)
            if safe > len(sent):
                yield text[len(sent) : safe]
                sent = text[:safe]

    def _logprobs(self, scored: list[Scored], text: str, attributed: str) -> list[TokenLogprob]:
        """``scored`` tokens with their text: together, what ``text`` adds to ``attributed``, so the tokens'
        texts add up to the answer; a character split over several tokens goes to the last of them."""
        if not scored:
            return []
        added = text[len(attributed) :] if text.startswith(attributed) else self.decode([s.token for s in scored])
        texts = [""] * (len(scored) - 1) + [added]
        return [
            TokenLogprob(t, s.logprob, [(self.decode([alt]), lp) for alt, lp in s.top]) for t, s in zip(texts, scored)
        ]


def _first_stop(text: str, stops: list[str], start: int) -> int | None:
    found = [i for s in stops if (i := text.find(s, max(0, start - len(s)))) >= 0]
    return min(found) if found else None


def _partial_stop(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


class EmbeddingModel:
    kind: Kind = "embedding"

    def __init__(self, spec: ModelSpec, device: str):
        from sentence_transformers import SentenceTransformer

        self.name = spec.name
        self.model = SentenceTransformer(spec.source, device=device)

    def close(self) -> None:
        pass

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(ids) for ids in self.model.tokenizer(texts)["input_ids"])

    @staticmethod
    def texts(inputs: list[str | list[int]]) -> list[str]:
        """Inputs as texts. Token ids are read as OpenAI's cl100k_base ids: that is the encoding OpenAI's
        clients (LangChain's OpenAIEmbeddings among them) tokenize embedding inputs with, whatever the model."""
        if all(isinstance(i, str) for i in inputs):
            return inputs  # type: ignore[return-value]
        import tiktoken

        try:
            encoding = tiktoken.get_encoding("cl100k_base")
        except Exception as exc:  # tiktoken fetches its encoding files once, and that can fail offline
            raise InferenceError(
                f"token-id input needs tiktoken's cl100k_base encoding, which could not be loaded: {exc}",
                field="input",
                status_code=503,
            ) from exc
        try:
            return [i if isinstance(i, str) else encoding.decode(i) for i in inputs]
        except KeyError as exc:
            raise InferenceError(
                f"input holds an id cl100k_base does not have ({exc.args[0]})", field="input", status_code=400
            ) from exc

    def embed(self, texts: list[str], dimensions: int | None, encoding: str) -> list[list[float] | str]:
        import numpy as np

        vectors = self.model.encode(texts, convert_to_numpy=True, normalize_embeddings=True).astype(np.float32)
        if dimensions is not None:
            if dimensions > vectors.shape[1]:
                raise InferenceError(
                    f"the model's vectors have {vectors.shape[1]} dimensions", field="dimensions", status_code=422
                )
            vectors = vectors[:, :dimensions]
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
        if encoding == "base64":
            return [base64.b64encode(v.tobytes()).decode() for v in vectors]
        return vectors.tolist()


class ImageModel:
    kind: Kind = "image"

    def __init__(self, spec: ModelSpec, device: str):
        from compute.inference import diffusion

        self.name, self.source = spec.name, spec.source
        diffusion.load_pipeline(spec.source, device)

    def close(self) -> None:
        pass

    def generate(self, prompt: str, n: int, size: tuple[int, int], steps: int, seed: int | None) -> list[bytes]:
        from compute.inference import diffusion

        return diffusion.generate_images(self.source, prompt, n=n, size=size, steps=steps, seed=seed)


class SpeechModel:
    kind: Kind = "speech"

    def __init__(self, spec: ModelSpec, device: str):
        self.name = spec.name

    def close(self) -> None:
        pass

    def synthesize(self, text: str, voice: str | None, fmt: str, speed: float = 1.0) -> bytes:
        """``voice``: one of OpenAI's voice names or an espeak-ng voice."""
        from compute.inference import speech

        if fmt not in speech.FORMATS:
            raise InferenceError(
                f"response_format {fmt!r} cannot be produced; choose one of {', '.join(speech.FORMATS)}",
                field="response_format",
                status_code=400,
            )
        return speech.synthesize(text, voice=speech.OPENAI_VOICES.get(voice or "", voice), format=fmt, speed=speed)


Served = TextModel | EmbeddingModel | ImageModel | SpeechModel
_CLASSES = {"text": TextModel, "embedding": EmbeddingModel, "image": ImageModel, "speech": SpeechModel}


def load(spec: ModelSpec, device: str | None = None, **options) -> Served:
    """Load one model for serving; ``options`` tune the text batcher (max_batch, gather_ms)."""
    device = default_device(device)
    try:
        if spec.kind == "text":
            return TextModel(spec, device, **options)
        return _CLASSES[spec.kind](spec, device)
    except (OSError, ValueError) as exc:
        raise InferenceError(f"cannot load {spec.source!r}: {exc}", field=spec.kind) from exc
