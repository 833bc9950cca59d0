"""Errors as JSON naming the field or node; never a traceback.

A refused request (4xx) is the caller's mistake: one INFO line naming the status, method, route and field. A
dependency the platform names (a 502 or 503 it raises itself) is one WARNING line. Only an unexpected error
logs its traceback.

The OpenAI-compatible routes (:class:`OpenAIRoute`) answer the same errors in OpenAI's envelope,
``{"error": {"message", "type", "param", "code"}}``, with the statuses OpenAI uses (a validation error or a
conflict is 400, a lack of funds 429 ``insufficient_quota``), so OpenAI's SDKs raise the matching exception
with the message. Their 4xx but a rate limit carry ``x-should-retry: false``: the same request gets the same
answer, so the SDKs' automatic retries (of 409 and 429) would only add delay."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from compute.inference.refusals import GatewayError
from cxmpute.errors import CxmputeError
from cxmpute.logging import get_logger
from web.limits import BODY, RequestRefused, out_of_range, oversized_int

log = get_logger(__name__)
PREFECT_RETRY_AFTER_S = 5  # about what `cxmpute up` takes to start its Prefect server again


class PrefectUnavailable(CxmputeError):
    """The Prefect server, where runs' states live, does not answer: the platform's dependency, not a bug."""

    status_code = 503

    def __init__(self) -> None:
        super().__init__(
            "the Prefect server (PREFECT_API_URL) is not answering: run states are unavailable until "
            "it is back; try again shortly",
            field="PREFECT_API_URL",
        )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(PREFECT_RETRY_AFTER_S)}


def prefect_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised from, a failure to reach the Prefect API: an httpx transport error
    (refused, timed out, cut off) on a request to its address, raised as is by Prefect's client or wrapped in
    Prefect's own RuntimeError ("Failed to reach API at ..."). Only the Prefect API's address counts: the same
    error from another service the platform calls is that service's failure."""
    from prefect.settings import get_current_settings

    api = get_current_settings().api.url
    if not api:
        return False
    prefect = urlsplit(api)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, httpx.TransportError) and _addressed(
            current, prefect.scheme, prefect.hostname, prefect.port
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def _addressed(exc: httpx.TransportError, scheme: str, host: str | None, port: int | None) -> bool:
    try:
        url = exc.request.url
    except RuntimeError:  # an error raised outside any request names no address
        return False
    return (url.scheme, url.host, url.port) == (scheme, host, port)


class OpenAIRoute(APIRoute):
    """A route of the OpenAI-compatible API: its errors are answered in OpenAI's envelope."""


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


# The platform's statuses OpenAI has no use for, as the ones it answers instead.
_OPENAI_STATUS = {402: 429, 409: 400, 422: 400}
# OpenAI's error type and code for each of the platform's statuses, where the error names none of its own.
_OPENAI_KIND = {
    401: ("invalid_request_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def _speaks_openai(request: Request) -> bool:
    # A request matching a route's path but not its method (405) is routed to it too.
    return isinstance(request.scope.get("route"), OpenAIRoute)


def _openai(
    status: int, message: str, field: str | None, exc: Exception, headers: dict[str, str] | None
) -> tuple[int, OpenAIError, dict[str, str] | None]:
    kind, code = _OPENAI_KIND.get(status, ("invalid_request_error" if status < 500 else "server_error", None))
    if isinstance(exc, GatewayError):
        kind, code = exc.kind or kind, exc.code or code
    if isinstance(exc, RequestValidationError) and _unparsed(exc):
        field = None  # the body is not JSON: no field of it is at fault
    if status < 500 and status != 429:  # a rate limit passes in time; any other refusal stays the same
        headers = {**(headers or {}), "x-should-retry": "false"}
    status = _OPENAI_STATUS.get(status, status)
    return (
        status,
        OpenAIError(error=OpenAIErrorDetail(message=message, type=kind, param=field or None, code=code)),
        headers,
    )


def _unparsed(exc: RequestValidationError) -> bool:
    return any(e.get("type") == "json_invalid" for e in exc.errors())


def _answer(
    request: Request, status: int, content: dict[str, Any], exc: Exception, headers: dict[str, str] | None = None
) -> JSONResponse:
    field = content.get("field") or _first_field(content.get("errors") or [])
    if _speaks_openai(request):
        status, envelope, headers = _openai(status, str(content.get("detail")), field, exc, headers)
        content, field = envelope.model_dump(), envelope.error.param
    route = getattr(request.scope.get("route"), "path", request.url.path)
    if status >= 500 and not isinstance(exc, CxmputeError):
        log.error("%s %s %s: %s", status, request.method, route, _message(content), exc_info=exc)
    elif status >= 500:  # a dependency the platform reports by name (no model, a node down): not a bug
        log.warning("%s %s %s: %s: %s", status, request.method, route, exc.field or "-", exc.message)
    else:
        log.info("%s %s %s: %s: %s", status, request.method, route, field or "-", _message(content))
    return JSONResponse(status_code=status, content=content, headers=headers)


def _message(content: dict[str, Any]) -> Any:
    return content["error"]["message"] if "error" in content else content.get("detail")


def _first_field(errors: list[dict[str, Any]]) -> str | None:
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    return first.get("field") or (f"node {first['node']}" if first.get("node") else None)


def install(app: FastAPI) -> None:
    @app.exception_handler(CxmputeError)
    async def _platform_error(request: Request, exc: CxmputeError) -> JSONResponse:
        return _answer(request, exc.status_code, exc.body(), exc, exc.headers())

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]} for e in exc.errors()
        ]
        summary = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        return _answer(request, 422, {"detail": summary, "errors": errors}, exc)

    @app.exception_handler(RequestRefused)
    async def _refused(request: Request, exc: RequestRefused) -> JSONResponse:
        return _answer(request, exc.status_code, exc.body(), exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _answer(request, exc.status_code, {"detail": exc.detail}, exc, exc.headers)

    # A request's values passed on to one of the platform's own models (a match request built from a
    # deployment's price range, say) that it refuses: the caller's input, answered as the request's own.
    @app.exception_handler(ValidationError)
    async def _model_refused(request: Request, exc: ValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        return _answer(request, 422, {"detail": summary, "field": errors[0]["field"] or "body", "errors": errors}, exc)

    # The edge (web.limits) refuses the integers it can see out of the stored range; these catch the rest —
    # a number sent as a string to an integer field, one past what a date or a duration can hold — which
    # fail where the value is used, the database's own refusal (DataError) included.
    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def _out_of_range(request: Request, exc: Exception) -> JSONResponse:
        field = (
            next((k for k, v in request.query_params.multi_items() if out_of_range(v)), None)
            or oversized_int(request.scope.get(BODY, b""), as_text=True)
            or "body"
        )
        return _answer(
            request,
            422,
            {"detail": f"{field}: a value is out of the range this operation accepts", "field": field},
            exc,
        )

    # Prefect's client fails with httpx's errors, or its own RuntimeError wrapping them, in any router that reads
    # runs: answered here as the dependency's 503. Here, not in the catch-all below, since the server logs the
    # traceback of every error that reaches the catch-all; any other error goes on to it.
    @app.exception_handler(httpx.TransportError)
    @app.exception_handler(RuntimeError)
    async def _prefect_away(request: Request, exc: Exception) -> JSONResponse:
        if not prefect_unreachable(exc):
            raise exc
        away = PrefectUnavailable()
        return _answer(request, away.status_code, away.body(), away, away.headers())

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _answer(request, 500, {"detail": f"internal error: {type(exc).__name__}"}, exc)
