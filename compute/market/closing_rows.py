"""The rows a batch of closings (:mod:`compute.market.closing`) locks and the rows it writes.

Its statements are built once; the locks are taken in the order every writer takes them in (leases, then the
capacity they hold, then their providers, then ledger accounts by id); the writes are gathered while the batch
is decided and go out together, one executemany statement per table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace

from eth_account import Account
from sqlalchemy import Connection, bindparam, insert, or_, select, update

from compute.market.statements import ADD_BALANCE, ENSURE_ACCOUNTS, INSERT_ENTRIES, INSERT_TXS, SET_FREE
from compute.models import Lease, LedgerAccount, Provider, Provision, UsageRecord
from compute.providers.registry import reputation

_l, _p, _v, _a, _u = (
    Lease.__table__.c,
    Provision.__table__.c,
    Provider.__table__.c,
    LedgerAccount.__table__.c,
    UsageRecord.__table__.c,
)

# Built once: building a statement costs more than SQLite takes to run it.
LOCK_LEASES = (
    select(
        _l.id,
        _l.user,
        _l.provider,
        _l.provision_id,
        _l.cpu,
        _l.memory_mb,
        _l.gpu_count,
        _l.disk_gb,
        _l.compute_units,
        _l.price_gwei,
        _l.term,
        _l.duration_s,
        _l.metered_s,
        _l.paid_gwei,
        _l.status,
        _l.end_reason,
    )
    .where(_l.id.in_(bindparam("ids", expanding=True)))
    .order_by(_l.id)
    .with_for_update()
)
USED = select(_u.id, _u.idempotency_key, _u.seconds, _u.amount_gwei, _u.fee_gwei, _u.signature).where(
    _u.idempotency_key.in_(bindparam("keys", expanding=True))
)
GROUPS = select(_p.id, _p.capacity_group).where(_p.id.in_(bindparam("ids", expanding=True)))
LOCK_CAPACITY = (
    select(_p.id, _p.capacity_group, _p.free_cpu, _p.free_memory_mb, _p.free_gpu, _p.free_disk_gb)
    .where(or_(_p.id.in_(bindparam("ids", expanding=True)), _p.capacity_group.in_(bindparam("groups", expanding=True))))
    .order_by(_p.id)
    .with_for_update()
)
LOCK_PROVIDERS = (
    select(_v.address, _v.registered_at, _v.heartbeats, _v.leases_completed, _v.leases_failed)
    .where(_v.address.in_(bindparam("addresses", expanding=True)))
    .order_by(_v.address)
    .with_for_update()
)
LOCK_ACCOUNTS = (
    select(_a.id, _a.kind, _a.owner, _a.balance)
    .where(
        or_(
            _a.kind == "fee",
            (_a.kind == "escrow") & _a.owner.in_(bindparam("leases", expanding=True)),
            (_a.kind == "earnings") & _a.owner.in_(bindparam("earners", expanding=True)),
            (_a.kind == "user") & _a.owner.in_(bindparam("users", expanding=True)),
        )
    )
    .order_by(_a.id)
    .with_for_update()
)
INSERT_USAGE = insert(UsageRecord.__table__).inline()
SET_LEASE = (
    update(Lease.__table__)
    .where(_l.id == bindparam("b_id"))
    .values(
        metered_s=bindparam("b_metered"),
        paid_gwei=bindparam("b_paid"),
        status=bindparam("b_status"),
        end_reason=bindparam("b_reason"),
        ended_at=bindparam("b_ended"),
    )
)
SET_PROVIDER = (
    update(Provider.__table__)
    .where(_v.address == bindparam("b_address"))
    .values(leases_completed=bindparam("b_completed"), reputation=bindparam("b_reputation"))
)


@dataclass
class Capacity:
    """The capacity of the provisions the batch's open leases hold, locked, with every provision sharing it."""

    free: dict[str, list[int]]  # provision id -> [cpu, memory_mb, gpu, disk_gb], as the batch leaves it
    members: dict[str, list[str]]  # provision id -> the provisions sharing its capacity, itself included
    touched: set[str]


def lock_capacity(conn: Connection, ids: list[str]) -> Capacity:
    found = Capacity({}, {}, set())
    if not ids:
        return found
    groups = sorted({group or pid for pid, group in conn.execute(GROUPS, {"ids": ids})})
    by_group: dict[str, list[str]] = {}
    of: dict[str, str] = {}
    for row in conn.execute(LOCK_CAPACITY, {"ids": ids, "groups": groups}):
        group = row.capacity_group or row.id
        found.free[row.id] = [row.free_cpu, row.free_memory_mb, row.free_gpu, row.free_disk_gb]
        by_group.setdefault(group, []).append(row.id)
        of[row.id] = group
    found.members = {pid: by_group[of[pid]] for pid in of}
    return found


def lock_accounts(conn: Connection, rows: dict[str, dict]) -> dict[tuple[str, str], list[int]]:
    """The accounts the batch moves money between, locked in id order: the leases' escrows, their providers'
    earnings, their users' balances (refunds) and the platform's fee (created where new)."""
    active = [row for row in rows.values() if row["status"] == "active"]
    if not active:
        return {}
    earners = sorted({row["provider"] for row in active})
    users = sorted({row["user"] for row in active})
    conn.execute(
        ENSURE_ACCOUNTS[conn.dialect.name],
        [{"kind": "earnings", "owner": owner, "balance": 0} for owner in earners]
        + [{"kind": "user", "owner": owner, "balance": 0} for owner in users]
        + [{"kind": "fee", "owner": "platform", "balance": 0}],
    )
    locked = conn.execute(
        LOCK_ACCOUNTS, {"leases": sorted(row["id"] for row in active), "earners": earners, "users": users}
    )
    return {(row.kind, row.owner): [row.id, row.balance] for row in locked}


class Writes:
    """The batch's rows, gathered while deciding and written together."""

    def __init__(self, now: datetime, signer: Account):
        self.now = now
        self.signer = signer  # resolved once a batch: it reads the key from the settings' store
        self.usage: list[dict] = []
        self.txs: list[dict] = []
        self.entries: list[dict] = []
        self.deltas: dict[int, int] = {}
        self.leases: dict[str, dict] = {}

    def post(
        self, key: str, kind: str, reference: str, signature: str | None, legs: list[tuple[list[int], int]]
    ) -> None:
        """A balanced ledger transaction, as :func:`compute.ledger.book.post` writes one; ``legs`` name the
        locked accounts (``[id, balance]``, kept current for the batch's later decisions)."""
        tx_id = str(uuid.uuid4())
        self.txs.append(
            {
                "id": tx_id,
                "idempotency_key": key,
                "kind": kind,
                "reference": reference,
                "memo": "",
                "signature": signature,
                "created_at": self.now,
            }
        )
        for account, amount in legs:
            if amount:
                account[1] += amount
                self.deltas[account[0]] = self.deltas.get(account[0], 0) + amount
                self.entries.append({"tx_id": tx_id, "account_id": account[0], "amount": amount})

    def lease(self, row: dict) -> None:
        self.leases[row["id"]] = {
            "b_id": row["id"],
            "b_metered": row["metered_s"],
            "b_paid": row["paid_gwei"],
            "b_status": row["status"],
            "b_reason": row["end_reason"],
            "b_ended": row.get("ended_at"),
        }

    def flush(self, conn: Connection, capacity: Capacity, providers: dict[str, dict]) -> None:
        if self.usage:
            conn.execute(INSERT_USAGE, self.usage)
        if self.txs:
            conn.execute(INSERT_TXS, self.txs)
            conn.execute(INSERT_ENTRIES, self.entries)
            conn.execute(
                ADD_BALANCE,
                [{"b_id": account_id, "b_delta": delta} for account_id, delta in sorted(self.deltas.items()) if delta],
            )
        if self.leases:
            conn.execute(SET_LEASE, list(self.leases.values()))
        if capacity.touched:
            conn.execute(
                SET_FREE,
                [
                    {
                        "b_id": pid,
                        "b_cpu": free[0],
                        "b_memory": free[1],
                        "b_gpu": free[2],
                        "b_disk": free[3],
                        "b_stamp": self.now,
                    }
                    for pid in sorted(capacity.touched)
                    for free in [capacity.free[pid]]
                ],
            )
        changed = [row for row in providers.values() if row.get("changed")]
        if changed:
            conn.execute(
                SET_PROVIDER,
                [
                    {
                        "b_address": row["address"],
                        "b_completed": row["leases_completed"],
                        "b_reputation": reputation(SimpleNamespace(**row)),
                    }
                    for row in changed
                ],
            )
