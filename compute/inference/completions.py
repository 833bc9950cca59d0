"""The provider server's text answers: chat and legacy completions, whole or streamed, choice by choice.

Text generation from concurrent requests is batched continuously; ``stream: true`` answers with server-sent
events in OpenAI's chunk format, the choices' pieces interleaved as they come. Both text endpoints honour ``n``,
``logprobs``, penalties and ``logit_bias``; a chat answer's tool-call blocks become OpenAI's ``tool_calls``
(parsed by :mod:`compute.inference.structured`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

from fastapi.responses import JSONResponse, Response, StreamingResponse

from compute.inference import structured
from compute.inference.backends import TextModel, TokenLogprob
from compute.inference.batching import Finished, Sampling
from compute.inference.schemas import ChatCompletionRequest, CompletionRequest, Usage, completion_id

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
T = TypeVar("T")


def sse(doc: dict | str) -> str:
    return f"data: {doc if isinstance(doc, str) else json.dumps(doc, separators=(',', ':'))}\n\n"


Piece = str | TokenLogprob | structured.CallDelta | Finished


@dataclass
class Choice:
    """One choice being generated: its index in the answer, its prompt, the text echoed before it (legacy
    completions' ``echo``) and its stream of pieces."""

    index: int
    pieces: AsyncGenerator[Piece, None]
    echo: str = ""


def start_choice(
    model: TextModel,
    body: ChatCompletionRequest | CompletionRequest,
    index: int,
    prompt: list[int],
    *,
    constraint: structured.GrammarConstraint | None = None,
    parser: structured.ToolCallParser | None = None,
    echo: str = "",
) -> Choice:
    """One choice of ``body``'s answer, generated from ``prompt``; with ``parser``, its tool-call blocks become
    calls."""
    # each choice is sampled on its own; a seed still makes the whole answer repeatable, choice by choice
    seed = None if body.seed is None else body.seed + index
    sampling = Sampling(
        max_new_tokens=body.token_limit,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=body.biases,
        top_logprobs=body.top_logprob_count,
    )
    pieces: AsyncGenerator[Piece, None] = model.generate(prompt, sampling, body.stops, constraint)
    if parser is not None:
        pieces = _with_tool_calls(pieces, parser)
    return Choice(index, pieces, echo)


async def _all(awaitables: list[Awaitable[T]]) -> list[T]:
    """Await every one concurrently; when one fails, the others are cancelled, not left running."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        await _cancel(tasks)


async def _cancel(tasks: list[asyncio.Future]) -> None:
    """Cancel ``tasks`` and wait until they have stopped, so the generators they were reading can be closed."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _close(choices: list[Choice]) -> None:
    for choice in choices:
        await choice.pieces.aclose()


def _usage(finished: list[Finished], n: int) -> Usage:
    """Each prompt counted once however many choices continue it, each choice's tokens all counted."""
    prompt = sum(f.prompt_tokens for i, f in enumerate(finished) if i % n == 0)
    completion = sum(f.completion_tokens for f in finished)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _chat_logprobs(scores: list[TokenLogprob]) -> dict:
    def entry(text: str, logprob: float) -> dict:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {
        "content": [{**entry(s.text, s.logprob), "top_logprobs": [entry(t, lp) for t, lp in s.top]} for s in scores],
        "refusal": None,
    }


def _completion_logprobs(scores: list[TokenLogprob], offset: int) -> dict:
    """The legacy shape; ``offset``: where the first token starts in the choice's text."""
    offsets = []
    for s in scores:
        offsets.append(offset)
        offset += len(s.text)
    return {
        "tokens": [s.text for s in scores],
        "token_logprobs": [s.logprob for s in scores],
        # alternatives that decode alike keep the likeliest's log-probability
        "top_logprobs": [dict(reversed(s.top)) for s in scores],
        "text_offset": offsets,
    }


def _within(scores: list[TokenLogprob], length: int) -> list[TokenLogprob]:
    """The tokens that start inside the first ``length`` characters: those of a cut-off stop string go."""
    kept, offset = [], 0
    for s in scores:
        if offset >= length:
            break
        kept.append(s)
        offset += len(s.text)
    return kept


async def respond(
    body: ChatCompletionRequest | CompletionRequest,
    choices: list[Choice],
    *,
    chat: bool,
) -> Response:
    """The answer to ``body``: one JSON document, or its chunks as server-sent events when it streams."""
    ident = completion_id("chatcmpl" if chat else "cmpl")
    created = int(time.time())
    try:
        # every choice's first piece is awaited here, so a bad request fails with a status code before any event
        firsts = await _all([anext(c.pieces) for c in choices])
    except BaseException:
        await _close(choices)
        raise
    head = {
        "id": ident,
        "object": "chat.completion" if chat else "text_completion",
        "created": created,
        "model": body.model,
    }
    if not body.stream:
        try:
            answers = await _all([_rest(c, first) for c, first in zip(choices, firsts)])
        finally:
            await _close(choices)
        usage = _usage([items[-1] for items in answers], body.n)  # type: ignore[misc]
        return JSONResponse(
            {
                **head,
                "choices": [_final_choice(body, c, items, chat=chat) for c, items in zip(choices, answers)],
                "usage": usage.model_dump(),
            }
        )
    head["object"] = "chat.completion.chunk" if chat else "text_completion"
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        _events(body, choices, firsts, head, chat=chat, include_usage=include_usage),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _rest(choice: Choice, first: Piece) -> list[Piece]:
    if isinstance(first, Finished):
        return [first]
    return [first] + [item async for item in choice.pieces]


def _final_choice(
    body: ChatCompletionRequest | CompletionRequest, choice: Choice, items: list[Piece], *, chat: bool
) -> dict:
    finished = items[-1]
    assert isinstance(finished, Finished)
    text = "".join(item for item in items if isinstance(item, str))
    scores = _within([item for item in items if isinstance(item, TokenLogprob)], len(text))
    asked = body.top_logprob_count is not None
    if not chat:
        logprobs = _completion_logprobs(scores, 0) if asked else None
        return {
            "index": choice.index,
            "text": choice.echo + text,
            "finish_reason": finished.reason,
            "logprobs": logprobs,
        }
    deltas = [item for item in items if isinstance(item, structured.CallDelta)]
    calls = [call.model_dump() for call in structured.collect_calls(deltas)]
    message: dict = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return {
        "index": choice.index,
        "message": message,
        "finish_reason": finished.reason,
        "logprobs": _chat_logprobs(scores) if asked else None,
    }


async def _events(
    body: ChatCompletionRequest | CompletionRequest,
    choices: list[Choice],
    firsts: list[Piece],
    head: dict,
    *,
    chat: bool,
    include_usage: bool,
) -> AsyncIterator[str]:
    """The choices' pieces as server-sent chunks, interleaved as they come, each chunk naming its choice."""
    merged: asyncio.Queue[tuple[Choice, Piece | Exception]] = asyncio.Queue()

    async def pump(choice: Choice, item: Piece) -> None:
        try:
            while True:
                await merged.put((choice, item))
                if isinstance(item, Finished):
                    return
                item = await anext(choice.pieces)
        except Exception as exc:  # noqa: BLE001 - handed to the reader, which fails the stream with it
            await merged.put((choice, exc))

    def chunk(choice: Choice, delta: dict | str, reason: str | None = None, logprobs: dict | None = None) -> str:
        if chat:
            part = {"index": choice.index, "delta": delta, "finish_reason": reason, "logprobs": logprobs}
        else:
            part = {"index": choice.index, "text": delta, "finish_reason": reason, "logprobs": logprobs}
        return sse({**head, "choices": [part]})

    asked = body.top_logprob_count is not None
    tasks = [asyncio.ensure_future(pump(c, first)) for c, first in zip(choices, firsts)]
    try:
        for choice in choices:
            if chat:
                yield chunk(choice, {"role": "assistant", "content": ""})
            elif choice.echo:
                yield chunk(choice, choice.echo)
        # log-probabilities wait for the text they belong to: a stop string's tokens never reach a chunk
        waiting: dict[int, list[TokenLogprob]] = {c.index: [] for c in choices}
        offsets = {c.index: len(c.echo) for c in choices}
        finished: dict[int, Finished] = {}
        while len(finished) < len(choices):
            choice, item = await merged.get()
            if isinstance(item, Exception):
                raise item
            if isinstance(item, TokenLogprob):
                waiting[choice.index].append(item)
            elif isinstance(item, Finished):
                finished[choice.index] = item
                yield chunk(choice, {} if chat else "", item.reason)
            elif isinstance(item, structured.CallDelta):
                yield chunk(choice, {"tool_calls": [_tool_call_delta(item)]})
            else:
                scores, waiting[choice.index] = waiting[choice.index], []
                logprobs = None
                if asked:
                    logprobs = _chat_logprobs(scores) if chat else _completion_logprobs(scores, offsets[choice.index])
                offsets[choice.index] += len(item)
                yield chunk(choice, {"content": item} if chat else item, logprobs=logprobs)
        if include_usage:
            usage = _usage([finished[c.index] for c in choices], body.n)
            yield sse({**head, "choices": [], "usage": usage.model_dump()})
        yield sse("[DONE]")
    finally:
        await _cancel(tasks)
        await _close(choices)


async def _with_tool_calls(
    pieces: AsyncGenerator[Piece, None],
    parser: structured.ToolCallParser,
) -> AsyncGenerator[Piece, None]:
    """``pieces`` with the model's tool-call blocks turned into calls; an answer that ends after calls
    finishes as "tool_calls", as OpenAI's do."""
    try:
        async for piece in pieces:
            if isinstance(piece, TokenLogprob):
                yield piece
            elif not isinstance(piece, Finished):
                for item in parser.feed(piece):
                    yield item
                continue
            for item in parser.close():
                yield item
            if parser.calls and piece.reason == "stop":
                piece = Finished("tool_calls", piece.prompt_tokens, piece.completion_tokens)
            yield piece
    finally:
        await pieces.aclose()


def _tool_call_delta(delta: structured.CallDelta) -> dict:
    """OpenAI's streamed form: a call's first delta names it, the rest carry only more arguments."""
    if delta.id is None:
        return {"index": delta.index, "function": {"arguments": delta.arguments}}
    return {
        "index": delta.index,
        "id": delta.id,
        "type": "function",
        "function": {"name": delta.name, "arguments": delta.arguments},
    }
