"""The egress policy: everything an agent or user code requests reaches the public internet, never the
provider's own network and never the platform's internal services.

Every URL is checked by scheme and by the addresses its host resolves to (not by its spelling, so
``localhost``, ``127.1``, ``0x7f000001`` and a DNS name pointing at loopback are all caught).
:class:`GuardedTransport` pins each HTTP connection to the checked address, so a second DNS answer cannot
swap in a private one, and it runs on every redirect hop; the browser's proxy checks every connection the
browser makes. ``Services.http`` is the one HTTP client agents get, and it always carries this transport.

Exemptions come from settings only, derived here: ``web_allow_private``, ``web_allowed_hosts``, and the
exact ``host:port`` of each service base URL the operator configured (search, social APIs, LLM). The
platform's internal services (its own API, the Prefect API, its databases) are refused even then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from agxnt.errors import AgentError
from cxmpute.errors import Forbidden
from cxmpute.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")

# Cloud metadata services answer on these even where they are not in a "private" range.
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}

_DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "postgresql": 5432,
    "postgres": 5432,
    "mysql": 3306,
    "mariadb": 3306,
    "redis": 6379,
    "rediss": 6379,
}


class EgressDenied(AgentError, Forbidden):
    """A URL the policy refuses; raised with the input field that carried it."""


def is_internal(ip: IPAddress) -> bool:
    """Whether an address belongs to a private, loopback, link-local or otherwise non-public network."""
    ip = _unmapped(ip)
    return (
        ip in _METADATA
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _unmapped(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_this_machine(ip: IPAddress) -> bool:
    """Whether a connection to ``ip`` lands on this machine: the unspecified address, all of loopback, and
    every address of its interfaces (an address is local exactly when a socket can bind to it)."""
    ip = _unmapped(ip)
    if ip.is_unspecified or ip.is_loopback:
        return True
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


def service_address(url: str | None) -> tuple[str, int] | None:
    """``(host, port)`` a configured service URL points at; None for URLs without a network host."""
    if not url:
        return None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower().split("+", 1)[0]
    if not parts.hostname or (port is None and scheme not in _DEFAULT_PORTS):
        return None
    return _normal_host(parts.hostname), port or _DEFAULT_PORTS[scheme]


def _normal_host(host: str) -> str:
    return host.lower().rstrip(".")


@dataclass(frozen=True)
class Resolved:
    host: str
    port: int
    address: str


@dataclass(frozen=True)
class EgressPolicy:
    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()  # "name" or "name:port", exempt from the address check
    internal: frozenset[tuple[str, int]] = frozenset()  # (host, port) never reachable, whatever the exemptions

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        services = [
            settings.search_url,
            settings.llm_base_url,
            settings.youtube_api_url,
            settings.youtube_transcript_url,
            settings.discord_api_url,
            settings.twitter_api_url,
            settings.telegram_api_url,
        ]
        internal = [
            settings.resolved_api_url,
            settings.resolved_prefect_api_url,
            settings.database_url,
            settings.dxtabase_url,
            settings.chroma_url,
            settings.chain_rpc_url,
        ]
        exempt = {f"{host}:{port}" for host, port in filter(None, map(service_address, services))}
        return cls(
            allow_private=settings.web_allow_private,
            allowed_hosts=frozenset({h.lower() for h in settings.web_allowed_hosts} | exempt),
            internal=frozenset(filter(None, map(service_address, internal))),
        )

    def _exempt(self, host: str, port: int) -> bool:
        host = _normal_host(host)
        return self.allow_private or host in self.allowed_hosts or f"{host}:{port}" in self.allowed_hosts

    def check_scheme(self, url: str, field: str = "url") -> tuple[str, str, int]:
        """Refuse anything but absolute http(s) URLs; returns (scheme, host, port)."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ALLOWED_SCHEMES:
            raise EgressDenied(
                f"only http and https URLs are allowed, not {parts.scheme or 'a relative'} URL: {url}", field=field
            )
        try:
            port = parts.port
        except ValueError:
            raise EgressDenied(f"bad port in URL: {url}", field=field) from None
        if not parts.hostname:
            raise EgressDenied(f"URL has no host: {url}", field=field)
        return parts.scheme.lower(), parts.hostname, port or (443 if parts.scheme.lower() == "https" else 80)

    async def resolve(self, url: str, field: str = "url") -> Resolved:
        """Check a URL and return the address to connect to; raises :class:`EgressDenied`."""
        _, host, port = self.check_scheme(url, field)
        addresses = await _addresses(host, port, url, field)
        if await self._is_internal_service(host, port, addresses):
            raise EgressDenied(
                f"{url} is one of the platform's internal services, which user code may not reach", field=field
            )
        if not self._exempt(host, port):
            internal = [str(a) for a in addresses if is_internal(a)]
            # One internal answer refuses the host: a mixed answer is how DNS rebinding starts.
            if internal:
                raise EgressDenied(
                    f"{url} resolves to a private, loopback or link-local address ({', '.join(internal)}); "
                    "agents may only reach public hosts",
                    field=field,
                )
        return Resolved(host=host, port=port, address=str(addresses[0]))

    async def _is_internal_service(self, host: str, port: int, addresses: list[IPAddress]) -> bool:
        for service_host, service_port in self.internal:
            if service_port != port:
                continue
            if _normal_host(host) == service_host:
                return True
            try:
                service = await _addresses(service_host, port, service_host, "url")
            except EgressDenied:  # an internal service whose name does not resolve here is matched by name only
                continue
            # Addresses are compared only where the service's is non-public: a public one may be shared
            # (a CDN), and there the name is what identifies the service.
            if {_unmapped(a) for a in service if is_internal(a)} & {_unmapped(a) for a in addresses}:
                return True
            # A service on this machine answers on every local address (and on all of them when it binds
            # 0.0.0.0), so any spelling of this machine with the service's port is the service.
            if any(is_this_machine(a) for a in service) and any(is_this_machine(a) for a in addresses):
                return True
        return False

    async def check(self, url: str, field: str = "url") -> None:
        await self.resolve(url, field)


async def _addresses(host: str, port: int, url: str, field: str) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]  # a literal address needs no lookup
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise EgressDenied(f"cannot resolve host {host!r}: {exc}", field=field) from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not addresses:
        raise EgressDenied(f"host {host!r} has no address", field=field)
    return addresses


class GuardedTransport(httpx.AsyncBaseTransport):
    """Checks each request (each redirect hop included) and connects to the very address it checked."""

    def __init__(self, policy: EgressPolicy, inner: httpx.AsyncBaseTransport | None = None):
        self.policy = policy
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resolved = await self.policy.resolve(str(request.url))
        extensions = dict(request.extensions)
        if request.url.scheme == "https":
            extensions["sni_hostname"] = resolved.host
        pinned = httpx.Request(
            request.method,
            request.url.copy_with(host=resolved.address),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        return await self.inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self.inner.aclose()
