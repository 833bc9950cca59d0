"""One call to a social service: rides out rate limits (retry-after in any of the services' forms) and
transient failures, and turns a permanent failure into an :class:`AgentError` that says what went wrong."""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from agxnt.context import AgentContext
from agxnt.errors import AgentError
from cxmpute.errors import NotFound

TRANSIENT = frozenset({500, 502, 503, 504})
BACKOFF_S = 0.25


class RateLimited(AgentError):
    status_code = 429


class ServiceFailed(AgentError):
    status_code = 502


@dataclass
class Service:
    """A service's base URL and credentials, and the input field that names the secret, for error messages."""

    name: str
    base_url: str
    secret_field: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None


def retry_after(response: httpx.Response) -> float | None:
    """Seconds a rate-limited service asks us to wait: Discord's precise ``X-RateLimit-Reset-After``,
    ``Retry-After`` (seconds or a date), Twitter's ``x-rate-limit-reset`` (epoch seconds), or the body's
    ``retry_after`` (Discord) or ``parameters.retry_after`` (Telegram)."""
    headers = response.headers
    if (seconds := _number(headers.get("x-ratelimit-reset-after"))) is not None:
        return max(0.0, seconds)
    if (seconds := _retry_after_header(response)) is not None:
        return seconds
    if (reset := _number(headers.get("x-rate-limit-reset"))) is not None:
        return max(0.0, reset - time.time())
    body = _json(response)
    if isinstance(body, dict):
        params = body.get("parameters")
        for source in (body, params if isinstance(params, dict) else {}):
            if isinstance(source.get("retry_after"), (int, float)):
                return max(0.0, float(source["retry_after"]))
    return None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _retry_after_header(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if (seconds := _number(value)) is not None:
        return max(0.0, seconds)
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_message(response: httpx.Response) -> str:
    """The service's own explanation, from whichever of the services' error shapes the body has."""
    body = _json(response)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):  # Google APIs
            return str(error["message"])
        for key in ("description", "detail", "message", "title"):  # Telegram, Twitter, Discord
            if body.get(key):
                return str(body[key])
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message") or errors[0])
    return response.reason_phrase or f"HTTP {response.status_code}"


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


async def call(
    service: Service, ctx: AgentContext, method: str, path: str, *, not_found_field: str | None = None, **kwargs: Any
) -> Any:
    """Send one request and return its JSON body; retries 429 and 5xx up to the configured limit."""
    settings = ctx.settings
    attempts = settings.social_max_retries + 1
    async with ctx.services.http(base_url=service.base_url, headers=service.headers, timeout=service.timeout) as client:
        for attempt in range(attempts):
            ctx.check_cancelled()
            last = attempt == attempts - 1
            try:
                response = await client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if last:
                    raise ServiceFailed(
                        f"{service.name} could not be reached after {attempts} attempts: {type(exc).__name__}"
                    ) from None
                await asyncio.sleep(BACKOFF_S * 2**attempt)
                continue
            status = response.status_code
            if status < 400:
                return _body(service, response)
            if status == 429:
                wait = retry_after(response)
                wait = BACKOFF_S * 2**attempt if wait is None else wait
                if last or wait > settings.social_max_retry_wait_s:
                    raise RateLimited(
                        f"{service.name} rate limit: retry after {wait:.0f} s ({error_message(response)})"
                    ) from None
                await asyncio.sleep(wait)
                continue
            if status in TRANSIENT:
                if last:
                    raise ServiceFailed(
                        f"{service.name} failed with HTTP {status} after {attempts} attempts: {error_message(response)}"
                    ) from None
                # Only Retry-After counts here: Twitter sends its rate-limit reset on every answer,
                # and that is no reason to wait out a window after a server error.
                wait = _retry_after_header(response)
                await asyncio.sleep(
                    min(BACKOFF_S * 2**attempt if wait is None else wait, settings.social_max_retry_wait_s)
                )
                continue
            raise _permanent(service, response, not_found_field)
    raise ServiceFailed(f"{service.name} gave no answer")  # the loop above always returns or raises


def _body(service: Service, response: httpx.Response) -> Any:
    if not response.content:
        return {}
    body = _json(response)
    if body is None:
        raise ServiceFailed(f"{service.name} answered HTTP {response.status_code} with a body that is not JSON")
    return body


def _permanent(service: Service, response: httpx.Response, not_found_field: str | None) -> AgentError:
    status, message = response.status_code, error_message(response)
    if status == 401:
        return AgentError(
            f"{service.name} rejected the credentials in the secret named by {service.secret_field!r} "
            f"(HTTP 401: {message})",
            field=service.secret_field,
        )
    if status == 403:
        return AgentError(
            f"{service.name} refused: the credentials lack permission (HTTP 403: {message})",
            field=service.secret_field,
            status_code=403,
        )
    if status == 404:
        return NotFound(f"{service.name}: not found ({message})", field=not_found_field)
    return AgentError(f"{service.name} refused the request (HTTP {status}: {message})", field=not_found_field)
