"""Posting balanced transactions, exactly once per idempotency key.

Account kinds: ``user`` (spendable balance), ``escrow`` (one per lease), ``earnings`` (provider),
``stake`` (provider), ``fee`` (the platform), ``chain`` (value held in the vault on a chain: the only
account allowed below zero, it mirrors what the platform owes outside itself).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from compute.errors import InsufficientFunds
from compute.models import LedgerAccount, LedgerEntry, LedgerTx

KINDS = ("user", "escrow", "earnings", "stake", "fee", "chain")
OWNED_KINDS = ("user", "earnings", "stake")


@dataclass(frozen=True, order=True)
class Acct:
    kind: str
    owner: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown ledger account kind {self.kind!r}")


class HistoryItem(BaseModel):
    tx_id: str
    kind: str
    account: str
    amount_gwei: int
    reference: str | None
    memo: str
    signature: str | None
    created_at: datetime


def _account_id(session: Session, acct: Acct) -> int:
    found = session.scalar(
        select(LedgerAccount.id).where(LedgerAccount.kind == acct.kind, LedgerAccount.owner == acct.owner)
    )
    if found is not None:
        return found
    try:
        with session.begin_nested():
            row = LedgerAccount(kind=acct.kind, owner=acct.owner, balance=0)
            session.add(row)
        return row.id
    except IntegrityError:  # created by a concurrent transaction a moment ago
        return session.scalar(
            select(LedgerAccount.id).where(LedgerAccount.kind == acct.kind, LedgerAccount.owner == acct.owner)
        )


def post(
    session: Session,
    *,
    key: str,
    kind: str,
    entries: list[tuple[Acct, int]],
    reference: str | None = None,
    memo: str = "",
    signature: str | None = None,
) -> tuple[LedgerTx, bool]:
    """Apply ``entries`` as one transaction in the caller's DB transaction.

    Returns ``(tx, applied)``; ``applied`` is False when ``key`` was already posted (nothing changes).
    Raises :class:`InsufficientFunds` (naming the account) when a balance would go below zero; the
    caller's transaction is then rolled back whole.
    """
    if sum(amount for _, amount in entries) != 0:
        raise ValueError(f"unbalanced transaction {key}: {entries}")
    existing = session.scalar(select(LedgerTx).where(LedgerTx.idempotency_key == key))
    if existing is not None:
        return existing, False
    tx = LedgerTx(
        id=str(uuid.uuid4()), idempotency_key=key, kind=kind, reference=reference, memo=memo[:300], signature=signature
    )
    try:
        with session.begin_nested():
            session.add(tx)
    except IntegrityError:  # the same key posted concurrently: that one wins, this is a no-op
        return session.scalar(select(LedgerTx).where(LedgerTx.idempotency_key == key)), False
    merged: dict[Acct, int] = {}
    for acct, amount in entries:
        merged[acct] = merged.get(acct, 0) + amount
    resolved = sorted((_account_id(session, acct), acct, amount) for acct, amount in merged.items() if amount)
    # Updating rows in id order keeps concurrent transactions from deadlocking on PostgreSQL.
    for account_id, acct, amount in resolved:
        stmt = update(LedgerAccount).where(LedgerAccount.id == account_id)
        if acct.kind != "chain" and amount < 0:
            stmt = stmt.where(LedgerAccount.balance + amount >= 0)
        if session.execute(stmt.values(balance=LedgerAccount.balance + amount)).rowcount != 1:
            raise InsufficientFunds(
                f"{acct.kind} balance of {acct.owner} is below {-amount} gwei", field=f"{acct.kind}_balance"
            )
        session.add(LedgerEntry(tx_id=tx.id, account_id=account_id, amount=amount))
    session.flush()
    return tx, True


def balance(session: Session, acct: Acct) -> int:
    return (
        session.scalar(
            select(LedgerAccount.balance).where(LedgerAccount.kind == acct.kind, LedgerAccount.owner == acct.owner)
        )
        or 0
    )


def balances(session: Session, owner: str) -> dict[str, int]:
    rows = session.execute(
        select(LedgerAccount.kind, LedgerAccount.balance).where(
            LedgerAccount.owner == owner, LedgerAccount.kind.in_(OWNED_KINDS)
        )
    ).all()
    return {kind: 0 for kind in OWNED_KINDS} | {kind: bal for kind, bal in rows}


def total(session: Session) -> int:
    """Sum of every account's balance: zero whenever the books are consistent."""
    return int(session.scalar(select(func.coalesce(func.sum(LedgerAccount.balance), 0))))


def history(session: Session, owner: str, limit: int = 100) -> list[HistoryItem]:
    rows = session.execute(
        select(LedgerTx, LedgerAccount.kind, LedgerEntry.amount)
        .join(LedgerEntry, LedgerEntry.tx_id == LedgerTx.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerAccount.owner == owner, LedgerAccount.kind.in_(OWNED_KINDS))
        .order_by(LedgerTx.created_at.desc(), LedgerEntry.id.desc())
        .limit(limit)
    ).all()
    return [
        HistoryItem(
            tx_id=tx.id,
            kind=tx.kind,
            account=kind,
            amount_gwei=amount,
            reference=tx.reference,
            memo=tx.memo,
            signature=tx.signature,
            created_at=tx.created_at,
        )
        for tx, kind, amount in rows
    ]
