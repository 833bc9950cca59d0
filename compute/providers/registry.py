"""Provider registration and heartbeats, both signed by the provider's wallet as EIP-712 typed data."""

from __future__ import annotations

import time
from datetime import datetime

from eth_utils import is_address, to_checksum_address
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import update
from sqlalchemy.orm import Session

from compute import receipts
from compute.market.follow import mark
from compute.models import Provider, Provision, utcnow
from compute.providers.hardware import HardwareProfile
from compute.receipts import Domain
from compute.store import Store
from cxmpute.errors import Forbidden, NotFound, Unauthorized
from cxmpute.settings import get_settings

MAX_SKEW_S = 300


class Registration(BaseModel):
    name: str = Field(..., min_length=1, max_length=100)
    region: str = Field("local", min_length=1, max_length=64)
    profile: HardwareProfile
    issued_at: int = Field(..., description="Unix seconds when the provider signed")
    signature: str = Field(..., max_length=200)

    def typed(self, provider: str) -> dict:
        return {
            "provider": provider,
            "name": self.name,
            "region": self.region,
            "profileHash": self.profile.digest(),
            "issuedAt": self.issued_at,
        }


class Heartbeat(BaseModel):
    provider: str
    timestamp: int = Field(..., description="Unix seconds; must increase from one heartbeat to the next")
    signature: str = Field(..., max_length=200)

    @field_validator("provider")
    @classmethod
    def _address(cls, value: str) -> str:
        if not is_address(value):
            raise ValueError("not an EVM address")
        return to_checksum_address(value)

    def typed(self) -> dict:
        return {"provider": self.provider, "timestamp": self.timestamp}


class ProviderOut(BaseModel):
    address: str
    name: str
    region: str
    profile: HardwareProfile
    benchmark_score: float
    registered_at: datetime
    heartbeats: int
    last_heartbeat_ts: int
    leases_completed: int
    leases_failed: int
    reputation: float
    stake_unlocks_at: datetime | None


def out(row: Provider) -> ProviderOut:
    return ProviderOut(
        address=row.address,
        name=row.name,
        region=row.region,
        profile=row.profile,
        benchmark_score=row.benchmark_score,
        registered_at=row.registered_at,
        heartbeats=row.heartbeats,
        last_heartbeat_ts=row.last_heartbeat_ts,
        leases_completed=row.leases_completed,
        leases_failed=row.leases_failed,
        reputation=row.reputation,
        stake_unlocks_at=row.stake_unlocks_at,
    )


def _signed_by(domain: Domain, primary: str, message: dict, signature: str, address: str) -> None:
    try:
        signer = receipts.signer_of(domain, primary, message, signature)
    except Exception as exc:  # malformed signatures are refused like wrong ones
        raise Unauthorized("signature is malformed", field="signature") from exc
    if signer != address:
        raise Unauthorized(f"{primary} is not signed by {address}", field="signature")


def register(store: Store, domain: Domain, address: str, reg: Registration) -> ProviderOut:
    if abs(time.time() - reg.issued_at) > MAX_SKEW_S:
        raise Unauthorized("registration is stale or from the future", field="issued_at")
    _signed_by(domain, "ProviderRegistration", reg.typed(address), reg.signature, address)
    with store.write() as session:
        row = session.get(Provider, address)
        if row is None:
            row = Provider(
                address=address,
                registered_at=utcnow(),
                last_heartbeat_ts=0,
                heartbeats=0,
                leases_completed=0,
                leases_failed=0,
                reputation=0.5,
            )
            session.add(row)
        row.name, row.region = reg.name, reg.region
        row.profile = reg.profile.model_dump()
        row.benchmark_score = reg.profile.benchmark_score
        session.flush()
        return out(row)


def heartbeat(store: Store, domain: Domain, hb: Heartbeat, caller: str | None) -> ProviderOut:
    """Record a heartbeat; its signature is the credential, and a signed-in caller must be the provider."""
    if caller is not None and caller != hb.provider:
        raise Forbidden("cannot send heartbeats for another provider", field="provider")
    _signed_by(domain, "Heartbeat", hb.typed(), hb.signature, hb.provider)
    if abs(time.time() - hb.timestamp) > MAX_SKEW_S:
        raise Unauthorized("heartbeat timestamp is too far from now", field="timestamp")
    with store.write() as session:
        row = session.get(Provider, hb.provider, with_for_update=True)
        if row is None:
            raise NotFound("provider is not registered", field="provider")
        if hb.timestamp <= row.last_heartbeat_ts:
            raise Unauthorized("heartbeat replayed: timestamp is not newer than the last one", field="timestamp")
        row.last_heartbeat_ts = hb.timestamp
        row.heartbeats += 1
        revived = session.execute(
            update(Provision)
            .where(Provision.provider == hb.provider, Provision.status == "down")
            .values(status="active", updated_at=utcnow())
        ).rowcount
        if revived:
            mark(session, providers=[hb.provider])
        row.reputation = reputation(row)
        session.flush()
        return out(row)


def is_alive(row: Provider, now_ts: float | None = None, missed_heartbeats: int = 3) -> bool:
    """Whether a provider that heartbeats has sent one within the last ``missed_heartbeats`` intervals."""
    now_ts = now_ts or time.time()
    # Timestamps are whole seconds, so a beat sent just now may read up to a second old.
    allowed = missed_heartbeats * get_settings().heartbeat_interval_s + 1
    return row.last_heartbeat_ts == 0 or now_ts - row.last_heartbeat_ts <= allowed


def mark_down(session: Session, address: str) -> int:
    """Take a silent provider's active provisions out of matching until its next heartbeat."""
    downed = session.execute(
        update(Provision)
        .where(Provision.provider == address, Provision.status == "active")
        .values(status="down", updated_at=utcnow())
    ).rowcount
    if downed:
        mark(session, providers=[address])
    return downed


def reputation(row: Provider) -> float:
    """Laplace-smoothed success rate of leases, weighted by uptime (heartbeats seen vs expected)."""
    success = (row.leases_completed + 1) / (row.leases_completed + row.leases_failed + 2)
    interval = get_settings().heartbeat_interval_s
    registered = row.registered_at.timestamp() if row.registered_at else time.time()
    age = max(interval, time.time() - registered)
    uptime = min(1.0, row.heartbeats * interval / age)
    return round(success * (0.5 + 0.5 * uptime), 4)


def get(store: Store, address: str) -> ProviderOut:
    with store.read() as session:
        row = session.get(Provider, address)
        if row is None:
            raise NotFound("provider is not registered", field="provider")
        return out(row)
