"""The EIP-4361 (Sign-In with Ethereum) message a wallet signs: its fields, its text, and the nonce the
platform issues for it. The platform's checks of a signed message live in ``compute.identity.siwe``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eth_utils import to_checksum_address
from pydantic import BaseModel, Field

HEADER = " wants you to sign in with your Ethereum account:"


class Nonce(BaseModel):
    nonce: str
    domain: str
    uri: str = Field(..., description="The URI to sign: this server's origin")
    expires_at: datetime
    chain_ids: list[int]


class SiweMessage(BaseModel):
    scheme: str | None = None
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
    request_id: str | None = None
    resources: list[str] = Field(default_factory=list)

    def text(self) -> str:
        origin = f"{self.scheme}://{self.domain}" if self.scheme else self.domain
        lines = [origin + HEADER, self.address, ""]
        # With no statement the grammar keeps both blank lines: "address LF LF [ statement LF ] LF".
        lines += [self.statement, ""] if self.statement else [""]
        lines += [
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {iso(self.issued_at)}",
        ]
        if self.expiration_time:
            lines.append(f"Expiration Time: {iso(self.expiration_time)}")
        if self.not_before:
            lines.append(f"Not Before: {iso(self.not_before)}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources:
            lines += ["Resources:"] + [f"- {resource}" for resource in self.resources]
        return "\n".join(lines)


def message_for(
    address: str,
    nonce: Nonce,
    chain_id: int,
    *,
    ttl: timedelta = timedelta(minutes=10),
    statement: str | None = "Sign in to Cxmpute",
) -> SiweMessage:
    """The message a wallet signs for ``nonce`` (the platform client's sign-in, and clients in tests)."""
    now = datetime.now(UTC)
    return SiweMessage(
        domain=nonce.domain,
        address=to_checksum_address(address),
        statement=statement,
        uri=nonce.uri,
        chain_id=chain_id,
        nonce=nonce.nonce,
        issued_at=now,
        expiration_time=now + ttl,
    )


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
