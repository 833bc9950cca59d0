"""Sign-In with Ethereum (EIP-4361): message format, checks, single-use nonces and session tokens.

A message is read to the letter of the EIP's grammar: every line in its place, each field once, the address
in its EIP-55 checksummed form, the domain and the URI this server's. Nonces expire, are purged as new ones
are issued, and one client holds only a few unused at a time.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address
from pydantic import BaseModel, Field
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from compute.errors import ComputeError
from compute.models import AuthNonce, AuthSession, aware, utcnow
from compute.store import Store
from cxmpute import siwe as message
from cxmpute.errors import Unauthorized
from cxmpute.settings import get_settings
from cxmpute.siwe import HEADER, Nonce, message_for

# The wallet side of sign-in (the message and the nonce) lives with the platform client; re-exported here.
__all__ = ["HEADER", "Nonce", "SiweMessage", "delegated_session", "issue_nonce", "message_for", "sign_in", "token_hash"]
CLOCK_SKEW = timedelta(minutes=5)


class SiweMessage(message.SiweMessage):
    @classmethod
    def parse(cls, text: str) -> SiweMessage:
        """The message's fields, once every line is the one the grammar puts there (else a 401 naming it)."""
        lines = text.split("\n")
        header = _ORIGIN.fullmatch(lines[0])
        if header is None:
            raise _malformed(f"the first line must be '<domain>{HEADER}'")
        if len(lines) < 4 or not _ADDRESS.fullmatch(lines[1]) or lines[2] != "":
            raise _malformed("the second line must be the 0x address, followed by a blank line")
        if to_checksum_address(lines[1]) != lines[1]:
            raise Unauthorized(
                f"the address must be in its EIP-55 checksummed form, {to_checksum_address(lines[1])}", field="address"
            )
        statement, at = None, 4
        if lines[3] != "":
            if not _STATEMENT.fullmatch(lines[3]):
                raise Unauthorized("the statement may hold only URI characters and spaces", field="statement")
            if len(lines) < 5 or lines[4] != "":
                raise _malformed("the statement must be followed by a blank line")
            statement, at = lines[3], 5
        values: dict[str, str] = {}
        for tag, key, pattern, required in _FIELDS:
            line = lines[at] if at < len(lines) else None
            if line is not None and line.startswith(f"{tag}: "):
                value = line[len(tag) + 2 :]
                if not pattern.fullmatch(value):
                    raise Unauthorized(f"{tag} has a bad value: {value[:80]!r}", field=key)
                values[key], at = value, at + 1
            elif required:
                raise _misplaced(lines, at, tag, values)
        resources = []
        if at < len(lines) and lines[at] == "Resources:":
            at += 1
            while at < len(lines) and lines[at].startswith("- "):
                if not _URI.fullmatch(lines[at][2:]):
                    raise Unauthorized(f"resource {lines[at][2:80]!r} is not a URI", field="resources")
                resources.append(lines[at][2:])
                at += 1
        if at < len(lines):
            raise _misplaced(lines, at, None, values)
        return cls(
            scheme=header["scheme"],
            domain=header["domain"],
            address=lines[1],
            statement=statement,
            uri=values["uri"],
            version=values["version"],
            chain_id=int(values["chain_id"]),
            nonce=values["nonce"],
            issued_at=_moment(values, "issued_at"),
            expiration_time=_moment(values, "expiration_time"),
            not_before=_moment(values, "not_before"),
            request_id=values.get("request_id"),
            resources=resources,
        )


_ORIGIN = re.compile(r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<domain>[^\s/?#]+)" + re.escape(HEADER))
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
# RFC 3986's reserved and unreserved characters and the space: no line break, nothing a wallet shows unescaped.
_STATEMENT = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;= ]+")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]+")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_FIELDS = (
    ("URI", "uri", _URI, True),
    ("Version", "version", re.compile(r"[0-9]+"), True),
    ("Chain ID", "chain_id", re.compile(r"[1-9][0-9]{0,18}"), True),
    ("Nonce", "nonce", re.compile(r"[A-Za-z0-9]{8,64}"), True),
    ("Issued At", "issued_at", _DATETIME, True),
    ("Expiration Time", "expiration_time", _DATETIME, False),
    ("Not Before", "not_before", _DATETIME, False),
    ("Request ID", "request_id", re.compile(r"[\x21-\x7e]*"), False),
)
_TAGS = {tag for tag, *_ in _FIELDS} | {"Resources"}


def _malformed(detail: str) -> Unauthorized:
    return Unauthorized(f"not an EIP-4361 sign-in message: {detail}", field="message")


def _misplaced(lines: list[str], at: int, expected: str | None, seen: dict[str, str]) -> Unauthorized:
    line = lines[at] if at < len(lines) else None
    tag = line.partition(":")[0] if line else ""
    keys = {name: key for name, key, *_ in _FIELDS}
    if tag in keys and keys[tag] in seen:
        return _malformed(f"{tag!r} appears more than once")
    if tag in _TAGS and expected:
        return _malformed(f"{tag!r} is out of order: line {at + 1} must be {expected!r}")
    if line is None:
        return _malformed(f"{expected!r} is missing")
    return _malformed(f"line {at + 1} must be {expected!r}" if expected else f"unexpected line {at + 1}: {line[:80]!r}")


def _moment(values: dict[str, str], key: str) -> datetime | None:
    if key not in values:
        return None
    try:
        return datetime.fromisoformat(values[key])
    except ValueError as exc:  # the shape is RFC 3339's, the date is not a real one
        raise Unauthorized(f"{values[key]!r} is not a date and time: {exc}", field=key) from exc


class SessionToken(BaseModel):
    token: str
    address: str
    chain_id: int
    expires_at: datetime


class TooManyNonces(ComputeError):
    status_code = 429

    def __init__(self, retry_after: int):
        super().__init__(
            f"this client holds too many unused sign-in nonces; sign in with one, or retry in {retry_after}s",
            field="nonce",
        )
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def client_of(host: str | None) -> str:
    """Whom the nonce limit counts a request against: its IPv4 address, or its IPv6 /64 (one host's share)."""
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return (host or "unknown")[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def issue_nonce(store: Store, client: str) -> Nonce:
    settings = get_settings()
    now = utcnow()
    nonce = secrets.token_hex(12)
    expires = now + timedelta(seconds=settings.siwe_nonce_ttl_s)
    with store.write() as session:
        # A used or expired nonce signs nobody in again: the table keeps only the ones still usable.
        session.execute(delete(AuthNonce).where(or_(AuthNonce.used.is_(True), AuthNonce.expires_at <= now)))
        held = session.scalars(
            select(AuthNonce.expires_at).where(AuthNonce.client == client).order_by(AuthNonce.expires_at)
        ).all()
        full = len(held) >= settings.siwe_nonces_per_client
        if not full:
            session.add(AuthNonce(nonce=nonce, expires_at=expires, used=False, client=client))
    if full:
        # A place frees when enough of the held ones have expired.
        frees_at = aware(held[len(held) - settings.siwe_nonces_per_client])
        raise TooManyNonces(max(1, math.ceil((frees_at - now).total_seconds())))
    scheme = urlsplit(settings.resolved_api_url).scheme or "http"
    return Nonce(
        nonce=nonce,
        domain=settings.siwe_domain,
        uri=f"{scheme}://{settings.siwe_domain}",
        expires_at=expires,
        chain_ids=settings.allowed_chain_ids,
    )


def sign_in(store: Store, message: str, signature: str) -> SessionToken:
    """Check every clause of the message and its signature, then consume its nonce and open a session.

    Nothing is written unless every check passes, so a refused attempt leaves the nonce usable by its owner.
    """
    settings = get_settings()
    msg = SiweMessage.parse(message)
    now = utcnow()
    if msg.domain != settings.siwe_domain:
        raise Unauthorized(f"message is for domain {msg.domain!r}, this is {settings.siwe_domain!r}", field="domain")
    _check_uri(msg, settings.siwe_domain)
    if msg.chain_id not in settings.allowed_chain_ids:
        raise Unauthorized(f"chain id {msg.chain_id} is not accepted", field="chain_id")
    if msg.version != "1":
        raise Unauthorized("only version 1 sign-in messages are accepted", field="version")
    if msg.expiration_time is None:
        raise Unauthorized("message must carry an Expiration Time", field="expiration_time")
    if aware(msg.expiration_time) <= now:
        raise Unauthorized("sign-in message has expired", field="expiration_time")
    if aware(msg.issued_at) > now + CLOCK_SKEW:
        raise Unauthorized("message is issued in the future", field="issued_at")
    if msg.not_before and aware(msg.not_before) > now:
        raise Unauthorized("message is not valid yet", field="not_before")
    try:
        signer = Account.recover_message(encode_defunct(text=message), signature=signature)
    except Exception as exc:  # any malformed signature is a failed sign-in, never a 500
        raise Unauthorized("signature is malformed", field="signature") from exc
    if signer != msg.address:
        raise Unauthorized("signature does not match the address", field="signature")
    with store.write() as session:
        consumed = session.execute(
            update(AuthNonce)
            .where(AuthNonce.nonce == msg.nonce, AuthNonce.used.is_(False), AuthNonce.expires_at > now)
            .values(used=True)
        ).rowcount
        if consumed != 1:
            raise Unauthorized("nonce is unknown, expired or already used", field="nonce")
        return _open(session, signer, msg.chain_id, settings.session_ttl_s)


def delegated_session(store: Store, address: str, chain_id: int, ttl_s: int = 900) -> SessionToken:
    """A short session the platform opens itself for an account it acts for: an agent of that account's run
    calling the platform's own inference gateway, which bills the account as if it had called."""
    with store.write() as session:
        return _open(session, to_checksum_address(address), chain_id, ttl_s)


def _open(session: Session, address: str, chain_id: int, ttl_s: int) -> SessionToken:
    token = "cxs_" + secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(seconds=ttl_s)
    session.add(
        AuthSession(token_hash=token_hash(token), address=address, chain_id=chain_id, expires_at=expires, revoked=False)
    )
    return SessionToken(token=token, address=address, chain_id=chain_id, expires_at=expires)


def _check_uri(msg: SiweMessage, domain: str) -> None:
    """The URI is a page of this server: http(s), its authority the domain (no user info, no other port)."""
    try:
        parts = urlsplit(msg.uri)
    except ValueError as exc:
        raise Unauthorized(f"URI {msg.uri[:80]!r} is malformed", field="uri") from exc
    if parts.scheme not in ("http", "https") or parts.netloc != domain:
        raise Unauthorized(f"URI must be on this server (http(s)://{domain}), not {msg.uri[:80]!r}", field="uri")
    if msg.scheme is not None and msg.scheme != parts.scheme:
        raise Unauthorized(f"the message is for {msg.scheme}://{domain} but its URI is {parts.scheme}", field="uri")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SignInRequest(BaseModel):
    message: str = Field(..., max_length=4000)
    signature: str = Field(..., max_length=200)
