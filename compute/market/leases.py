"""Leases: opened by a match, metered per second or billed per rental term, ended with a reason.

Leases are opened in batches by :mod:`compute.market.placement`. Every later step that moves money is one
database transaction holding the lease row locked, with an idempotency key on its ledger posting, so a
retry or a crash between steps never pays twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from compute import receipts
from compute.errors import ComputeError
from compute.ledger import Acct, balance, post
from compute.ledger.funds import slash
from compute.market.pricing import cost, platform_fee
from compute.market.proofs import proofs_of
from compute.models import Lease, Provider, UsageRecord, aware, utcnow
from compute.providers.registry import mark_down, reputation
from compute.provisions import Resources, capacity_group, shift_capacity
from compute.receipts import Domain
from compute.store import Store
from cxmpute.errors import Conflict, CxmputeError, Forbidden, NotFound
from cxmpute.settings import get_settings

EndReason = Literal["completed", "user-cancelled", "provider-lost", "out-of-funds", "expired"]
USER_REASONS = {"user-cancelled"}
PROVIDER_REASONS = {"completed", "provider-lost"}
FAILURES = {"provider-lost"}


class LeaseOut(BaseModel):
    id: str
    user: str
    provider: str
    provision_id: str
    kind: str
    cpu: int
    memory_mb: int
    gpu_count: int
    disk_gb: int
    compute_units: int
    price_gwei: int
    term: str
    duration_s: int
    model: str | None
    image: str | None
    auto_renew: bool
    renewals: int
    escrow_gwei: int
    escrow_left_gwei: int
    metered_s: int
    paid_gwei: int
    status: str
    end_reason: str | None
    started_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    signature: str = Field(
        description="The platform's EIP-712 signature of this lease's receipt (alone, or with other leases in a batch)"
    )
    receipt_proof: list[str] = Field(
        default_factory=list,
        description="Merkle proof of this lease's receipt in "
        "its signed batch; empty when signed alone (compute.receipts)",
    )


class UsageIn(BaseModel):
    seconds: int = Field(..., gt=0, le=366 * 86400)
    idempotency_key: str = Field(..., min_length=1, max_length=150)


class UsageOut(BaseModel):
    id: str
    lease_id: str
    seconds: int
    amount_gwei: int
    fee_gwei: int
    signature: str
    lease: LeaseOut


class EndIn(BaseModel):
    reason: EndReason


_DERIVED = {"escrow_left_gwei", "receipt_proof"}


def out(session: Session, row: Lease, proof: list[str] | None = None) -> LeaseOut:
    """The lease as the API shows it; ``proof`` when the caller already read it (see :func:`outs`)."""
    if proof is None:
        proof = proofs_of(session, [(row.id, row.renewals)]).get(row.id, [])
    left = balance(session, Acct("escrow", row.id))
    return LeaseOut(
        escrow_left_gwei=left,
        receipt_proof=proof,
        **{c: getattr(row, c) for c in LeaseOut.model_fields if c not in _DERIVED},
    )


def outs(session: Session, rows: list[Lease]) -> list[LeaseOut]:
    proofs = proofs_of(session, [(row.id, row.renewals) for row in rows])
    return [out(session, row, proofs.get(row.id, [])) for row in rows]


def lease_message(row: Lease | LeaseOut) -> dict:
    """The signed content of a lease receipt (EIP-712 type ``Lease``), from the row or the API's view of it."""
    return {
        "lease": row.id,
        "user": row.user,
        "provider": row.provider,
        "provision": row.provision_id,
        "computeUnits": row.compute_units,
        "priceGwei": row.price_gwei,
        "term": row.term,
        "durationS": row.duration_s,
        "escrowGwei": row.escrow_gwei,
        "renewal": row.renewals,
    }


def usage_message(lease_id: str, key: str, seconds: int, amount: int, fee: int) -> dict:
    return {"lease": lease_id, "key": key, "seconds": seconds, "amountGwei": amount, "feeGwei": fee}


def _bill_term(session: Session, row: Lease, amount: int) -> None:
    fee = platform_fee(amount)
    post(
        session,
        key=f"rent:{row.id}:{row.renewals}",
        kind="rental",
        reference=row.id,
        signature=row.signature,
        entries=[
            (Acct("user", row.user), -amount),
            (Acct("earnings", row.provider), amount - fee),
            (Acct("fee", "platform"), fee),
        ],
    )
    row.paid_gwei += amount


def _locked(session: Session, lease_id: str) -> Lease:
    row = session.get(Lease, lease_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFound(f"no lease {lease_id}", field="lease_id")
    return row


def meter(store: Store, domain: Domain, lease_id: str, usage: UsageIn, caller: str) -> UsageOut:
    """Settle ``seconds`` of use from escrow to the provider (less the fee), exactly once per key.

    Use beyond what the escrow covers is capped and the lease ends out-of-funds.
    """
    with store.write() as session:
        return meter_in(session, domain, lease_id, usage, caller)


def meter_in(session: Session, domain: Domain, lease_id: str, usage: UsageIn, caller: str) -> UsageOut:
    """:func:`meter` inside the caller's transaction, so usage can settle atomically with other writes."""
    key = f"{lease_id}:{usage.idempotency_key}"
    row = _locked(session, lease_id)
    if caller != row.provider:
        raise Forbidden("only the lease's provider reports its usage", field="lease_id")
    done = session.scalar(select(UsageRecord).where(UsageRecord.idempotency_key == key))
    if done is not None:
        return _usage_out(session, done, row)
    if row.status != "active":
        raise Conflict(f"lease has ended ({row.end_reason})", field="lease_id")
    if row.term != "seconds":
        raise ComputeError("rentals are billed per term, not metered", field="lease_id")
    seconds = min(usage.seconds, row.duration_s - row.metered_s)
    left = balance(session, Acct("escrow", row.id))
    per_second = cost(row.price_gwei, row.compute_units, 1)
    seconds = min(seconds, left // per_second)
    amount = seconds * per_second
    fee = platform_fee(amount)
    signature = receipts.sign(domain, "Usage", usage_message(row.id, key, seconds, amount, fee))
    record = UsageRecord(
        id=str(uuid.uuid4()),
        lease_id=row.id,
        idempotency_key=key,
        seconds=seconds,
        amount_gwei=amount,
        fee_gwei=fee,
        signature=signature,
        created_at=utcnow(),
    )
    session.add(record)
    if amount:
        post(
            session,
            key=f"usage:{key}",
            kind="usage",
            reference=row.id,
            signature=signature,
            entries=[
                (Acct("escrow", row.id), -amount),
                (Acct("earnings", row.provider), amount - fee),
                (Acct("fee", "platform"), fee),
            ],
        )
    row.metered_s += seconds
    row.paid_gwei += amount
    if seconds < usage.seconds and row.metered_s < row.duration_s:
        _end(session, row, "out-of-funds")
    session.flush()
    return _usage_out(session, record, row)


def _usage_out(session: Session, record: UsageRecord, row: Lease) -> UsageOut:
    return UsageOut(
        id=record.id,
        lease_id=record.lease_id,
        seconds=record.seconds,
        amount_gwei=record.amount_gwei,
        fee_gwei=record.fee_gwei,
        signature=record.signature,
        lease=out(session, row),
    )


def end(store: Store, lease_id: str, reason: EndReason, caller: str | None) -> LeaseOut:
    """End a lease. The user may cancel; the provider may complete it or declare itself lost;
    the platform (``caller=None``) may end it for any reason. Ending twice changes nothing."""
    with store.write() as session:
        return end_in(session, lease_id, reason, caller)


def end_in(session: Session, lease_id: str, reason: EndReason, caller: str | None) -> LeaseOut:
    """:func:`end` inside the caller's transaction."""
    row = _locked(session, lease_id)
    if caller is not None:
        if caller not in (row.user, row.provider):
            raise Forbidden("lease belongs to other accounts", field="lease_id")
        allowed = (USER_REASONS if caller == row.user else set()) | (
            PROVIDER_REASONS if caller == row.provider else set()
        )
        if reason not in allowed:
            raise Forbidden(f"you cannot end this lease as {reason!r}", field="reason")
    if row.status == "active":
        _end(session, row, reason)
    session.flush()
    return out(session, row)


def _end(session: Session, row: Lease, reason: str) -> None:
    # Lock order everywhere: lease, provision, provider, then ledger accounts (by id) — so concurrent
    # matches, ends and metering never wait on each other in a cycle.
    shift_capacity(
        session,
        capacity_group(session, row.provision_id),
        Resources(cpu=row.cpu, memory_mb=row.memory_mb, gpu_count=row.gpu_count, disk_gb=row.disk_gb),
        1,
    )
    provider = session.get(Provider, row.provider, with_for_update=True)
    left = balance(session, Acct("escrow", row.id))
    if left:
        post(
            session,
            key=f"refund:{row.id}",
            kind="refund",
            reference=row.id,
            entries=[(Acct("escrow", row.id), -left), (Acct("user", row.user), left)],
        )
    if reason in FAILURES:
        provider.leases_failed += 1
        slash(session, row.provider, row.user, row.id)
    else:
        provider.leases_completed += 1
    provider.reputation = reputation(provider)
    row.status, row.end_reason, row.ended_at = "ended", reason, utcnow()


def renew(store: Store, domain: Domain, lease_id: str, caller: str | None) -> LeaseOut:
    """Bill the next rental term upfront and extend the lease by it."""
    with store.write() as session:
        row = _locked(session, lease_id)
        if caller is not None and caller != row.user:
            raise Forbidden("only the lease's user renews it", field="lease_id")
        if row.status != "active":
            raise Conflict(f"lease has ended ({row.end_reason})", field="lease_id")
        if row.term == "seconds":
            raise ComputeError("only rentals renew", field="lease_id")
        _renew(session, domain, row)
        session.flush()
        return out(session, row)


def _renew(session: Session, domain: Domain, row: Lease) -> None:
    row.renewals += 1
    row.expires_at = row.expires_at + timedelta(seconds=row.duration_s)
    row.signature = receipts.sign(domain, "Lease", lease_message(row))
    _bill_term(session, row, cost(row.price_gwei, row.compute_units, row.duration_s))


def expire_due(store: Store, domain: Domain, now: datetime | None = None, limit: int = 500) -> list[str]:
    """Renew or end every lease past its expiry; returns the ids handled. Safe to run from any process."""
    now = now or utcnow()
    with store.read() as session:
        ids = session.scalars(
            select(Lease.id)
            .where(Lease.status == "active", Lease.expires_at <= now)
            .order_by(Lease.expires_at)
            .limit(limit)
        ).all()
    for lease_id in ids:
        try:
            with store.write() as session:
                row = _locked(session, lease_id)
                if row.status != "active" or aware(row.expires_at) > now:
                    continue
                if row.auto_renew:
                    with session.begin_nested():
                        _renew(session, domain, row)
                    continue
                _end(session, row, "expired")
        except CxmputeError:  # a renewal the user can no longer pay ends the lease instead
            with store.write() as session:
                row = _locked(session, lease_id)
                if row.status == "active":
                    _end(session, row, "out-of-funds")
    return list(ids)


def reap_lost(store: Store, missed_heartbeats: int = 3, now_ts: float | None = None) -> list[str]:
    """End, as ``provider-lost``, the active leases of providers whose heartbeats stopped.

    Only providers that have sent heartbeats are judged by them; returns the ids of the leases ended.
    """
    now_ts = now_ts or utcnow().timestamp()
    # Timestamps are whole seconds: the same one-second allowance as ``registry.is_alive``.
    cutoff = int(now_ts - missed_heartbeats * get_settings().heartbeat_interval_s - 1)
    with store.read() as session:
        ids = session.scalars(
            select(Lease.id)
            .join(Provider, Provider.address == Lease.provider)
            .where(Lease.status == "active", Provider.last_heartbeat_ts > 0, Provider.last_heartbeat_ts < cutoff)
        ).all()
        silent = session.scalars(
            select(Provider.address).where(Provider.last_heartbeat_ts > 0, Provider.last_heartbeat_ts < cutoff)
        ).all()
    if silent:
        with store.write() as session:
            for address in silent:
                mark_down(session, address)
    for lease_id in ids:
        end(store, lease_id, "provider-lost", None)
    return list(ids)


def get(store: Store, lease_id: str, caller: str) -> LeaseOut:
    with store.read() as session:
        row = session.get(Lease, lease_id)
        if row is None:
            raise NotFound(f"no lease {lease_id}", field="lease_id")
        if caller not in (row.user, row.provider):
            raise Forbidden("lease belongs to other accounts", field="lease_id")
        return out(session, row)


def list_for(store: Store, account: str, status: str | None = None, limit: int = 200) -> list[LeaseOut]:
    with store.read() as session:
        stmt = select(Lease).where(or_(Lease.user == account, Lease.provider == account))
        if status:
            stmt = stmt.where(Lease.status == status)
        rows = session.scalars(stmt.order_by(Lease.started_at.desc()).limit(limit)).all()
        return outs(session, list(rows))
