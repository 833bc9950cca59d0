"""Continuous batching of text generation: one decode loop serves every concurrent request.

A background thread owns the model. Each step it admits the requests that arrived (each prefilled on its
own, so its keys and values carry its true positions), left-pads the running batch's key/value cache to a
common length, and advances every running sequence by one token in a single forward pass. Finished or
cancelled sequences leave the batch between steps; new ones join without waiting for the others to end.
Tokens reach each request's asyncio queue as soon as they are sampled. Each request's logits pass through
its own processors before sampling: its logit bias, its presence and frequency penalties, and a
:class:`TokenConstraint` (a grammar) when it carries one, so its tokens are sampled only among those the
constraint allows. A request that asks for log-probabilities gets each token as a :class:`Scored`.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import torch

from cxmpute.logging import get_logger

log = get_logger(__name__)

_DONE = object()


NEVER = -9999.0  # OpenAI's log-probability for a token that cannot be chosen (JSON has no -inf)


@dataclass
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    top_logprobs: int | None = None  # None: no log-probabilities; k: each token's with its k likeliest rivals

    @property
    def penalized(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty)


@dataclass
class Scored:
    """A sampled token with its log-probability and the likeliest tokens at its step, best first."""

    token: int
    logprob: float
    top: list[tuple[int, float]]


class TokenConstraint(Protocol):
    """Limits which tokens one request may decode next (e.g. to follow a JSON schema)."""

    def allowed(self) -> torch.Tensor:
        """A boolean mask over the tokenizer's vocabulary; the end-of-sequence token is allowed once done.
        Raises RuntimeError when the constraint has failed."""

    def accept(self, token: int) -> None:
        """Advance past ``token``, which the last mask allowed; RuntimeError if it cannot."""


@dataclass
class Finished:
    """The last event of a request: why it stopped and how many tokens it used."""

    reason: str  # "stop" (end of sequence) or "length" (token limit)
    prompt_tokens: int
    completion_tokens: int


@dataclass(eq=False)
class _Seq:
    prompt: list[int]
    sampling: Sampling
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue
    generated: int = 0
    done: bool = False
    cancelled: bool = False
    generator: torch.Generator | None = field(default=None, repr=False)
    constraint: TokenConstraint | None = field(default=None, repr=False)
    counts: torch.Tensor | None = field(default=None, repr=False)  # times each token was generated, if penalized

    @property
    def processed(self) -> bool:
        """Whether this request's logits need changing before sampling."""
        return bool(self.constraint or self.sampling.logit_bias or self.sampling.penalized)

    def emit(self, item: object) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)


class BatchingGenerator:
    """Streams tokens for many concurrent prompts from one causal LM, batched continuously."""

    def __init__(
        self,
        model,
        eos_token_ids: set[int],
        *,
        max_batch: int = 32,
        gather_ms: float = 5.0,
        context_limit: int | None = None,
    ):
        self.model = model
        self.device = next(model.parameters()).device
        self.eos = eos_token_ids
        self.max_batch = max_batch
        self.gather_s = gather_ms / 1000
        self.context_limit = context_limit
        params = inspect.signature(model.forward).parameters
        # transformers renamed past_key_values to cache; pass whichever this model's forward takes
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._pending: queue.Queue[_Seq] = queue.Queue()
        self._running: list[_Seq] = []
        self._cache = None
        self._mask: torch.Tensor | None = None
        self._last: torch.Tensor | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cxmpute-batcher", daemon=True)
        self._thread.start()

    @torch.inference_mode()
    def check(self) -> None:
        """Refuse a model whose key/value cache this batcher cannot pad and stack (sliding-window or
        recurrent layers), at load time rather than on the first request."""
        out = self.model(input_ids=torch.zeros((1, 2), dtype=torch.long, device=self.device), use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values
        layers = getattr(cache, "layers", None)
        if not layers or any(type(layer).__name__ != "DynamicLayer" for layer in layers):
            kinds = sorted({type(layer).__name__ for layer in layers or []}) or [type(cache).__name__]
            raise ValueError(f"continuous batching needs a plain key/value cache; this model uses {', '.join(kinds)}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    async def stream(
        self, prompt: list[int], sampling: Sampling, constraint: TokenConstraint | None = None
    ) -> AsyncIterator[int | Scored | Finished]:
        """Yield each new token id (a :class:`Scored` when ``sampling`` asks for log-probabilities), then one
        :class:`Finished`. Leaving early cancels the request."""
        if not prompt:
            raise ValueError("empty prompt")
        seq = _Seq(
            prompt=list(prompt),
            sampling=sampling,
            loop=asyncio.get_running_loop(),
            out=asyncio.Queue(),
            constraint=constraint,
        )
        if sampling.seed is not None:
            seq.generator = torch.Generator(device=self.device).manual_seed(sampling.seed)
        self._pending.put(seq)
        try:
            while True:
                item = await seq.out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            seq.cancelled = True

    # ---- the decode loop (background thread) ----------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._admit()
                if self._running:
                    self._step()
                    self._retire()
            except Exception as exc:  # a failed step fails the requests in it, never the server
                log.exception("generation step failed")
                for seq in self._running:
                    _fail(seq, exc)
                self._running, self._cache, self._mask, self._last = [], None, None, None
        for seq in self._running:  # closed: nobody waits forever
            _fail(seq, RuntimeError("the model was unloaded"))
        while not self._pending.empty():
            _fail(self._pending.get_nowait(), RuntimeError("the model was unloaded"))

    def _admit(self) -> None:
        room = self.max_batch - len(self._running)
        if room <= 0:
            return
        new: list[_Seq] = []
        try:
            if not self._running:  # idle: sleep until work arrives, then gather briefly for company
                first = self._pending.get(timeout=0.1)
                new.append(first)
                deadline = time.monotonic() + self.gather_s
                while len(new) < room and (left := deadline - time.monotonic()) > 0:
                    new.append(self._pending.get(timeout=left))
            while len(new) < room:
                new.append(self._pending.get_nowait())
        except queue.Empty:
            pass
        for seq in new:
            if seq.cancelled:
                continue
            try:
                self._join(seq)
            except Exception as exc:  # this prompt failed (e.g. out of memory): the batch goes on
                log.exception("prefill failed")
                _fail(seq, exc)
        self._retire()

    @torch.inference_mode()
    def _join(self, seq: _Seq) -> None:
        ids = seq.prompt
        limit = self.context_limit
        if limit:
            ids = ids[-max(1, limit - 1) :]
        input_ids = torch.tensor([ids], device=self.device)
        out = self.model(input_ids=input_ids, use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values
        ((token, score),) = self._sample(out.logits[:, -1, :], [seq])
        seq.prompt = ids
        mask = torch.ones((1, len(ids)), dtype=torch.long, device=self.device)
        if self._cache is None:
            self._cache, self._mask = cache, mask
            self._last = torch.tensor([[token]], device=self.device)
        else:
            self._cache, self._mask = _concat(self._cache, self._mask, cache, mask)
            self._last = torch.cat([self._last, torch.tensor([[token]], device=self.device)])
        self._running.append(seq)
        self._take(seq, token, score)

    @torch.inference_mode()
    def _step(self) -> None:
        mask = torch.cat([self._mask, torch.ones((len(self._running), 1), dtype=torch.long, device=self.device)], 1)
        positions = mask.sum(dim=1, keepdim=True) - 1
        out = self.model(
            input_ids=self._last,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_kw: self._cache},
        )
        self._cache = getattr(out, "cache", None) or out.past_key_values
        self._mask = mask
        sampled = self._sample(out.logits[:, -1, :], self._running)
        self._last = torch.tensor([token for token, _ in sampled], device=self.device).unsqueeze(1)
        for seq, (token, score) in zip(self._running, sampled):
            self._take(seq, token, score)

    def _sample(self, logits: torch.Tensor, seqs: list[_Seq]) -> list[tuple[int, Scored | None]]:
        """Each sequence's next token, and its score when the sequence asked for log-probabilities."""
        if any(seq.processed for seq in seqs):
            logits = logits.clone()
            for i, seq in enumerate(seqs):
                if seq.processed:
                    try:
                        _process(logits[i], seq)
                    except RuntimeError as exc:  # one request's grammar failed: the batch goes on
                        _fail(seq, exc)
        greedy = logits.argmax(dim=-1).tolist()
        sampled: list[tuple[int, Scored | None]] = []
        for i, seq in enumerate(seqs):
            s = seq.sampling
            if s.temperature <= 0:
                token = greedy[i]
            else:
                probs = torch.softmax(logits[i].float() / s.temperature, dim=-1)
                if s.top_p < 1.0:
                    sorted_p, order = probs.sort(descending=True)
                    keep = sorted_p.cumsum(0) - sorted_p < s.top_p
                    probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
                token = int(torch.multinomial(probs, 1, generator=seq.generator))
            sampled.append((token, None if s.top_logprobs is None else _score(logits[i], token, s.top_logprobs)))
        return sampled

    def _take(self, seq: _Seq, token: int, score: Scored | None = None) -> None:
        """Hand ``seq`` its new token, or finish it."""
        if seq.cancelled or seq.done:
            seq.done = True
            return
        seq.generated += 1
        eos = token in self.eos
        if not eos:
            if seq.constraint:
                try:
                    seq.constraint.accept(token)
                except RuntimeError as exc:
                    _fail(seq, exc)
                    return
            if seq.counts is not None:
                seq.counts[token] += 1
            seq.emit(score or token)
        used = len(seq.prompt) + seq.generated
        if eos or seq.generated >= seq.sampling.max_new_tokens or (self.context_limit and used >= self.context_limit):
            seq.done = True
            seq.emit(Finished("stop" if eos else "length", len(seq.prompt), seq.generated - int(eos)))
            seq.emit(_DONE)

    def _retire(self) -> None:
        """Drop finished and cancelled sequences from the batch."""
        keep = [i for i, seq in enumerate(self._running) if not (seq.done or seq.cancelled)]
        if len(keep) == len(self._running):
            return
        if not keep:
            self._running, self._cache, self._mask, self._last = [], None, None, None
            return
        index = torch.tensor(keep, device=self.device)
        self._cache.batch_select_indices(index)
        self._mask, self._last = self._mask[index], self._last[index]
        self._running = [self._running[i] for i in keep]
        self._trim()

    def _trim(self) -> None:
        """Drop the leading cache columns no remaining sequence attends to."""
        used = self._mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else 0
        if start:
            for layer in self._cache.layers:
                layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]
            self._mask = self._mask[:, start:]


def _process(logits: torch.Tensor, seq: _Seq) -> None:
    """Apply, in place, ``seq``'s logit bias, then its penalties (OpenAI's: each generated token's logit
    lowered by frequency × its count, plus presence once it occurred), then its constraint's mask."""
    s = seq.sampling
    if s.logit_bias:
        ids = torch.tensor(list(s.logit_bias), device=logits.device)
        logits[ids] += torch.tensor(list(s.logit_bias.values()), dtype=logits.dtype, device=logits.device)
    if s.penalized:
        if seq.counts is None:
            seq.counts = torch.zeros_like(logits, dtype=torch.float32)
        counts = seq.counts.to(logits.dtype)
        logits -= counts * s.frequency_penalty + (counts > 0).to(logits.dtype) * s.presence_penalty
    if seq.constraint:
        _mask(logits, seq.constraint.allowed())


def _score(logits: torch.Tensor, token: int, top: int) -> Scored:
    """``token``'s log-probability under the processed logits (before temperature), with the ``top`` likeliest."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    best = logprobs.topk(min(top, len(logprobs))) if top else None
    rivals = [] if best is None else [(int(i), _finite(float(v))) for v, i in zip(*best)]
    return Scored(token, _finite(float(logprobs[token])), rivals)


def _finite(logprob: float) -> float:
    return max(logprob, NEVER)


def _mask(logits: torch.Tensor, allowed: torch.Tensor) -> None:
    """Rule out, in place, the tokens ``allowed`` forbids; ids past the tokenizer's vocabulary (embedding
    rows some models pad their vocabulary with) are never allowed."""
    allowed = allowed.to(logits.device)
    n = min(len(allowed), len(logits))
    logits[:n].masked_fill_(~allowed[:n], float("-inf"))
    logits[n:] = float("-inf")


def _fail(seq: _Seq, exc: Exception) -> None:
    seq.done = True
    seq.emit(RuntimeError(f"generation failed: {exc}"))
    seq.emit(_DONE)


def _concat(cache_a, mask_a: torch.Tensor, cache_b, mask_b: torch.Tensor):
    """Stack two key/value caches along the batch, left-padding the shorter with masked zeros."""
    length = max(mask_a.shape[1], mask_b.shape[1])
    mask = torch.cat([_pad_left(mask_a, length, 1), _pad_left(mask_b, length, 1)])
    for a, b in zip(cache_a.layers, cache_b.layers):
        a.keys = torch.cat([_pad_left(a.keys, length, 2), _pad_left(b.keys, length, 2)])
        a.values = torch.cat([_pad_left(a.values, length, 2), _pad_left(b.values, length, 2)])
    return cache_a, mask


def _pad_left(t: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)
