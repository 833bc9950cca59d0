"""Money entering and leaving the platform: on-chain deposits and stakes, unstaking, withdrawals, slashing.

Chain events are credited exactly once: the (chain, transaction, log) claim and the ledger posting are
written in the same database transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from eth_utils import keccak
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from compute.chain import Chain, ChainEvent
from compute.errors import ComputeError
from compute.ledger.book import Acct, balance, post
from compute.models import ChainClaim, LedgerAccount, LedgerEntry, LedgerTx, Provider, Provision, aware, utcnow
from compute.store import Store
from cxmpute.errors import Conflict, NotFound
from cxmpute.settings import get_settings
from stxrage.models import NodeInfo

GWEI = 10**9
# A provider's failures this close together are one incident: a crash fails every lease it had in flight at
# once, and slashing each of them would take a compounding share of the stake for a single fault.
SLASH_WINDOW = timedelta(minutes=5)


class ChainCredit(BaseModel):
    tx_hash: str = Field(..., pattern=r"^0x[0-9a-fA-F]{64}$")


class Credited(BaseModel):
    tx_hash: str
    amount_gwei: int
    balance_gwei: int


class Withdrawal(BaseModel):
    amount_gwei: int = Field(..., gt=0)
    source: str = Field("user", pattern="^(user|earnings)$")
    idempotency_key: str = Field(..., min_length=8, max_length=100)


class WithdrawalOut(BaseModel):
    amount_gwei: int
    chain_tx: str
    balance_gwei: int


class Unstake(BaseModel):
    amount_gwei: int = Field(..., gt=0)


def _claim(session: Session, event: ChainEvent, purpose: str) -> None:
    try:
        with session.begin_nested():
            session.add(
                ChainClaim(
                    chain_id=event.chain_id,
                    tx_hash=event.tx_hash,
                    log_index=event.log_index,
                    purpose=purpose,
                    account=event.account,
                    amount_wei=str(event.amount_wei),
                )
            )
    except IntegrityError as exc:
        raise Conflict("this transaction was already credited", field="tx_hash") from exc


def _credit(store: Store, chain: Chain, address: str, tx_hash: str, event_name: str, into: str) -> Credited:
    events = chain.events(tx_hash, event_name, address)
    amount = sum(e.amount_wei for e in events) // GWEI
    if amount <= 0:
        raise ComputeError("amount is below 1 gwei", field="tx_hash")
    with store.write() as session:
        for event in events:
            _claim(session, event, into)
            post(
                session,
                key=f"{into}:{event.chain_id}:{event.tx_hash}:{event.log_index}",
                kind="deposit" if into == "user" else "stake",
                entries=[
                    (Acct("chain", str(event.chain_id)), -(event.amount_wei // GWEI)),
                    (Acct(into, address), event.amount_wei // GWEI),
                ],
                reference=event.tx_hash,
            )
        if into == "stake":
            provider = session.get(Provider, address, with_for_update=True)
            if provider is None:
                raise NotFound("register as a provider before staking", field="provider")
            provider.stake_unlocks_at = utcnow() + timedelta(seconds=get_settings().stake_lock_s)
        return Credited(
            tx_hash=events[0].tx_hash, amount_gwei=amount, balance_gwei=balance(session, Acct(into, address))
        )


def deposit(store: Store, chain: Chain, address: str, req: ChainCredit) -> Credited:
    return _credit(store, chain, address, req.tx_hash, "Deposited", "user")


def stake(store: Store, chain: Chain, address: str, req: ChainCredit) -> Credited:
    return _credit(store, chain, address, req.tx_hash, "Staked", "stake")


def unstake(store: Store, address: str, req: Unstake) -> Credited:
    """Move stake back to the spendable balance once the lock has passed.

    A provider with active provisions keeps at least the minimum stake.
    """
    with store.write() as session:
        provider = session.get(Provider, address, with_for_update=True)
        if provider is None:
            raise NotFound("not a provider", field="provider")
        if provider.stake_unlocks_at and aware(provider.stake_unlocks_at) > utcnow():
            raise Conflict(f"stake is locked until {provider.stake_unlocks_at.isoformat()}", field="amount_gwei")
        remaining = balance(session, Acct("stake", address)) - req.amount_gwei
        active = session.scalar(
            select(func.count())
            .select_from(Provision)
            .where(Provision.provider == address, Provision.status == "active")
        )
        if active and remaining < get_settings().min_stake_gwei:
            raise Conflict("active provisions need the minimum stake; pause them first", field="amount_gwei")
        post(
            session,
            key=f"unstake:{address}:{uuid.uuid4()}",
            kind="unstake",
            reference=address,
            entries=[(Acct("stake", address), -req.amount_gwei), (Acct("user", address), req.amount_gwei)],
        )
        return Credited(tx_hash="", amount_gwei=req.amount_gwei, balance_gwei=max(remaining, 0))


def slash(session: Session, provider: str, beneficiary: str, lease_id: str) -> int:
    """Take the policy's share of the provider's stake for a provider-caused failure; it compensates the user.

    Once per incident: a failure within :data:`SLASH_WINDOW` of the provider's last slash takes nothing more
    (its lease's escrow is still refunded). The caller holds the provider's row lock (``leases._end``), so
    concurrent failures of one provider see each other's slash."""
    if _slashed_since(session, provider, utcnow() - SLASH_WINDOW):
        return 0
    amount = balance(session, Acct("stake", provider)) * get_settings().slash_bps // 10_000
    if amount > 0:
        post(
            session,
            key=f"slash:{lease_id}",
            kind="slash",
            reference=lease_id,
            memo=f"provider {provider} failed lease {lease_id}",
            entries=[(Acct("stake", provider), -amount), (Acct("user", beneficiary), amount)],
        )
    return amount


def slash_storage(store: Store, nodes: Iterable[NodeInfo]) -> dict[str, int]:
    """Slash the provider of each storage node an audit evicted: the policy's share of its stake goes to the
    platform's fee account, which paid for the copies repair makes elsewhere. Once per incident, as for a
    lease: a provider slashed within :data:`SLASH_WINDOW` loses nothing more. The operator's own nodes (no
    provider) are not slashed. Gwei taken, by node id."""
    taken: dict[str, int] = {}
    for node in nodes:
        if node.provider is None:
            continue
        with store.write() as session:
            if session.get(Provider, node.provider, with_for_update=True) is None:
                continue
            if _slashed_since(session, node.provider, utcnow() - SLASH_WINDOW):
                taken[node.id] = 0
                continue
            amount = balance(session, Acct("stake", node.provider)) * get_settings().slash_bps // 10_000
            if amount > 0:
                post(
                    session,
                    key=f"slash:storage:{node.id}:{uuid.uuid4()}",
                    kind="slash",
                    reference=node.id,
                    memo=f"storage node {node.id} of provider {node.provider} evicted after failed audits",
                    entries=[(Acct("stake", node.provider), -amount), (Acct("fee", "platform"), amount)],
                )
            taken[node.id] = amount
    return taken


def _slashed_since(session: Session, provider: str, since: datetime) -> bool:
    return (
        session.scalar(
            select(LedgerTx.id)
            .join(LedgerEntry, LedgerEntry.tx_id == LedgerTx.id)
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .where(
                LedgerTx.kind == "slash",
                LedgerTx.created_at >= since,
                LedgerAccount.kind == "stake",
                LedgerAccount.owner == provider,
            )
            .limit(1)
        )
        is not None
    )


def withdraw(store: Store, chain: Chain, address: str, req: Withdrawal) -> WithdrawalOut:
    """Debit the ledger first, then pay from the vault; a failed payout is reversed by a compensating entry."""
    key = f"withdraw:{address}:{req.idempotency_key}"
    source = Acct(req.source, address)
    with store.write() as session:
        tx, applied = post(
            session,
            key=key,
            kind="withdrawal",
            reference=address,
            memo="payout pending",
            entries=[(source, -req.amount_gwei), (Acct("chain", str(chain.chain_id)), req.amount_gwei)],
        )
        if not applied:
            if not tx.memo.startswith("paid "):
                raise Conflict(
                    "a withdrawal with this idempotency key is in progress or failed", field="idempotency_key"
                )
            return WithdrawalOut(
                amount_gwei=req.amount_gwei,
                chain_tx=tx.memo.removeprefix("paid "),
                balance_gwei=balance(session, source),
            )
    try:
        chain_tx = chain.pay(address, req.amount_gwei * GWEI, keccak(text=key))
    except Exception as exc:
        with store.write() as session:
            post(
                session,
                key=f"revert:{key}",
                kind="withdrawal-reverted",
                reference=address,
                entries=[(source, req.amount_gwei), (Acct("chain", str(chain.chain_id)), -req.amount_gwei)],
            )
        raise ComputeError(f"payout failed on chain and was reversed: {exc}", status_code=502) from exc
    with store.write() as session:
        row = session.scalar(select(LedgerTx).where(LedgerTx.idempotency_key == key))
        row.memo = f"paid {chain_tx}"
        return WithdrawalOut(amount_gwei=req.amount_gwei, chain_tx=chain_tx, balance_gwei=balance(session, source))
