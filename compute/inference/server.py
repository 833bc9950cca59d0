"""The provider's inference server: an OpenAI-compatible FastAPI app over the models it holds.

Paths match OpenAI's (``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/images/generations``, ``/v1/audio/speech``), so the platform's gateway, or any OpenAI client, talks
to it directly. Chat honours ``tools``, ``tool_choice`` and ``response_format`` through
:mod:`compute.inference.structured`, and completions take several prompts, as text or token ids; the text
answers themselves, batched, streamed and scored, are :mod:`compute.inference.completions`.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import anyio
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from compute.inference import structured
from compute.inference.backends import EmbeddingModel, ImageModel, InferenceError, Served, SpeechModel, TextModel
from compute.inference.completions import respond, start_choice
from compute.inference.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImageRequest,
    ModelCard,
    ModelList,
    SpeechRequest,
    error_body,
)
from cxmpute import __version__
from cxmpute.errors import CxmputeError

AUDIO_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "pcm": "audio/pcm",
}


def create_app(models: Iterable[Served], api_key: str | None = None) -> FastAPI:
    """The app serving ``models``; with ``api_key`` set, every call but /healthz must present it."""
    served: dict[str, Served] = {m.name: m for m in models}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for model in served.values():
            model.close()

    app = FastAPI(
        title="Cxmpute inference server",
        version=__version__,
        lifespan=lifespan,
        description="An OpenAI-compatible server for the models this provider serves.",
    )

    def authorized(
        authorization: str | None = Header(None, description="Bearer <key>, when the server has one"),
    ) -> None:
        if api_key is None:
            return
        given = (authorization or "").partition(" ")[2].strip()
        if not secrets.compare_digest(given.encode(), api_key.encode()):
            raise InferenceError("missing or wrong API key", field="authorization", status_code=401)

    def pick(name: str, kind: type) -> Served:
        model = served.get(name)
        if model is None:
            raise InferenceError(
                f"model {name!r} is not served here; serving: {', '.join(sorted(served)) or 'none'}",
                field="model",
                status_code=404,
            )
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

    @app.post(
        "/v1/chat/completions",
        summary="Chat completion (stream: true for server-sent events)",
        dependencies=[Depends(authorized)],
    )
    async def chat(body: ChatCompletionRequest) -> Response:
        model = pick(body.model, TextModel)
        model.check_bias(body.biases)
        try:
            plan = await anyio.to_thread.run_sync(structured.plan_chat, body, model.supports_tools)
            prompt = model.chat_prompt(structured.chat_turns(body.messages), plan.template_tools)
            # a grammar constraint follows one sequence's tokens: each choice needs its own
            constraints = [
                await anyio.to_thread.run_sync(model.constraint, plan.grammar) if plan.grammar else None
                for _ in range(body.n)
            ]
        except structured.StructuredError as exc:
            raise InferenceError(str(exc), field=exc.field, status_code=400) from exc
        return await respond(
            body,
            [
                start_choice(model, body, i, prompt, constraint=constraint, parser=plan.parser())
                for i, constraint in enumerate(constraints)
            ],
            chat=True,
        )

    @app.post(
        "/v1/completions",
        summary="Text completion (stream: true for server-sent events)",
        dependencies=[Depends(authorized)],
    )
    async def complete(body: CompletionRequest) -> Response:
        model = pick(body.model, TextModel)
        model.check_bias(body.biases)
        prompts = [model.prompt_ids(p) for p in body.prompts]
        echoes = [(p if isinstance(p, str) else model.decode(p)) if body.echo else "" for p in body.prompts]
        # OpenAI's order: a prompt's n choices together, prompts in the order given
        return await respond(
            body,
            [
                start_choice(model, body, p * body.n + j, ids, echo=echo)
                for p, (ids, echo) in enumerate(zip(prompts, echoes))
                for j in range(body.n)
            ],
            chat=False,
        )

    @app.post("/v1/embeddings", summary="Embedding vectors of one or more texts", dependencies=[Depends(authorized)])
    async def embeddings(body: EmbeddingRequest) -> dict:
        model = pick(body.model, EmbeddingModel)
        texts = await anyio.to_thread.run_sync(model.texts, body.inputs)  # tiktoken may fetch its encoding
        vectors = await anyio.to_thread.run_sync(model.embed, texts, body.dimensions, body.encoding_format)
        tokens = model.count_tokens(texts)
        return {
            "object": "list",
            "model": body.model,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    @app.post("/v1/images/generations", summary="Images from a prompt (PNG)", dependencies=[Depends(authorized)])
    async def images(body: ImageRequest) -> dict:
        model = pick(body.model, ImageModel)
        pngs = await anyio.to_thread.run_sync(
            model.generate, body.prompt, body.n, body.dimensions, body.steps, body.seed
        )
        encoded = [base64.b64encode(png).decode() for png in pngs]
        key = "b64_json" if body.response_format == "b64_json" else "url"
        prefix = "" if key == "b64_json" else "data:image/png;base64,"
        return {"created": int(time.time()), "data": [{key: prefix + e} for e in encoded]}

    @app.post(
        "/v1/audio/speech",
        summary="Speech audio of a text",
        dependencies=[Depends(authorized)],
        response_class=Response,
    )
    async def speech(body: SpeechRequest) -> Response:
        model = pick(body.model, SpeechModel)
        audio = await anyio.to_thread.run_sync(
            model.synthesize, body.input, body.voice, body.response_format, body.speed
        )
        return Response(audio, media_type=AUDIO_TYPES.get(body.response_format, "application/octet-stream"))

    return app
