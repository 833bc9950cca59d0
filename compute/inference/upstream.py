"""The gateway's side of the connection to providers' servers: one pooled client per event loop, and a request sent
ahead of its lease that can be abandoned if the lease is refused."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable
from typing import Protocol, TypeVar

import anyio
import httpx

from cxmpute.http import async_client

T = TypeVar("T")


class Destination(Protocol):
    """Where a request goes: a server's URL and the headers that authenticate the gateway to it."""

    url: str

    @property
    def headers(self) -> dict[str, str]: ...


# Enough idle connections kept open to the providers for the concurrent requests of one API process. An idle
# one is dropped well before the providers' server (uvicorn: 5 s) closes it, so a request is never sent on a
# connection the server is closing just then: that would look like the provider failing, and suspend it.
PROVIDER_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=2.0)

_providers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def provider_client() -> httpx.AsyncClient:
    """The connection pool to the providers' servers, one per event loop (an async client's connections belong to
    the loop that opened them): a client per request costs a TLS context and a new connection each time, more
    CPU than the rest of the gateway's work on a request."""
    loop = asyncio.get_running_loop()
    found = _providers.get(loop)
    if found is None:
        found = _providers[loop] = async_client(limits=PROVIDER_LIMITS)
    return found


async def close_provider_client() -> None:
    """Close this event loop's connections to the providers (when the API stops)."""
    found = _providers.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.aclose()


def post(http: httpx.AsyncClient, to: Destination, path: str, body: dict, timeout: httpx.Timeout) -> httpx.Request:
    return http.build_request("POST", to.url + path, json=body, headers=to.headers, timeout=timeout)


async def settled_with(sending: asyncio.Future, placing: Awaitable[T]) -> T:
    """What ``placing`` gives (the request's route); when it fails (or the caller goes away), the request already
    being sent is abandoned first."""
    try:
        return await placing
    except BaseException:
        with anyio.CancelScope(shield=True):
            await abandon(sending)
        raise


async def abandon(sending: asyncio.Future) -> None:
    """Stop a request sent to a provider: cancelled if its answer has not begun, closed if it has."""
    if not sending.done():
        sending.cancel()
        await asyncio.wait({sending})
    if not sending.cancelled() and sending.exception() is None:
        await sending.result().aclose()
