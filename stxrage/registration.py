"""Who may place blocks on a storage node, and who may add one to the platform.

A node keeps a random credential of its own (``<dir>/node.token``, readable by its owner only) and refuses
every block route to a caller that does not present it. The platform learns the credential when the node is
registered and presents it on each call; it never shows it again.

A provider registers a node by signing, with its wallet (EIP-712, in the platform's domain), the node's
address, a hash of the node's credential and the time: the registration binds that wallet to that address
and that credential, and is refused once stale.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
from pathlib import Path
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.messages import encode_typed_data

from cxmpute.keyfile import generated

CREDENTIAL_FILE = "node.token"
MIN_CREDENTIAL = 32
_CREDENTIAL = re.compile(r"^[\x21-\x7e]{32,200}$")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")

REGISTRATION = "StorageNodeRegistration"
_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    REGISTRATION: [
        {"name": "provider", "type": "address"},
        {"name": "url", "type": "string"},
        {"name": "credentialHash", "type": "bytes32"},
        {"name": "issuedAt", "type": "uint256"},
    ],
}


# ---- the node's credential --------------------------------------------------------------------


def new_credential() -> str:
    return "cxn_" + secrets.token_urlsafe(32)


def check_credential(credential: str) -> str:
    if not isinstance(credential, str) or not _CREDENTIAL.match(credential):
        raise ValueError(f"a node credential is {MIN_CREDENTIAL} to 200 printable characters without spaces")
    return credential


def node_credential(root: Path) -> str:
    """The credential kept in ``root``, created (mode 0600) on first use; concurrent starts agree on one."""
    root.mkdir(parents=True, exist_ok=True)
    return check_credential(generated(root / CREDENTIAL_FILE, new_credential))


def credential_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison, so response timing reveals nothing of the credential."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def credential_hash(credential: str) -> bytes:
    return hashlib.sha256(credential.encode()).digest()


# ---- the node's address -----------------------------------------------------------------------


def _refused_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why the platform must never send requests to ``ip`` on a node's behalf, or None."""
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return None
    if ip.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if ip.is_multicast or ip.is_reserved:
        return "a multicast or reserved address"
    return None


def node_url(url: str) -> str:
    """The canonical address of a storage node, ``http(s)://host[:port]``; ValueError says what is wrong."""
    if not isinstance(url, str) or not url or len(url) > 500:
        raise ValueError("a storage node URL is 1 to 500 characters")
    if any(not 0x21 <= ord(c) <= 0x7E for c in url) or "\\" in url:
        raise ValueError("a storage node URL is printable ASCII without spaces or backslashes")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"storage nodes are reached over http or https, not {scheme + '://' if scheme else url!r}")
    if "@" in parts.netloc:
        raise ValueError("a storage node URL carries no user name or password")
    if parts.path not in ("", "/") or "?" in url or "#" in url:
        raise ValueError("a storage node URL is scheme://host[:port], without a path, query or fragment")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")
    host = (parts.hostname or "").lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
        if not _HOST.match(host) or re.fullmatch(r"[0-9.]+", host):
            raise ValueError(f"{host!r} is not a host name or an IP address") from None
    if ip is not None and (why := _refused_address(ip)):
        raise ValueError(f"{host} is {why}")
    netloc = f"[{host}]" if ip is not None and ip.version == 6 else host
    return f"{scheme}://{netloc}" + (f":{port}" if port is not None else "")


def check_resolves_safely(url: str) -> None:
    """Refuse a node whose host name resolves to an address the platform must never call (a name, or a
    numeric spelling such as ``0xa9fea9fe``, that hides a link-local or unspecified address)."""
    parts = urlsplit(url)
    try:
        infos = socket.getaddrinfo(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), proto=socket.IPPROTO_TCP
        )
    except OSError:
        raise ValueError(f"{parts.hostname} does not resolve") from None
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if why := _refused_address(ip):
            raise ValueError(f"{parts.hostname} resolves to {ip}, {why}")


# ---- the provider's signature -----------------------------------------------------------------


def _typed(domain: dict, provider: str, url: str, credential: str, issued_at: int) -> dict:
    return {
        "types": _TYPES,
        "primaryType": REGISTRATION,
        "domain": domain,
        "message": {
            "provider": provider,
            "url": node_url(url),
            "credentialHash": credential_hash(credential),
            "issuedAt": issued_at,
        },
    }


def sign_registration(domain: dict, account: Account, url: str, credential: str, issued_at: int) -> str:
    """The provider's signature over a node registration; ``domain`` is the platform's EIP-712 domain."""
    typed = _typed(domain, account.address, url, credential, issued_at)
    return account.sign_message(encode_typed_data(full_message=typed)).signature.to_0x_hex()


def registration_signer(domain: dict, provider: str, url: str, credential: str, issued_at: int, signature: str) -> str:
    """The address that signed this registration (ValueError for a malformed signature)."""
    try:
        return Account.recover_message(
            encode_typed_data(full_message=_typed(domain, provider, url, credential, issued_at)), signature=signature
        )
    except Exception as exc:  # eth_account raises several types for malformed signatures
        raise ValueError("signature is malformed") from exc
