"""The OpenAI-compatible request and response bodies, shared by the provider's server and the gateway.

Fields OpenAI defines that these backends cannot honour are refused with a 422 naming them, never silently
ignored; unknown extra fields are ignored as OpenAI's own API does. Tools and ``response_format`` are
honoured by :mod:`compute.inference.structured`, which refuses (400) what a served model cannot do with them.
Validators check values but keep the shapes OpenAI allows, so the gateway can forward a validated body as is.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

MAX_CHOICES = 16
MAX_PROMPTS = 64
MAX_TOP_LOGPROBS = 20
TokenIds = list[Annotated[int, Field(ge=0)]]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(..., min_length=1, max_length=200, description="Name of a served model (see /v1/models)")


class _Sampled(_Request):
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 decodes greedily")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass")
    n: int = Field(1, ge=1, le=MAX_CHOICES, description="Choices to generate, each sampled independently")
    stop: str | list[str] | None = Field(None, description="Up to 4 strings that end the text (not included)")
    seed: int | None = Field(None, description="Makes sampling repeatable")
    stream: bool = Field(False, description="Stream chunks as server-sent events")
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="Lowers the logits of tokens already generated")
    frequency_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="Lowers the logits of tokens by how often they were generated"
    )
    logit_bias: dict[str, float] | None = Field(
        None, description="Token id (as a string) to a bias from -100 to 100 added to its logit"
    )
    user: str | None = Field(None, max_length=256)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop strings")
        if any(not s for s in stops):
            raise ValueError("stop strings must not be empty")
        return stops

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not key.isdigit():
                raise ValueError(f"key {key!r} is not a token id")
            if not -100 <= bias <= 100:
                raise ValueError(f"bias {bias} of token {key} is outside -100..100")
        return value

    @property
    def stops(self) -> list[str]:
        return self.stop or []  # type: ignore[return-value]

    @property
    def biases(self) -> dict[int, float]:
        return {int(key): bias for key, bias in (self.logit_bias or {}).items()}


class StreamOptions(BaseModel):
    include_usage: bool = Field(False, description="Send a last chunk with token usage")


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"] = Field(..., description="Only text parts are served")
    text: str


FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class FunctionCall(BaseModel):
    name: str = Field(..., pattern=FUNCTION_NAME)
    arguments: str = Field(..., description="The arguments as a JSON object in a string")


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(..., max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, max_length=64)
    tool_calls: list[ToolCall] | None = Field(None, description="The calls an assistant turn made")
    tool_call_id: str | None = Field(None, max_length=200, description="The call a tool message answers")

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(..., pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="JSON schema of the arguments object")
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: FunctionName


class JsonSchemaSpec(BaseModel):
    # "schema" would shadow BaseModel.schema; the alias keeps OpenAI's key on the wire both ways
    model_config = ConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    name: str = Field(..., pattern=FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema", description="JSON schema of the answer")
    strict: bool | None = None


class TextFormat(BaseModel):
    type: Literal["text"]


class JsonObjectFormat(BaseModel):
    type: Literal["json_object"]


class JsonSchemaFormat(BaseModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]
ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ChatCompletionRequest(_Sampled):
    messages: list[ChatMessage] = Field(..., min_length=1, description="The conversation so far")
    tools: list[Tool] | None = Field(None, max_length=128, description="Functions the model may call")
    tool_choice: ToolChoice | None = Field(
        None, description="none, auto (the default with tools), required, or one named function"
    )
    parallel_tool_calls: bool | None = Field(None, description="false: at most one tool call per answer")
    response_format: ResponseFormat | None = Field(None, description="text, json_object or json_schema")
    functions: list[dict[str, Any]] | None = Field(
        None, description="Not supported (OpenAI's deprecated form of tools); must be unset"
    )
    function_call: str | dict[str, Any] | None = Field(
        None, description="Not supported (deprecated form of tool_choice); must be unset"
    )

    @field_validator("functions", "function_call")
    @classmethod
    def _no_legacy_functions(cls, value: object) -> None:
        if value is not None:
            raise ValueError("the deprecated functions form is not supported; use tools and tool_choice")

    max_tokens: int | None = Field(None, ge=1, le=32768, description="Most tokens to generate")
    max_completion_tokens: int | None = Field(None, ge=1, le=32768, description="Same as max_tokens (newer name)")
    logprobs: bool | None = Field(None, description="Give each generated token's log-probability")
    top_logprobs: int | None = Field(
        None, ge=0, le=MAX_TOP_LOGPROBS, description="Likeliest alternatives per token (needs logprobs: true)"
    )

    @field_validator("top_logprobs")
    @classmethod
    def _top_needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return value

    @property
    def token_limit(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 256

    @property
    def top_logprob_count(self) -> int | None:
        """How many alternatives each token's log-probability comes with; None when none are asked for."""
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Sampled):
    prompt: str | list[str] | TokenIds | list[TokenIds] = Field(
        ...,
        description="The text to continue, as text or the model's token ids; a list of them gives one "
        "completion per prompt",
    )
    max_tokens: int = Field(16, ge=1, le=32768, description="Most tokens to generate")
    echo: bool = Field(False, description="Prefix the completion with the prompt")
    logprobs: int | None = Field(
        None,
        ge=0,
        le=MAX_TOP_LOGPROBS,
        description="Give each token's log-probability with this many likeliest alternatives",
    )
    best_of: int | None = Field(None, ge=1, le=1, description="Only 1: each choice is sampled once")
    suffix: None = Field(None, description="Not supported (insertion); must be unset")

    @field_validator("prompt")
    @classmethod
    def _prompts(
        cls, value: str | list[str] | list[int] | list[list[int]]
    ) -> str | list[str] | list[int] | list[list[int]]:
        prompts = _as_inputs(value)
        if not prompts or len(prompts) > MAX_PROMPTS:
            raise ValueError(f"give 1 to {MAX_PROMPTS} prompts")
        if any(not p for p in prompts):
            raise ValueError("prompts must not be empty")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_echoed_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("echo"):
            raise ValueError("logprobs of an echoed prompt are not served; unset echo or logprobs")
        return value

    @property
    def prompts(self) -> list[str | list[int]]:
        return _as_inputs(self.prompt)

    @property
    def token_limit(self) -> int:
        return self.max_tokens

    @property
    def top_logprob_count(self) -> int | None:
        return self.logprobs


def _as_inputs(value: str | list[str] | list[int] | list[list[int]]) -> list[str | list[int]]:
    """OpenAI's input shapes as a list of inputs: a text, texts, one token-id list, or token-id lists."""
    if isinstance(value, str):
        return [value]
    if value and isinstance(value[0], int):
        return [value]  # type: ignore[list-item]
    return list(value)  # type: ignore[arg-type]


class EmbeddingRequest(_Request):
    input: str | list[str] | TokenIds | list[TokenIds] = Field(
        ...,
        description="A text, up to 2048 texts, or the same as token ids of OpenAI's cl100k_base encoding "
        "(what OpenAI's clients send)",
    )
    encoding_format: Literal["float", "base64"] = Field("float", description="Vectors as lists or base64 float32")
    dimensions: int | None = Field(None, ge=1, description="Truncate vectors to this many dimensions")
    user: str | None = Field(None, max_length=256)

    @field_validator("input")
    @classmethod
    def _texts(
        cls, value: str | list[str] | list[int] | list[list[int]]
    ) -> str | list[str] | list[int] | list[list[int]]:
        inputs = _as_inputs(value)
        if not inputs or len(inputs) > 2048:
            raise ValueError("give 1 to 2048 inputs")
        if any(not t for t in inputs):
            raise ValueError("inputs must not be empty")
        return value

    @property
    def inputs(self) -> list[str | list[int]]:
        return _as_inputs(self.input)


class ImageRequest(_Request):
    prompt: str = Field(..., min_length=1, max_length=4000, description="What to draw")
    n: int = Field(1, ge=1, le=8, description="Images to generate")
    size: str = Field("64x64", pattern=r"^\d{1,4}x\d{1,4}$", description="WIDTHxHEIGHT in pixels")
    response_format: Literal["b64_json", "url"] = Field(
        "b64_json", description="b64_json, or url (answered as a data: URL; nothing is hosted)"
    )
    steps: int = Field(20, ge=1, le=200, description="Denoising steps (an extension to OpenAI's API)")
    seed: int | None = Field(None, description="Makes generation repeatable (an extension)")
    user: str | None = Field(None, max_length=256)

    @property
    def dimensions(self) -> tuple[int, int]:
        width, height = (int(v) for v in self.size.split("x"))
        return width, height

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        width, height = (int(v) for v in value.split("x"))
        if not (8 <= width <= 2048 and 8 <= height <= 2048) or width % 8 or height % 8:
            raise ValueError("width and height must be multiples of 8 between 8 and 2048")
        return value


class SpeechRequest(_Request):
    input: str = Field(..., min_length=1, max_length=4096, description="Text to speak")
    voice: str | None = Field(
        None,
        max_length=100,
        description="An OpenAI voice name (alloy, echo, nova, ...) or "
        "an espeak-ng voice; the backend's default when unset",
    )
    response_format: str = Field(
        "mp3", pattern=r"^[a-z0-9]{2,8}$", description="mp3 (the default), wav, opus, aac, flac or pcm"
    )
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking rate, 1 being normal")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "cxmpute"
    kind: str = Field("text", description="text, embedding, image or speech (an extension)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def error_body(
    message: str, *, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error shape, which its clients parse into their exceptions."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_Sampled.model_rebuild()
ChatCompletionRequest.model_rebuild()
CompletionRequest.model_rebuild()
