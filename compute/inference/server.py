"""The provider's inference server: an OpenAI-compatible FastAPI app over the models it holds.

Paths match OpenAI's (``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/images/generations``, ``/v1/audio/speech``), so the platform's gateway, or any OpenAI client, talks
to it directly. Text generation from concurrent requests is batched continuously; ``stream: true``
answers with server-sent events in OpenAI's chunk format. Chat honours ``tools``, ``tool_choice`` and
``response_format`` through :mod:`compute.inference.structured`.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import asynccontextmanager

import anyio
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from compute.inference import structured
from compute.inference.backends import (
    EmbeddingModel,
    ImageModel,
    InferenceError,
    Served,
    SpeechModel,
    TextModel,
)
from compute.inference.batching import Finished, Sampling
from compute.inference.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImageRequest,
    ModelCard,
    ModelList,
    SpeechRequest,
    Usage,
    completion_id,
    error_body,
)
from cxmpute import __version__
from cxmpute.errors import CxmputeError

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg",
               "opus": "audio/opus", "aac": "audio/aac", "pcm": "audio/pcm"}


def sse(doc: dict | str) -> str:
    return f"data: {doc if isinstance(doc, str) else json.dumps(doc, separators=(',', ':'))}\n\n"


def create_app(models: Iterable[Served], api_key: str | None = None) -> FastAPI:
    """The app serving ``models``; with ``api_key`` set, every call but /healthz must present it."""
    served: dict[str, Served] = {m.name: m for m in models}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for model in served.values():
            model.close()

    app = FastAPI(title="Cxmpute inference server", version=__version__, lifespan=lifespan,
                  description="An OpenAI-compatible server for the models this provider serves.")

    def authorized(authorization: str | None = Header(None, description="Bearer <key>, when the server has one"),
                   ) -> None:
        if api_key is None:
            return
        given = (authorization or "").partition(" ")[2].strip()
        if not secrets.compare_digest(given.encode(), api_key.encode()):
            raise InferenceError("missing or wrong API key", field="authorization", status_code=401)

    def pick(name: str, kind: type) -> Served:
        model = served.get(name)
        if model is None:
            raise InferenceError(f"model {name!r} is not served here; serving: {', '.join(sorted(served)) or 'none'}",
                                 field="model", status_code=404)
        if not isinstance(model, kind):
            raise InferenceError(f"model {name!r} is a {model.kind} model", field="model", status_code=400)
        return model

    @app.exception_handler(CxmputeError)
    async def _error(_: Request, exc: CxmputeError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, param=exc.field), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [(".".join(str(p) for p in e["loc"] if p != "body"), e["msg"]) for e in exc.errors()]
        message = "; ".join(f"{field or 'body'}: {msg}" for field, msg in problems)
        return JSONResponse(error_body(message, param=problems[0][0] if problems else None), 422)

    @app.get("/healthz", summary="Liveness")
    def healthz() -> dict:
        return {"ok": True, "models": len(served)}

    @app.get("/v1/models", summary="The models this server serves", dependencies=[Depends(authorized)])
    def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=name, kind=m.kind) for name, m in sorted(served.items())])

    @app.post("/v1/chat/completions", summary="Chat completion (stream: true for server-sent events)",
              dependencies=[Depends(authorized)])
    async def chat(body: ChatCompletionRequest) -> Response:
        model = pick(body.model, TextModel)
        try:
            plan = await anyio.to_thread.run_sync(structured.plan_chat, body, model.supports_tools)
            prompt = model.chat_prompt(structured.chat_turns(body.messages), plan.template_tools)
            constraint = await anyio.to_thread.run_sync(model.constraint, plan.grammar) if plan.grammar else None
        except structured.StructuredError as exc:
            raise InferenceError(str(exc), field=exc.field, status_code=400) from exc
        return await _generate(model, body, prompt, chat=True, constraint=constraint, parser=plan.parser())

    @app.post("/v1/completions", summary="Text completion (stream: true for server-sent events)",
              dependencies=[Depends(authorized)])
    async def complete(body: CompletionRequest) -> Response:
        model = pick(body.model, TextModel)
        return await _generate(model, body, model.encode(body.prompt), chat=False)

    @app.post("/v1/embeddings", summary="Embedding vectors of one or more texts", dependencies=[Depends(authorized)])
    async def embeddings(body: EmbeddingRequest) -> dict:
        model = pick(body.model, EmbeddingModel)
        vectors = await anyio.to_thread.run_sync(model.embed, body.input, body.dimensions, body.encoding_format)
        tokens = model.count_tokens(body.input)
        return {"object": "list", "model": body.model,
                "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/images/generations", summary="Images from a prompt (PNG)", dependencies=[Depends(authorized)])
    async def images(body: ImageRequest) -> dict:
        model = pick(body.model, ImageModel)
        pngs = await anyio.to_thread.run_sync(model.generate, body.prompt, body.n, body.dimensions, body.steps,
                                              body.seed)
        encoded = [base64.b64encode(png).decode() for png in pngs]
        key = "b64_json" if body.response_format == "b64_json" else "url"
        prefix = "" if key == "b64_json" else "data:image/png;base64,"
        return {"created": int(time.time()), "data": [{key: prefix + e} for e in encoded]}

    @app.post("/v1/audio/speech", summary="Speech audio of a text", dependencies=[Depends(authorized)],
              response_class=Response)
    async def speech(body: SpeechRequest) -> Response:
        model = pick(body.model, SpeechModel)
        audio = await anyio.to_thread.run_sync(model.synthesize, body.input, body.voice, body.response_format)
        return Response(audio, media_type=AUDIO_TYPES.get(body.response_format, "application/octet-stream"))

    return app


async def _generate(model: TextModel, body: ChatCompletionRequest | CompletionRequest, prompt: list[int],
                    *, chat: bool, constraint: structured.GrammarConstraint | None = None,
                    parser: structured.ToolCallParser | None = None) -> Response:
    sampling = Sampling(max_new_tokens=body.token_limit, temperature=body.temperature, top_p=body.top_p,
                        seed=body.seed)
    ident = completion_id("chatcmpl" if chat else "cmpl")
    created = int(time.time())
    pieces: AsyncGenerator[str | structured.CallDelta | Finished, None]
    pieces = model.generate(prompt, sampling, body.stops, constraint)
    if parser is not None:
        pieces = _with_tool_calls(pieces, parser)
    # The first piece is awaited here, so a bad request fails with a status code before any event is sent.
    first = await anext(pieces)
    if not body.stream:
        items = [first] if isinstance(first, Finished) else [first] + [item async for item in pieces]
        finished = items[-1]
        text = "".join(item for item in items if isinstance(item, str))
        deltas = [item for item in items if isinstance(item, structured.CallDelta)]
        calls = [call.model_dump() for call in structured.collect_calls(deltas)]
        if not chat and body.echo:
            text = body.prompt + text
        usage = Usage(prompt_tokens=finished.prompt_tokens, completion_tokens=finished.completion_tokens,
                      total_tokens=finished.prompt_tokens + finished.completion_tokens).model_dump()
        if chat:
            message = {"role": "assistant", "content": text or (None if calls else "")}
            if calls:
                message["tool_calls"] = calls
            choice = {"index": 0, "message": message, "finish_reason": finished.reason, "logprobs": None}
            return JSONResponse({"id": ident, "object": "chat.completion", "created": created, "model": body.model,
                                 "choices": [choice], "usage": usage})
        choice = {"index": 0, "text": text, "finish_reason": finished.reason, "logprobs": None}
        return JSONResponse({"id": ident, "object": "text_completion", "created": created, "model": body.model,
                             "choices": [choice], "usage": usage})

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(item: str | structured.CallDelta | None, reason: str | None = None, role: bool = False) -> dict:
        if chat:
            if role:
                delta: dict = {"role": "assistant", "content": item or ""}
            elif isinstance(item, structured.CallDelta):
                delta = {"tool_calls": [_tool_call_delta(item)]}
            else:
                delta = {} if item is None else {"content": item}
            choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": item or "", "finish_reason": reason, "logprobs": None}
        return {"id": ident, "object": kind, "created": created, "model": body.model, "choices": [choice]}

    async def events() -> AsyncIterator[str]:
        try:
            if chat:
                yield sse(chunk("", role=True))
            elif body.echo:
                yield sse(chunk(body.prompt))
            item = first
            while True:
                if isinstance(item, Finished):
                    yield sse(chunk(None, item.reason))
                    if include_usage:
                        usage = Usage(prompt_tokens=item.prompt_tokens, completion_tokens=item.completion_tokens,
                                      total_tokens=item.prompt_tokens + item.completion_tokens)
                        yield sse({"id": ident, "object": kind, "created": created, "model": body.model,
                                   "choices": [], "usage": usage.model_dump()})
                    break
                yield sse(chunk(item))
                item = await anext(pieces)
            yield sse("[DONE]")
        finally:
            await pieces.aclose()

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


async def _with_tool_calls(pieces: AsyncGenerator[str | Finished, None], parser: structured.ToolCallParser,
                           ) -> AsyncGenerator[str | structured.CallDelta | Finished, None]:
    """``pieces`` with the model's tool-call blocks turned into calls; an answer that ends after calls
    finishes as "tool_calls", as OpenAI's do."""
    try:
        async for piece in pieces:
            if not isinstance(piece, Finished):
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
    return {"index": delta.index, "id": delta.id, "type": "function",
            "function": {"name": delta.name, "arguments": delta.arguments}}
