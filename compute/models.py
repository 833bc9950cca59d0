"""Tables of the compute network. Money columns hold gwei (1e-9 of the chain's native token) as integers."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cxmpute.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every one stored here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class AuthNonce(Base):
    __tablename__ = "cx_auth_nonces"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    client: Mapped[str] = mapped_column(String(64), index=True, default="")


class AuthSession(Base):
    __tablename__ = "cx_auth_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), index=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiKey(Base):
    __tablename__ = "cx_api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(42), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Provider(Base):
    __tablename__ = "cx_providers"
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    region: Mapped[str] = mapped_column(String(64))
    profile: Mapped[dict] = mapped_column(JSON)
    benchmark_score: Mapped[float] = mapped_column(Float)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_heartbeat_ts: Mapped[int] = mapped_column(BigInteger, default=0)
    heartbeats: Mapped[int] = mapped_column(Integer, default=0)
    leases_completed: Mapped[int] = mapped_column(Integer, default=0)
    leases_failed: Mapped[int] = mapped_column(Integer, default=0)
    reputation: Mapped[float] = mapped_column(Float, default=0.5)
    stake_unlocks_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ChainClaim(Base):
    """A deposit or stake event credited once: the (chain, tx, log) triple can never be claimed twice."""

    __tablename__ = "cx_chain_claims"
    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tx_hash: Mapped[str] = mapped_column(String(66), primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(42), index=True)
    amount_wei: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Provision(Base):
    __tablename__ = "cx_provisions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    provider: Mapped[str] = mapped_column(String(42), ForeignKey("cx_providers.address"), index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    cpu: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    gpu_count: Mapped[int] = mapped_column(Integer)
    gpu_model: Mapped[str] = mapped_column(String(64))
    disk_gb: Mapped[int] = mapped_column(Integer)
    free_cpu: Mapped[int] = mapped_column(Integer)
    free_memory_mb: Mapped[int] = mapped_column(Integer)
    free_gpu: Mapped[int] = mapped_column(Integer)
    free_disk_gb: Mapped[int] = mapped_column(Integer)
    price_gwei: Mapped[int] = mapped_column(BigInteger)
    models: Mapped[list] = mapped_column(JSON)
    images: Mapped[list] = mapped_column(JSON)
    region: Mapped[str] = mapped_column(String(64))
    available_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    # Provisions of one group are offers of the same machine: they share its free capacity (their free_*
    # columns move together), so a provider offering agent, container and vm work is never sold twice over.
    capacity_group: Mapped[str | None] = mapped_column(String(36), index=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Lease(Base):
    __tablename__ = "cx_leases"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user: Mapped[str] = mapped_column(String(42), index=True)
    provider: Mapped[str] = mapped_column(String(42), index=True)
    provision_id: Mapped[str] = mapped_column(String(36), ForeignKey("cx_provisions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    cpu: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    gpu_count: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    compute_units: Mapped[int] = mapped_column(Integer)
    price_gwei: Mapped[int] = mapped_column(BigInteger)
    term: Mapped[str] = mapped_column(String(8))
    duration_s: Mapped[int] = mapped_column(BigInteger)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    image: Mapped[str | None] = mapped_column(String(300), nullable=True)
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=False)
    renewals: Mapped[int] = mapped_column(Integer, default=0)
    escrow_gwei: Mapped[int] = mapped_column(BigInteger, default=0)
    metered_s: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_gwei: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(8), index=True)
    end_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    signature: Mapped[str] = mapped_column(String(140))


class UsageRecord(Base):
    __tablename__ = "cx_usage"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lease_id: Mapped[str] = mapped_column(String(36), ForeignKey("cx_leases.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    seconds: Mapped[int] = mapped_column(BigInteger)
    amount_gwei: Mapped[int] = mapped_column(BigInteger)
    fee_gwei: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(String(140))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LedgerAccount(Base):
    __tablename__ = "cx_ledger_accounts"
    __table_args__ = (UniqueConstraint("kind", "owner"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(80))
    balance: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerTx(Base):
    __tablename__ = "cx_ledger_txs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    reference: Mapped[str | None] = mapped_column(String(80), nullable=True, index=True)
    memo: Mapped[str] = mapped_column(String(300), default="")
    signature: Mapped[str | None] = mapped_column(String(140), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LedgerEntry(Base):
    __tablename__ = "cx_ledger_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tx_id: Mapped[str] = mapped_column(String(36), ForeignKey("cx_ledger_txs.id"), index=True)
    account_id: Mapped[int] = mapped_column(Integer, ForeignKey("cx_ledger_accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)


class Job(Base):
    """One attempt at a piece of work dispatched to a provider worker, pushed to it over its job stream.

    Attempts of the same work share ``work_key``; at most one of them is ever accepted (``done``/``failed``).
    Each attempt number is recorded once, so two dispatchers placing the same attempt cannot both run it.
    """

    __tablename__ = "cx_jobs"
    __table_args__ = (Index("uq_cx_jobs_work_key_attempt", "work_key", "attempt", unique=True),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    work_key: Mapped[str] = mapped_column(String(200), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(42), index=True)
    provider: Mapped[str] = mapped_column(String(42), index=True)
    lease_id: Mapped[str] = mapped_column(String(36), ForeignKey("cx_leases.id"))
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), index=True)
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    error_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    cost_gwei: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
