"""One placement batch's transaction: lock what the batch needs, decide each placement, write the accepted ones.

The capacity rows and the payers' ledger accounts are locked and read first, and each placement is checked in
order against what they really hold; the accepted ones are written with a few multi-row statements. Locks are
taken in the order placements and ends take them (provisions by id, then ledger accounts by id).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, and_, bindparam, insert, or_, select

from compute.errors import InsufficientFunds
from compute.market.demand import MatchRequest
from compute.market.group_commit import Ticket
from compute.market.index import Slot
from compute.market.leases import LeaseOut
from compute.market.pricing import platform_fee
from compute.market.proofs import lease_proofs
from compute.market.statements import ADD_BALANCE, ENSURE_ACCOUNTS, INSERT_ENTRIES, INSERT_TXS, SET_FREE
from compute.models import Lease, LedgerAccount, LedgerEntry, Provision, aware

PROVISIONS = Provision.__table__
ACCOUNTS = LedgerAccount.__table__
LEASES = Lease.__table__
LEASE_COLUMNS = [column.name for column in LEASES.columns]

# The batch's statements, built once: building them costs more than SQLite takes to run them.
_p, _a = PROVISIONS.c, ACCOUNTS.c
LOCK_OFFERS = (
    select(
        _p.id,
        _p.capacity_group,
        _p.status,
        _p.price_gwei,
        _p.available_until,
        _p.free_cpu,
        _p.free_memory_mb,
        _p.free_gpu,
        _p.free_disk_gb,
    )
    .where(or_(_p.id.in_(bindparam("ids", expanding=True)), _p.capacity_group.in_(bindparam("groups", expanding=True))))
    .order_by(_p.id)
    .with_for_update()
)
_PAYERS = and_(_a.kind == "user", _a.owner.in_(bindparam("users", expanding=True)))
_LOCK = select(_a.id, _a.kind, _a.owner, _a.balance).order_by(_a.id).with_for_update()
LOCK_PAYERS = _LOCK.where(_PAYERS)
LOCK_PAYERS_AND_EARNERS = _LOCK.where(
    or_(
        _PAYERS,
        and_(_a.kind == "earnings", _a.owner.in_(bindparam("earners", expanding=True))),
        and_(_a.kind == "fee", _a.owner == "platform"),
    )
)
# Inserts are inline: no generated key is read back (a batch of one would otherwise ask for it), so no write
# waits for another's answer. An escrow account is found by its lease rather than by its returned id.
INSERT_LEASES = insert(LEASES).inline()
INSERT_PROOFS = insert(lease_proofs).inline()
OPEN_ESCROWS = insert(ACCOUNTS).inline()
INSERT_ESCROW_ENTRIES = (
    insert(LedgerEntry.__table__)
    .inline()
    .values(
        tx_id=bindparam("b_tx"),
        amount=bindparam("b_amount"),
        account_id=select(_a.id).where(_a.kind == "escrow", _a.owner == bindparam("b_lease")).scalar_subquery(),
    )
)


@dataclass(eq=False)
class PlacementTicket(Ticket):
    """One caller's request, waiting in the queue or in a batch; its result is the lease."""

    user: str
    req: MatchRequest
    extra: Callable[[Connection, LeaseOut], None] | None = None
    attempts: int = 0


@dataclass(eq=False)
class Plan:
    """A ticket matched to a provision, with the lease it opens if the database agrees."""

    ticket: PlacementTicket
    slot: Slot
    end_ts: float
    amount: int  # what the user pays now: the escrow, or the first rental term
    lease: LeaseOut
    accepted: bool = False
    error: BaseException | None = None  # refused for a reason a retry does not change


@dataclass
class Locked:
    """What the transaction locked and read, and the capacity and balances as its writes leave them."""

    offers: dict[str, tuple[str, int, float, str]] = field(default_factory=dict)  # id -> status, price, until, group
    free: dict[str, list[int]] = field(default_factory=dict)  # id -> [cpu, memory_mb, gpu, disk_gb]
    members: dict[str, list[str]] = field(default_factory=dict)  # capacity group -> provision ids
    touched: set[str] = field(default_factory=set)
    accounts: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (kind, owner) -> [id, balance]


def decide(conn: Connection, plans: list[Plan]) -> Locked:
    """Lock what the batch needs and accept, in order, each placement the locked rows can honour."""
    locked = Locked()
    rows = conn.execute(
        LOCK_OFFERS,
        {"ids": sorted({p.slot.id for p in plans}), "groups": sorted({p.slot.group or p.slot.id for p in plans})},
    )
    for row in rows:
        group = row.capacity_group or row.id
        until = aware(row.available_until).timestamp() if row.available_until else math.inf
        locked.offers[row.id] = (row.status, row.price_gwei, until, group)
        locked.free[row.id] = [row.free_cpu, row.free_memory_mb, row.free_gpu, row.free_disk_gb]
        locked.members.setdefault(group, []).append(row.id)
    locked.accounts = _lock_accounts(conn, plans)
    for plan in plans:
        plan.accepted, plan.error = False, None
        r = plan.ticket.req.resources
        offer, free = locked.offers.get(plan.slot.id), locked.free.get(plan.slot.id)
        if (
            offer is None
            or offer[0] != "active"
            or offer[1] != plan.slot.price
            or offer[2] < plan.end_ts
            or free[0] < r.cpu
            or free[1] < r.memory_mb
            or free[2] < r.gpu_count
            or free[3] < r.disk_gb
        ):
            continue  # stale
        payer = locked.accounts.get(("user", plan.ticket.user))
        if payer is None or payer[1] < plan.amount:
            plan.error = InsufficientFunds(
                f"user balance of {plan.ticket.user} is below {plan.amount} gwei", field="user_balance"
            )
            continue
        payer[1] -= plan.amount
        # The machine's other offers lose what this one is leased.
        for member in locked.members[offer[3]]:
            left = locked.free[member]
            left[0] -= r.cpu
            left[1] -= r.memory_mb
            left[2] -= r.gpu_count
            left[3] -= r.disk_gb
            locked.touched.add(member)
        plan.accepted = True
    return locked


def _lock_accounts(conn: Connection, plans: list[Plan]) -> dict[tuple[str, str], list[int]]:
    """Lock, in id order, the accounts the batch debits and the ones its rentals credit (created if new)."""
    users = sorted({p.ticket.user for p in plans})
    earners = sorted({p.slot.provider for p in plans if p.ticket.req.term != "seconds"})
    if earners:
        conn.execute(
            ENSURE_ACCOUNTS[conn.dialect.name],
            [{"kind": "earnings", "owner": owner, "balance": 0} for owner in earners]
            + [{"kind": "fee", "owner": "platform", "balance": 0}],
        )
        rows = conn.execute(LOCK_PAYERS_AND_EARNERS, {"users": users, "earners": earners})
    else:
        rows = conn.execute(LOCK_PAYERS, {"users": users})
    return {(row.kind, row.owner): [row.id, row.balance] for row in rows}


def write_capacity(conn: Connection, locked: Locked) -> None:
    stamp = datetime.now(UTC)
    conn.execute(
        SET_FREE,
        [
            {
                "b_id": slot_id,
                "b_cpu": free[0],
                "b_memory": free[1],
                "b_gpu": free[2],
                "b_disk": free[3],
                "b_stamp": stamp,
            }
            for slot_id in sorted(locked.touched)
            for free in [locked.free[slot_id]]
        ],
    )


def write_leases(conn: Connection, accepted: list[Plan]) -> None:
    conn.execute(INSERT_LEASES, [{name: getattr(plan.lease, name) for name in LEASE_COLUMNS} for plan in accepted])
    proofs = [
        {"lease_id": plan.lease.id, "renewal": 0, "proof": plan.lease.receipt_proof}
        for plan in accepted
        if plan.lease.receipt_proof
    ]
    if proofs:
        conn.execute(INSERT_PROOFS, proofs)


def write_ledger(conn: Connection, accepted: list[Plan], accounts: dict[tuple[str, str], list[int]]) -> None:
    """Each lease's posting (escrow hold, or the first rental term), as :func:`compute.ledger.post` would write it."""
    held = [plan for plan in accepted if plan.ticket.req.term == "seconds"]
    if held:
        # A lease's escrow account is new: it is created holding the escrow.
        conn.execute(
            OPEN_ESCROWS, [{"kind": "escrow", "owner": plan.lease.id, "balance": plan.amount} for plan in held]
        )
    stamp = datetime.now(UTC)
    deltas: dict[int, int] = {}
    txs: list[dict] = []
    entries: list[dict] = []
    escrow_entries: list[dict] = []
    for plan in accepted:
        lease, tx_id = plan.lease, str(uuid.uuid4())
        legs = [(accounts[("user", lease.user)][0], -plan.amount)]
        if lease.term == "seconds":
            key, kind = f"hold:{lease.id}", "escrow-hold"
            escrow_entries.append({"b_tx": tx_id, "b_lease": lease.id, "b_amount": plan.amount})
        else:
            key, kind = f"rent:{lease.id}:0", "rental"
            fee = platform_fee(plan.amount)
            legs += [
                (accounts[("earnings", lease.provider)][0], plan.amount - fee),
                (accounts[("fee", "platform")][0], fee),
            ]
        for account_id, amount in legs:
            if amount:
                deltas[account_id] = deltas.get(account_id, 0) + amount
                entries.append({"tx_id": tx_id, "account_id": account_id, "amount": amount})
        txs.append(
            {
                "id": tx_id,
                "idempotency_key": key,
                "kind": kind,
                "reference": lease.id,
                "memo": "",
                "signature": lease.signature,
                "created_at": stamp,
            }
        )
    conn.execute(
        ADD_BALANCE, [{"b_id": account_id, "b_delta": delta} for account_id, delta in sorted(deltas.items()) if delta]
    )
    conn.execute(INSERT_TXS, txs)
    conn.execute(INSERT_ENTRIES, entries)
    if escrow_entries:
        conn.execute(INSERT_ESCROW_ENTRIES, escrow_entries)
