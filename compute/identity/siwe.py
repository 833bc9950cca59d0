"""Sign-In with Ethereum (EIP-4361): message format, checks, single-use nonces and session tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta, timezone

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_address, to_checksum_address
from pydantic import BaseModel, Field
from sqlalchemy import update

from compute.errors import Unauthorized
from compute.models import AuthNonce, AuthSession, aware, utcnow
from compute.store import Store
from cxmpute.settings import get_settings

CLOCK_SKEW = timedelta(minutes=5)


class SiweMessage(BaseModel):
    domain: str
    address: str
    statement: str | None = None
    uri: str
    version: str = "1"
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime | None = None
    not_before: datetime | None = None

    def text(self) -> str:
        lines = [f"{self.domain} wants you to sign in with your Ethereum account:", self.address, ""]
        if self.statement:
            lines += [self.statement, ""]
        lines += [f"URI: {self.uri}", f"Version: {self.version}", f"Chain ID: {self.chain_id}",
                  f"Nonce: {self.nonce}", f"Issued At: {_iso(self.issued_at)}"]
        if self.expiration_time:
            lines.append(f"Expiration Time: {_iso(self.expiration_time)}")
        if self.not_before:
            lines.append(f"Not Before: {_iso(self.not_before)}")
        return "\n".join(lines)

    @classmethod
    def parse(cls, text: str) -> SiweMessage:
        match = _PATTERN.fullmatch(text.strip("\n"))
        if not match:
            raise Unauthorized("not an EIP-4361 sign-in message", field="message")
        fields = dict(_FIELD.findall(match["fields"]))
        try:
            return cls(domain=match["domain"], address=match["address"], statement=match["statement"],
                       uri=fields["URI"], version=fields["Version"], chain_id=int(fields["Chain ID"]),
                       nonce=fields["Nonce"], issued_at=fields["Issued At"],
                       expiration_time=fields.get("Expiration Time"), not_before=fields.get("Not Before"))
        except (KeyError, ValueError) as exc:
            raise Unauthorized(f"sign-in message is missing or has a bad field: {exc}", field="message") from exc


_PATTERN = re.compile(
    r"(?:[a-z][a-z0-9+.-]*://)?(?P<domain>[^\s/]+) wants you to sign in with your Ethereum account:\n"
    r"(?P<address>0x[0-9a-fA-F]{40})\n\n(?:(?P<statement>[^\n]+)\n\n)?(?P<fields>(?:[A-Za-z ]+: [^\n]*\n?)+)")
_FIELD = re.compile(r"^([A-Za-z ]+): ([^\n]*)$", re.M)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class Nonce(BaseModel):
    nonce: str
    domain: str
    expires_at: datetime
    chain_ids: list[int]


class SessionToken(BaseModel):
    token: str
    address: str
    chain_id: int
    expires_at: datetime


def issue_nonce(store: Store) -> Nonce:
    settings = get_settings()
    nonce = secrets.token_hex(12)
    expires = utcnow() + timedelta(seconds=settings.siwe_nonce_ttl_s)
    with store.write() as session:
        session.add(AuthNonce(nonce=nonce, expires_at=expires, used=False))
    return Nonce(nonce=nonce, domain=settings.siwe_domain, expires_at=expires, chain_ids=settings.allowed_chain_ids)


def sign_in(store: Store, message: str, signature: str) -> SessionToken:
    """Check every clause of the message and its signature, then consume its nonce and open a session.

    Nothing is written unless every check passes, so a refused attempt leaves the nonce usable by its owner.
    """
    settings = get_settings()
    msg = SiweMessage.parse(message)
    now = utcnow()
    if msg.domain != settings.siwe_domain:
        raise Unauthorized(f"message is for domain {msg.domain!r}, this is {settings.siwe_domain!r}", field="domain")
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
    if not is_address(msg.address):
        raise Unauthorized("bad address", field="address")
    try:
        signer = Account.recover_message(encode_defunct(text=message), signature=signature)
    except Exception as exc:  # any malformed signature is a failed sign-in, never a 500
        raise Unauthorized("signature is malformed", field="signature") from exc
    if signer != to_checksum_address(msg.address):
        raise Unauthorized("signature does not match the address", field="signature")
    token = "cxs_" + secrets.token_urlsafe(32)
    expires = now + timedelta(seconds=settings.session_ttl_s)
    with store.write() as session:
        consumed = session.execute(
            update(AuthNonce).where(AuthNonce.nonce == msg.nonce, AuthNonce.used.is_(False),
                                    AuthNonce.expires_at > now).values(used=True)).rowcount
        if consumed != 1:
            raise Unauthorized("nonce is unknown, expired or already used", field="nonce")
        session.add(AuthSession(token_hash=token_hash(token), address=signer, chain_id=msg.chain_id,
                                expires_at=expires, revoked=False))
    return SessionToken(token=token, address=signer, chain_id=msg.chain_id, expires_at=expires)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def message_for(address: str, nonce: Nonce, chain_id: int, *, ttl: timedelta = timedelta(minutes=10),
                statement: str | None = "Sign in to Cxmpute") -> SiweMessage:
    """The message a wallet signs for ``nonce`` (used by the CLI and by clients in tests)."""
    now = utcnow()
    return SiweMessage(domain=nonce.domain, address=to_checksum_address(address), statement=statement,
                       uri=f"http://{nonce.domain}", chain_id=chain_id, nonce=nonce.nonce, issued_at=now,
                       expiration_time=now + ttl)


class SignInRequest(BaseModel):
    message: str = Field(..., max_length=4000)
    signature: str = Field(..., max_length=200)
