"""Tool calls and structured output for the text models.

``response_format`` and forced tool calls (``tool_choice`` "required" or a named function) become a grammar
that constrains decoding token by token (llguidance), so even a weak model answers schema-valid JSON. Tools
reach the model through its chat template; its answer is read back as Hermes/Qwen-style
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks, the format such templates teach, and
turned into OpenAI tool calls, also while streaming.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import llguidance
import torch

from compute.inference.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    FunctionCall,
    JsonObjectFormat,
    JsonSchemaFormat,
    NamedToolChoice,
    Tool,
    ToolCall,
)

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
# json.dumps' own separators, which the templates use to show past calls; no free whitespace, which a weak
# model could otherwise emit forever
_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_NO_ARGUMENTS = {"type": "object", "properties": {}, "additionalProperties": False}


class StructuredError(ValueError):
    """A request whose tools or format cannot be served; ``field`` names the request field at fault."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@dataclass
class ChatPlan:
    """How one chat request is prompted, constrained and read back."""

    template_tools: list[dict[str, Any]] | None = None
    grammar: str | None = None
    tool_names: set[str] = field(default_factory=set)
    max_calls: int | None = None

    def parser(self) -> ToolCallParser | None:
        return ToolCallParser(self.tool_names, self.max_calls) if self.tool_names else None


def plan_chat(body: ChatCompletionRequest, supports_tools: bool) -> ChatPlan:
    """The plan for ``body``, or a :class:`StructuredError` naming the field this model cannot honour."""
    tools = body.tools or []
    choice = body.tool_choice or ("auto" if tools else "none")
    names = [t.function.name for t in tools]
    if len(set(names)) != len(names):
        raise StructuredError("tool function names must be unique", "tools")
    if choice != "none" and not tools:
        raise StructuredError("tool_choice needs tools", "tool_choice")
    if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
        raise StructuredError(
            f"tool_choice names {choice.function.name!r}, which is not among the tools ({', '.join(names)})",
            "tool_choice",
        )
    answer = _answer_rule(body)
    if choice == "none":
        return ChatPlan(grammar=_grammar({"answer": answer}) if answer else None)
    if not supports_tools:
        raise StructuredError(f"{body.model!r} has no chat template for tools in the {TOOL_OPEN} format", "tools")
    callable_tools = [
        t for t in tools if not isinstance(choice, NamedToolChoice) or t.function.name == choice.function.name
    ]
    rules = {f"call_{i}": _call_rule(t) for i, t in enumerate(callable_tools)}
    if choice == "auto":
        # unconstrained unless the answer has a format: then it is that format or a call
        grammar = _grammar({"answer": answer, **rules}) if answer else None
        max_calls = 1 if body.parallel_tool_calls is False else None
    else:
        grammar, max_calls = _grammar(rules), 1
    return ChatPlan(
        template_tools=[t.model_dump(mode="json", exclude_none=True) for t in tools],
        grammar=grammar,
        tool_names=set(names),
        max_calls=max_calls,
    )


def _answer_rule(body: ChatCompletionRequest) -> str | None:
    fmt = body.response_format
    if isinstance(fmt, JsonObjectFormat):
        return _json_rule({"type": "object"}, "response_format")
    if isinstance(fmt, JsonSchemaFormat):
        return _json_rule(fmt.json_schema.schema_, "response_format")
    return None


def _call_rule(tool: Tool) -> str:
    prefix = f'{TOOL_OPEN}\n{{"name": {json.dumps(tool.function.name)}, "arguments": '
    suffix = "}\n" + TOOL_CLOSE
    arguments = _json_rule(tool.function.parameters or _NO_ARGUMENTS, "tools")
    return f"{_lark_string(prefix)} {arguments} {_lark_string(suffix)}"


def _json_rule(schema: dict[str, Any], field_name: str) -> str:
    closed = {**_closed(schema), "x-guidance": _JSON_OPTIONS}
    problem = llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_json_schema(closed))
    if problem:
        raise StructuredError(f"unusable JSON schema: {problem}", field_name)
    return "%json " + json.dumps(closed)


_SCHEMA_MAPS = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
# allOf's parts stay open: each closed to the others' properties, together they would admit no object
_SCHEMA_LISTS = {"anyOf", "oneOf", "prefixItems"}
# not "not" or "if": closing what they test would let more through, not less
_SCHEMAS = {"items", "additionalProperties", "additionalItems", "contains", "then", "else"}


def _closed(schema: Any) -> Any:
    """``schema`` with its objects that declare properties and leave additionalProperties unset closed to
    other keys, as OpenAI's strict mode does: otherwise a model may invent keys without end. What matches
    the result matches ``schema``."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _closed(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_closed(sub) for sub in value]
        elif key in _SCHEMAS:
            out[key] = _closed(value)
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out and "patternProperties" not in out:
        out["additionalProperties"] = False
    return out


def _lark_string(text: str) -> str:
    return json.dumps(text)  # JSON string escapes are valid Lark string escapes


def _grammar(rules: dict[str, str]) -> str:
    lines = [f"start: {' | '.join(rules)}"] + [f"{name}: {rule}" for name, rule in rules.items()]
    return "\n".join(lines)


def chat_turns(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The conversation as chat templates take it: developer as system, call arguments as objects."""
    turns = []
    for i, m in enumerate(messages):
        turn: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.text}
        if m.tool_calls:
            turn["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": _arguments(c.function.arguments, i)},
                }
                for c in m.tool_calls
            ]
        if m.tool_call_id:
            turn["tool_call_id"] = m.tool_call_id
        if m.name:
            turn["name"] = m.name
        turns.append(turn)
    return turns


def _arguments(text: str, index: int) -> Any:
    try:
        return json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise StructuredError(f"tool call arguments are not JSON: {exc}", f"messages.{index}.tool_calls") from exc


class GrammarConstraint:
    """One request's grammar state: which tokens may come next, advanced by each token decoded."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: str):
        self._matcher = llguidance.LLMatcher(tokenizer, grammar)
        if self._matcher.is_error():
            raise StructuredError(self._matcher.get_error(), "response_format")

    def allowed(self) -> torch.Tensor:
        bias = self._matcher.compute_logit_bias()
        if self._matcher.is_error():
            raise RuntimeError(f"constrained decoding failed: {self._matcher.get_error()}")
        return torch.frombuffer(bytearray(bias), dtype=torch.uint8).bool()

    def accept(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            raise RuntimeError(f"constrained decoding failed: {self._matcher.get_error()}")


def grammar_tokenizer(hf_tokenizer: Any, eos_ids: set[int]) -> llguidance.LLTokenizer:
    """llguidance's view of a Hugging Face fast tokenizer (about a second for a large vocabulary: keep it)."""
    import llguidance.hf  # imports transformers, which only serving a text model needs

    try:
        return llguidance.hf.from_tokenizer(hf_tokenizer, eos_token=sorted(eos_ids))
    except ValueError as exc:  # a slow (Python) tokenizer
        raise StructuredError(f"constrained decoding needs a fast tokenizer: {exc}", "response_format") from exc


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


@dataclass
class CallDelta:
    """Part of a tool call as it streams: a call's first delta carries its id and name, the rest more of
    its arguments' JSON text."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


def collect_calls(deltas: list[CallDelta]) -> list[ToolCall]:
    """The whole calls that ``deltas`` stream."""
    calls: dict[int, ToolCall] = {}
    for delta in deltas:
        if delta.id is not None:
            calls[delta.index] = ToolCall(id=delta.id, function=FunctionCall(name=delta.name or "", arguments=""))
        calls[delta.index].function.arguments += delta.arguments
    return [calls[i] for i in sorted(calls)]


# a call as the templates write it, up to where its arguments begin: its name can be streamed from there
_CALL_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*')


def parse_call(body: str, names: set[str]) -> tuple[str, str] | None:
    """The function name and arguments (JSON text) of one ``<tool_call>`` block, or None when it is not a
    call to one of ``names``."""
    try:
        doc = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("name") not in names:
        return None
    arguments = doc.get("arguments", doc.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return doc["name"], json.dumps(arguments)


class ToolCallParser:
    """Splits streamed model text into answer text and tool-call deltas.

    Text that may be the start of a ``<tool_call>`` block is held back until it is known. A block that
    opens with a known function's name streams its arguments as they come (held back only where they
    may be the block's closing brace); any other block is judged whole at its end, and stays text unless
    it is a valid call. Whitespace between text and calls is dropped, so an answer of calls has no content.
    """

    def __init__(self, names: set[str], max_calls: int | None = None):
        self.names = names
        self.max_calls = max_calls
        self.calls = 0
        self._buffer = ""
        self._in_call = False
        self._streaming = False  # the open block's head was read: its arguments are streaming
        self._sent = 0  # characters of the open block's arguments already streamed
        self._space = ""  # whitespace held until text follows it
        self._after_call = False

    def feed(self, text: str) -> list[str | CallDelta]:
        self._buffer += text
        out: list[str | CallDelta] = []
        while True:
            if self._in_call:
                end = self._buffer.find(TOOL_CLOSE)
                if end < 0:
                    out += self._open_block()
                    return out
                body, self._buffer = self._buffer[:end], self._buffer[end + len(TOOL_CLOSE) :]
                out += self._end_block(body, closed=True)
                continue
            start = self._buffer.find(TOOL_OPEN) if self._calls_left() else -1
            if start < 0:
                keep = _partial_prefix(self._buffer, TOOL_OPEN) if self._calls_left() else 0
                out += self._text(self._buffer[: len(self._buffer) - keep])
                self._buffer = self._buffer[len(self._buffer) - keep :]
                return out
            out += self._text(self._buffer[:start])
            self._buffer = self._buffer[start + len(TOOL_OPEN) :]
            self._in_call = True

    def close(self) -> list[str | CallDelta]:
        """What is left at the end of the answer; an unclosed block still counts if it holds a whole call."""
        out = self._end_block(self._buffer, closed=False) if self._in_call else self._text(self._buffer)
        self._buffer = ""
        if self._space and not self.calls:
            out.append(self._space)
        self._space = ""
        return out

    def _calls_left(self) -> bool:
        return self.max_calls is None or self.calls < self.max_calls

    def _open_block(self) -> list[str | CallDelta]:
        """Deltas of the block still open in the buffer."""
        if not self._streaming:
            head = _CALL_HEAD.match(self._buffer)
            name = head.group(1) if head else None
            if name not in self.names:  # not yet known, or not a call: judged whole at the block's end
                return []
            self._buffer = self._buffer[head.end() :]
            self._streaming, self._sent = True, 0
            return [self._start_call(name)]
        # the last "}" may close the block rather than the arguments, and a tail may begin its end tag
        brace = self._buffer.rfind("}")
        safe = min(
            len(self._buffer) if brace < 0 else brace, len(self._buffer) - _partial_prefix(self._buffer, TOOL_CLOSE)
        )
        return self._more_arguments(self._buffer[:safe])

    def _end_block(self, body: str, *, closed: bool) -> list[str | CallDelta]:
        self._in_call = False
        if self._streaming:
            self._streaming = False
            end = body.rfind("}")
            return self._more_arguments(body[:end] if end >= 0 else body)
        call = parse_call(body, self.names)
        if call is None:
            return self._text(TOOL_OPEN + body + (TOOL_CLOSE if closed else ""))
        name, arguments = call
        self._sent = 0
        return [self._start_call(name), *self._more_arguments(arguments)]

    def _start_call(self, name: str) -> CallDelta:
        self.calls += 1
        self._space, self._after_call = "", True
        return CallDelta(index=self.calls - 1, id=new_call_id(), name=name)

    def _more_arguments(self, arguments: str) -> list[str | CallDelta]:
        if len(arguments) <= self._sent:
            return []
        delta = CallDelta(index=self.calls - 1, arguments=arguments[self._sent :])
        self._sent = len(arguments)
        return [delta]

    def _text(self, text: str) -> list[str | CallDelta]:
        if self._after_call:
            text = text.lstrip()
        held = self._space + text
        body = held.rstrip()
        self._space = held[len(body) :]
        if not body:
            return []
        self._after_call = False
        return [body]


def _partial_prefix(text: str, marker: str) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0
