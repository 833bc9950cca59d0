"""The gateway to services: a request is streamed to one of the service's live replicas, taken in turn; a
replica that cannot be reached (its provider or container just died) is skipped and the next one tried.

The request body is read once so it can be sent again; the response is streamed back as it arrives. In-flight
requests are counted per service here, which is what the autoscaler reads (one gateway per platform process).

Services are reached on the platform's own origin, where the builder keeps its session token, so a replica's
answer is held to what cannot act as that origin: every response carries ``Content-Security-Policy: sandbox``
without ``allow-same-origin`` (a page or script of the service runs in an opaque origin of its own, which
reads none of the platform origin's storage and sends its requests cross-origin), ``nosniff``, and none of
the headers a response sets for the whole origin (cookies, HSTS, Alt-Svc, Clear-Site-Data, error reporting,
authentication prompts). No cookie passes in either direction, and the gateway's client keeps none, so
nothing one caller's answer sets ever reaches another caller's request.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from compute.services.errors import ServiceError
from compute.services.registry import ReplicaOut
from cxmpute.http import async_client

# Hop-by-hop headers (RFC 9110 §7.6.1), those the proxy sets itself, and the caller's credentials.
HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "authorization",
    "cookie",
}
# What a response sets for its whole origin, the platform's here; the gateway's own answers to those it sets.
ORIGIN_WIDE = {
    "set-cookie",
    "set-cookie2",
    "strict-transport-security",
    "alt-svc",
    "clear-site-data",
    "service-worker-allowed",
    "www-authenticate",
    "nel",
    "report-to",
    "reporting-endpoints",
    "accept-ch",
    "critical-ch",
    "x-content-type-options",
    "origin-agent-cluster",
}
# Scripts may run, in an opaque origin: the service's pages work, and nothing of the platform's is theirs.
SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"
CONFINED = [("content-security-policy", SANDBOX), ("x-content-type-options", "nosniff")]
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


class _NoCookies(DefaultCookiePolicy):
    """The gateway's client serves every caller and tenant: it never keeps a cookie, nor sends one."""

    def set_ok(self, cookie, request) -> bool:
        return False

    def return_ok(self, cookie, request) -> bool:
        return False


def _http() -> httpx.AsyncClient:
    global _client
    if _client is None:
        _client = async_client(
            timeout=httpx.Timeout(300.0, connect=3.0), follow_redirects=False, cookies=CookieJar(policy=_NoCookies())
        )
    return _client


def forward_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The caller's request headers a replica gets."""
    return [(k, v) for k, v in headers if k.lower() not in HOP]


def response_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A replica's response headers as the caller gets them: confined to an opaque origin (see above)."""
    return [(k, v) for k, v in headers if k.lower() not in HOP | ORIGIN_WIDE] + CONFINED


async def open_upstream(
    service_id: str,
    replicas: list[ReplicaOut],
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> tuple[httpx.Response, ReplicaOut]:
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
