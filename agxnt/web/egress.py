"""The egress policy: web agents may reach the public internet, never the provider's own network.

Every URL is checked by scheme and by the addresses its host resolves to (not by its spelling, so
``localhost``, ``127.1``, ``0x7f000001`` and a DNS name pointing at loopback are all caught). The
HTTP transport pins the connection to the checked address, so a second DNS answer cannot swap in a
private one, and it runs on every redirect hop; the browser checks every request it makes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from cxmpute.settings import Settings

from agxnt.errors import Forbidden

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")

# Cloud metadata services answer on these even where they are not in a "private" range.
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
             ipaddress.ip_address("100.100.100.200")}


class EgressDenied(Forbidden):
    """A URL the policy refuses; raised with the input field that carried it."""


def is_internal(ip: IPAddress) -> bool:
    """Whether an address belongs to a private, loopback, link-local or otherwise non-public network."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip in _METADATA or ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified or not ip.is_global)


@dataclass(frozen=True)
class Resolved:
    host: str
    port: int
    address: str


@dataclass(frozen=True)
class EgressPolicy:
    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()  # "name" or "name:port", exempt from the address check

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        return cls(allow_private=settings.web_allow_private,
                   allowed_hosts=frozenset(h.lower() for h in settings.web_allowed_hosts))

    def _exempt(self, host: str, port: int) -> bool:
        return self.allow_private or host.lower() in self.allowed_hosts or f"{host.lower()}:{port}" in self.allowed_hosts

    def check_scheme(self, url: str, field: str = "url") -> tuple[str, str, int]:
        """Refuse anything but absolute http(s) URLs; returns (scheme, host, port)."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ALLOWED_SCHEMES:
            raise EgressDenied(f"only http and https URLs are allowed, not {parts.scheme or 'a relative'} URL: {url}",
                               field=field)
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
        try:
            addresses = [ipaddress.ip_address(host)]  # a literal address needs no lookup
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise EgressDenied(f"cannot resolve host {host!r}: {exc}", field=field) from None
            addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
        if not addresses:
            raise EgressDenied(f"host {host!r} has no address", field=field)
        if not self._exempt(host, port):
            internal = [str(a) for a in addresses if is_internal(a)]
            # One internal answer refuses the host: a mixed answer is how DNS rebinding starts.
            if internal:
                raise EgressDenied(
                    f"{url} resolves to a private, loopback or link-local address ({', '.join(internal)}); "
                    "web agents may only reach public hosts", field=field)
        return Resolved(host=host, port=port, address=str(addresses[0]))

    async def check(self, url: str, field: str = "url") -> None:
        await self.resolve(url, field)
