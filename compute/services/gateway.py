"""The gateway to services: a request is streamed to one of the service's live replicas, taken in turn; a
replica that cannot be reached (its provider or container just died) is skipped and the next one tried.

The request body is read once so it can be sent again; the response is streamed back as it arrives. In-flight
requests are counted per service here, which is what the autoscaler reads (one gateway per platform process).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator

import httpx

from compute.services.errors import ServiceError
from compute.services.registry import ReplicaOut
from cxmpute.http import async_client

# Hop-by-hop headers (RFC 9110 §7.6.1) and those the proxy sets itself.
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
       "transfer-encoding", "upgrade", "host", "content-length", "authorization", "cookie"}
UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)


class Unavailable(ServiceError):
    status_code = 503


class Load:
    """Requests in flight per service, and the peak since the autoscaler last looked."""

    def __init__(self) -> None:
        self.inflight: dict[str, int] = defaultdict(int)
        self._peak: dict[str, int] = defaultdict(int)

    def enter(self, service_id: str) -> None:
        self.inflight[service_id] += 1
        self._peak[service_id] = max(self._peak[service_id], self.inflight[service_id])

    def leave(self, service_id: str) -> None:
        self.inflight[service_id] -= 1

    def take_peak(self, service_id: str) -> int:
        """The most requests in flight at once since the last call (at least those in flight now)."""
        peak = max(self._peak.pop(service_id, 0), self.inflight.get(service_id, 0))
        return peak


load = Load()
_turn = itertools.count()
_client: httpx.AsyncClient | None = None


def _http() -> httpx.AsyncClient:
    global _client
    if _client is None:
        _client = async_client(timeout=httpx.Timeout(300.0, connect=3.0), follow_redirects=False)
    return _client


def forward_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in HOP]


async def open_upstream(service_id: str, replicas: list[ReplicaOut], method: str, path: str, query: str,
                        headers: list[tuple[str, str]], body: bytes) -> tuple[httpx.Response, ReplicaOut]:
    """Send the request to the first replica that answers, starting from the next in turn."""
    if not replicas:
        raise Unavailable("the service has no live replica yet; try again shortly", field="name")
    start = next(_turn) % len(replicas)
    failures = []
    for replica in replicas[start:] + replicas[:start]:
        url = f"http://{replica.host}:{replica.host_port}/{path}" + (f"?{query}" if query else "")
        request = _http().build_request(method, url, headers=forward_headers(headers), content=body)
        try:
            return await _http().send(request, stream=True), replica
        except UNREACHABLE as exc:
            failures.append(f"{replica.id}: {type(exc).__name__}")
    raise Unavailable(f"no replica answered ({'; '.join(failures)})", field="name")


async def stream(service_id: str, response: httpx.Response) -> AsyncIterator[bytes]:
    """The upstream body; the request stops counting as in flight when it is fully sent (or abandoned)."""
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    finally:
        await response.aclose()
        load.leave(service_id)


async def close() -> None:
    global _client
    if _client is not None:
        client, _client = _client, None
        await asyncio.shield(client.aclose())
