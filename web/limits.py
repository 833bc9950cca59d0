"""Limits at the API's edge, checked before anything parses a request and, but for bodies a route streams
after authenticating the caller, before authentication.

- Body size: ``CXMPUTE_MAX_BODY_MB`` unless the route has a limit of its own (:func:`_body_limits`); a
  declared ``Content-Length`` over it is answered 413 before a byte is read, a chunked body is counted as
  it arrives.
- JSON nesting: a body whose arrays and objects nest deeper than ``CXMPUTE_MAX_JSON_DEPTH`` is refused
  from its bytes, so no recursive parser ever descends into it.
- Integers: the databases store signed 64-bit integers, so a larger one in a JSON body, or in a query,
  path or header parameter the route declares as an integer, is refused naming the field.
- Recursion: :func:`install` brings the limit the chain's libraries raise back down
  (:mod:`cxmpute.recursion`).

The body is checked when the route first reads it: after routing, so each route's own limit applies, and
before FastAPI parses it or resolves any dependency.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, get_args

import numpy as np
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from compute.training.registry import MAX_CHECKPOINT_BYTES
from cxmpute.recursion import cap_recursion
from cxmpute.settings import Settings, get_settings
from web.routers import functions, public_services, services, storage, training

MB = 2**20
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

_CHUNK = 1 << 20
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN, _CLOSE = b"[{", b"]}"
# int64 has 19 digits: only a body with a run this long can hold an integer out of range.
_LONG_DIGITS = re.compile(rb"\d{19,}")
_INT = TypeAdapter(int)
# The scope key under which the gate leaves a parsed route's body, for errors that need to point into it.
BODY = "cxmpute.body"


class RequestRefused(HTTPException):
    """A request refused at the edge, naming the field. An HTTPException: the one error FastAPI lets through
    unchanged from reading a body (any other becomes a 400 naming nothing)."""

    def __init__(self, message: str, *, field: str, status_code: int = 400) -> None:
        super().__init__(status_code, message)
        self.field = field

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "field": self.field}


def install(app: FastAPI) -> None:
    """Cap the recursion limit (the routers' imports have raised it by now) and gate every request's body."""
    cap_recursion()
    app.add_middleware(BodyLimits)


def json_depth(body: bytes) -> int:
    """How deep arrays and objects nest in a JSON document, read from its bytes without parsing it.

    Brackets count whether or not they match: a decoder descends on every opening one until it meets an
    error, and stops reading at the first mismatched one, so this is never less than the depth it reaches.
    Vectorised over chunks: linear in the body, whatever mix of strings and brackets it holds."""
    if body[:4].count(0):
        # UTF-16 and UTF-32, which the JSON decoder also accepts: scan the text as UTF-8.
        try:
            body = body.decode(json.detect_encoding(body)).encode()
        except (UnicodeDecodeError, LookupError):
            return 0
    depth = peak = 0
    in_string = 0
    backslashes = 0  # the run of backslashes that ended the previous chunk
    for start in range(0, len(body), _CHUNK):
        raw = body[start : start + _CHUNK]
        chunk = np.frombuffer(raw, np.uint8)
        quotes = chunk == _QUOTE
        if backslashes or b"\\" in raw:
            backslashes = _unescape(chunk, quotes, backslashes)
        inside = np.bitwise_xor.accumulate(quotes.view(np.uint8))
        inside ^= in_string
        in_string = int(inside[-1])
        steps = (chunk == _OPEN[0]).view(np.int8) + (chunk == _OPEN[1]).view(np.int8)
        steps -= (chunk == _CLOSE[0]).view(np.int8) + (chunk == _CLOSE[1]).view(np.int8)
        steps[inside.view(bool)] = 0
        levels = np.cumsum(steps, dtype=np.int32)
        peak = max(peak, depth + int(levels.max()))
        depth += int(levels[-1])
    return peak


def _unescape(chunk: np.ndarray, quotes: np.ndarray, carried: int) -> int:
    """Clear the escaped quotes (after an odd run of backslashes) from ``quotes``; ``carried`` is the run
    that ended the previous chunk. Returns the run that ends this one."""
    index = np.arange(len(chunk), dtype=np.int32)
    plain = np.where(chunk == _BACKSLASH, -1, index)  # then: the last non-backslash at or before each position
    np.maximum.accumulate(plain, out=plain)
    at = np.flatnonzero(quotes)
    before = plain[np.maximum(at - 1, 0)]
    run = np.where(at > 0, at - 1 - before, 0) + np.where((at == 0) | (before < 0), carried, 0)
    quotes[at[run % 2 == 1]] = False
    last = int(plain[-1])
    return len(chunk) - 1 - last + (carried if last < 0 else 0)


class _Big(str):
    """An integer literal out of the 64-bit range, kept as its text."""


def _parse_int(text: str) -> int | _Big:
    value = int(text) if len(text) <= 20 else None
    return _Big(text) if value is None or not INT_MIN <= value <= INT_MAX else value


def oversized_int(body: bytes, *, as_text: bool = False) -> str | None:
    """The field (dotted path; 'body' at the top) of the first integer in a JSON body outside int64; with
    ``as_text``, of the first string that validation would read as such an integer, too."""
    if _LONG_DIGITS.search(body) is None:
        return None
    try:
        document = json.loads(body, parse_int=_parse_int)
    except ValueError:
        return None  # not JSON: the route's own parser reports it
    stack: list[tuple[tuple[str, ...], Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _Big) or as_text and isinstance(value, str) and out_of_range(value):
            return ".".join(path) or "body"
        if isinstance(value, dict):
            stack.extend(((*path, str(k)), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*path, str(i)), v) for i, v in reversed(list(enumerate(value))))
    return None


def out_of_range(text: str) -> bool:
    """Whether a parameter's text is an integer (as validation would read it) outside int64."""
    try:
        value = _INT.validate_python(text)
    except ValidationError as exc:
        return exc.errors()[0]["type"] == "int_parsing_size"  # digits past what any integer here holds
    return not INT_MIN <= value <= INT_MAX


def _holds_int(annotation: Any) -> bool:
    return annotation is int or any(_holds_int(a) for a in get_args(annotation))


def _int_params(dependant: Dependant) -> list[tuple[str, str]]:
    """(where, name) of every query, path and header parameter a route reads as an integer."""
    found: list[tuple[str, str]] = []
    pending = [dependant]
    while pending:
        current = pending.pop()
        pending.extend(current.dependencies)
        for where, params in (
            ("query", current.query_params),
            ("path", current.path_params),
            ("header", current.header_params),
        ):
            found += [(where, p.alias) for p in params if _holds_int(p.field_info.annotation)]
    return found


async def integer_params(request: Request) -> None:
    """An app-wide dependency, resolved before the route's own (its authentication included): an integer
    parameter outside int64 is refused naming it, before it reaches a query."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    given = {"query": request.query_params, "path": request.path_params, "header": request.headers}
    for where, name in _int_params(route.dependant):
        for value in given[where].getlist(name) if where != "path" else [given[where].get(name)]:
            if value is not None and out_of_range(str(value)):
                raise _int_refused(name)


def _body_limits(settings: Settings) -> dict[Callable[..., Any], tuple[int, bool]]:
    """Routes whose body limit is not the platform's default: (bytes, whether the route parses the body)."""

    # A function package arrives base64-encoded inside the JSON body: 4 bytes for every 3, plus the rest.
    package = settings.function_max_package_mb * MB * 4 // 3 + MB
    return {
        storage.put_file: (settings.storage_max_upload_mb * MB, False),
        training.rank_upload: (MAX_CHECKPOINT_BYTES, False),
        functions.deploy: (max(settings.max_body_mb * MB, package), True),
        # Forwarded to the service's replica as they are: the replica parses them, not the platform.
        services.proxy: (settings.max_body_mb * MB, False),
        public_services.call_public: (settings.max_body_mb * MB, False),
    }


class BodyLimits:
    """ASGI middleware: the app reads each request's body through a :class:`_Gate`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.settings = get_settings()
        self.route_limits = _body_limits(self.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            receive = _Gate(self, scope, receive)
        await self.app(scope, receive, send)


class _Gate:
    """``receive`` for the app. Its first call — the route reading its body, so routing is done — checks the
    declared length against the route's limit; then a parsed body is read whole (up to the limit), checked
    and handed over at once, and a streamed one is counted as it passes."""

    def __init__(self, edge: BodyLimits, scope: Scope, receive: Receive) -> None:
        self.edge, self.scope, self.receive = edge, scope, receive
        self.max_bytes: int | None = None  # set on the first call
        self.parsed = True
        self.seen = 0

    async def __call__(self) -> Message:
        if self.max_bytes is None:
            self._plan()
            if self.parsed:
                return await self._whole()
        message = await self.receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.max_bytes:
                raise _too_large(self.max_bytes)
        return message

    def _plan(self) -> None:
        route = self.scope.get("route")
        endpoint = route.endpoint if isinstance(route, APIRoute) else None
        default = (self.edge.settings.max_body_mb * MB, True)
        self.max_bytes, self.parsed = self.edge.route_limits.get(endpoint, default)
        length = Headers(scope=self.scope).get("content-length")
        if length is not None:
            if not length.isdigit():
                raise RequestRefused("Content-Length must be a number of bytes", field="content-length")
            if int(length) > self.max_bytes:
                raise _too_large(self.max_bytes)

    async def _whole(self) -> Message:
        parts: list[bytes] = []
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                return message  # the client went away
            part = message.get("body", b"")
            self.seen += len(part)
            if self.seen > self.max_bytes:
                raise _too_large(self.max_bytes)
            parts.append(part)
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        if body:
            limit = self.edge.settings.max_json_depth
            if (depth := json_depth(body)) > limit:
                raise RequestRefused(
                    f"the body nests arrays and objects {depth} deep; at most {limit} levels are accepted",
                    field="body",
                    status_code=422,
                )
            if (name := oversized_int(body)) is not None:
                raise _int_refused(name)
        self.scope[BODY] = body
        return {"type": "http.request", "body": body, "more_body": False}


def _too_large(max_bytes: int) -> RequestRefused:
    return RequestRefused(
        f"the request body is over this route's limit of {max_bytes} bytes", field="body", status_code=413
    )


def _int_refused(name: str) -> RequestRefused:
    return RequestRefused(
        f"{name} is outside the signed 64-bit range the platform stores ({INT_MIN} to {INT_MAX})",
        field=name,
        status_code=422,
    )
