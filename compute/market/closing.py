"""Closing metered leases in batches: bill each one's use and end it, in a few multi-row statements.

This is :func:`compute.market.leases.meter_in` followed by :func:`compute.market.leases.end_in` with a
non-failure reason, for many leases in one transaction, as :mod:`compute.market.placement` opens them: the rows
are locked and read first (leases, then the capacity they hold, then their providers, then ledger accounts by
id, the order every writer takes them in), each closing is decided in order against what they hold, and the
accepted writes go out as a handful of executemany statements. The ORM path costs about forty statements and
most of a request's CPU for the same writes.

A closing is exactly once: the usage is keyed (a replay bills nothing and only ends the lease if it is still
open), and a closing that cannot apply (an unknown lease, another provider's, an ended or rented one) is that
item's error, leaving the others to commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace

from eth_account import Account
from sqlalchemy import Connection, bindparam, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from compute.errors import ComputeError
from compute.market.leases import FAILURES, EndReason, usage_message
from compute.market.pricing import cost, platform_fee
from compute.models import Lease, LedgerAccount, LedgerEntry, LedgerTx, Provider, Provision, UsageRecord
from compute.providers.registry import reputation
from compute.receipts import Domain, sign_batch
from compute.signer import platform_account
from cxmpute.errors import Conflict, CxmputeError, Forbidden, NotFound

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
ENSURE_ACCOUNTS = {
    "sqlite": sqlite_insert(LedgerAccount.__table__).on_conflict_do_nothing(),
    "postgresql": pg_insert(LedgerAccount.__table__).on_conflict_do_nothing(),
}
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
INSERT_TXS = insert(LedgerTx.__table__).inline()
INSERT_ENTRIES = insert(LedgerEntry.__table__).inline()
ADD_BALANCE = (
    update(LedgerAccount.__table__).where(_a.id == bindparam("b_id")).values(balance=_a.balance + bindparam("b_delta"))
)
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
SET_FREE = (
    update(Provision.__table__)
    .where(_p.id == bindparam("b_id"))
    .values(
        free_cpu=bindparam("b_cpu"),
        free_memory_mb=bindparam("b_memory"),
        free_gpu=bindparam("b_gpu"),
        free_disk_gb=bindparam("b_disk"),
        updated_at=bindparam("b_stamp"),
    )
)
SET_PROVIDER = (
    update(Provider.__table__)
    .where(_v.address == bindparam("b_address"))
    .values(leases_completed=bindparam("b_completed"), reputation=bindparam("b_reputation"))
)


@dataclass
class Closing:
    """``seconds`` of a metered lease's use, reported in ``provider``'s name under ``key`` (unique per lease),
    to bill before ending the lease for ``reason``; ``seconds`` 0 ends it unbilled."""

    lease_id: str
    provider: str
    seconds: int
    key: str
    reason: EndReason = "completed"

    def __post_init__(self) -> None:
        if self.reason in FAILURES:
            raise ValueError("a failure ends its lease through leases.end_in, which slashes the provider")


@dataclass
class Closed:
    """What a closing billed: its seconds and amount (those of the earlier report when ``key`` was already used),
    and the usage receipt (None when nothing was metered)."""

    seconds: int
    amount_gwei: int
    fee_gwei: int
    usage_id: str | None
    signature: str | None


@dataclass
class Batch:
    """A committed-to-be batch's outcomes (one per closing, in order) and the free capacity it leaves on each
    provision it touched, for the market's index once the transaction commits."""

    outcomes: list[Closed | CxmputeError]
    free: dict[str, list[int]]


def close(conn: Connection, domain: Domain, closings: list[Closing]) -> Batch:
    """Decide and write ``closings`` in ``conn``'s transaction (the caller commits)."""
    keys = [f"{c.lease_id}:{c.key}" for c in closings]
    rows = {row.id: row._asdict() for row in conn.execute(LOCK_LEASES, {"ids": sorted({c.lease_id for c in closings})})}
    used = {row.idempotency_key: row for row in conn.execute(USED, {"keys": keys})}
    open_ids = sorted({row["provision_id"] for row in rows.values() if row["status"] == "active"})
    capacity = _lock_capacity(conn, open_ids)
    providers = {
        row.address: row._asdict()
        for row in conn.execute(
            LOCK_PROVIDERS,
            {"addresses": sorted({row["provider"] for row in rows.values() if row["status"] == "active"})},
        )
    }
    accounts = _lock_accounts(conn, rows)
    now = datetime.now(UTC)
    writes = _Writes(now, platform_account())
    outcomes: list[Closed | CxmputeError] = []
    for closing, key in zip(closings, keys):
        row = rows.get(closing.lease_id)
        if row is None:
            outcomes.append(NotFound(f"no lease {closing.lease_id}", field="lease_id"))
            continue
        if closing.provider != row["provider"]:
            outcomes.append(Forbidden("only the lease's provider reports its usage", field="lease_id"))
            continue
        done = used.get(key)
        if done is not None:
            outcome = Closed(done.seconds, done.amount_gwei, done.fee_gwei, done.id, done.signature)
            reason = closing.reason
        elif row["status"] != "active":
            outcomes.append(Conflict(f"lease has ended ({row['end_reason']})", field="lease_id"))
            continue
        elif row["term"] != "seconds":
            outcomes.append(ComputeError("rentals are billed per term, not metered", field="lease_id"))
            continue
        else:
            outcome, reason = _meter(domain, closing, key, row, accounts, writes)
            used[key] = SimpleNamespace(
                id=outcome.usage_id,
                seconds=outcome.seconds,
                amount_gwei=outcome.amount_gwei,
                fee_gwei=outcome.fee_gwei,
                signature=outcome.signature,
            )
        if row["status"] == "active":
            _end(row, reason, capacity, providers[row["provider"]], accounts, writes)
        outcomes.append(outcome)
    writes.flush(conn, capacity, providers)
    return Batch(outcomes, {pid: capacity.free[pid] for pid in capacity.touched})


@dataclass
class _Capacity:
    free: dict[str, list[int]]  # provision id -> [cpu, memory_mb, gpu, disk_gb], as the batch leaves it
    members: dict[str, list[str]]  # provision id -> the provisions sharing its capacity, itself included
    touched: set[str]


def _lock_capacity(conn: Connection, ids: list[str]) -> _Capacity:
    found = _Capacity({}, {}, set())
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


def _lock_accounts(conn: Connection, rows: dict[str, dict]) -> dict[tuple[str, str], list[int]]:
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


class _Writes:
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

    def flush(self, conn: Connection, capacity: _Capacity, providers: dict[str, dict]) -> None:
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


def _meter(
    domain: Domain, closing: Closing, key: str, row: dict, accounts: dict[tuple[str, str], list[int]], writes: _Writes
) -> tuple[Closed, EndReason]:
    """Bill the closing's seconds from the lease's escrow, capped by the lease's span and what the escrow holds
    (a capped lease ends out of funds)."""
    escrow = accounts.get(("escrow", row["id"]))
    per_second = cost(row["price_gwei"], row["compute_units"], 1)
    seconds = min(closing.seconds, row["duration_s"] - row["metered_s"], (escrow[1] if escrow else 0) // per_second)
    amount = seconds * per_second
    fee = platform_fee(amount)
    usage_id = None
    signature = None
    if closing.seconds:
        usage_id = str(uuid.uuid4())
        signature = sign_batch(domain, "Usage", [usage_message(row["id"], key, seconds, amount, fee)], writes.signer)[
            0
        ].signature
        writes.usage.append(
            {
                "id": usage_id,
                "lease_id": row["id"],
                "idempotency_key": key,
                "seconds": seconds,
                "amount_gwei": amount,
                "fee_gwei": fee,
                "signature": signature,
                "created_at": writes.now,
            }
        )
    if amount:
        writes.post(
            f"usage:{key}",
            "usage",
            row["id"],
            signature,
            [
                (escrow, -amount),
                (accounts[("earnings", row["provider"])], amount - fee),
                (accounts[("fee", "platform")], fee),
            ],
        )
    row["metered_s"] += seconds
    row["paid_gwei"] += amount
    writes.lease(row)
    capped = seconds < closing.seconds and row["metered_s"] < row["duration_s"]
    return Closed(seconds, amount, fee, usage_id, signature), "out-of-funds" if capped else closing.reason


def _end(
    row: dict,
    reason: str,
    capacity: _Capacity,
    provider: dict,
    accounts: dict[tuple[str, str], list[int]],
    writes: _Writes,
) -> None:
    """End an active lease: its capacity back to every provision sharing it, what is left in escrow back to its
    user, and one more completed lease on its provider's record."""
    for member in capacity.members.get(row["provision_id"], ()):
        free = capacity.free[member]
        free[0] += row["cpu"]
        free[1] += row["memory_mb"]
        free[2] += row["gpu_count"]
        free[3] += row["disk_gb"]
        capacity.touched.add(member)
    escrow = accounts.get(("escrow", row["id"]))
    if escrow is not None and escrow[1]:
        writes.post(
            f"refund:{row['id']}",
            "refund",
            row["id"],
            None,
            [(escrow, -escrow[1]), (accounts[("user", row["user"])], escrow[1])],
        )
    provider["leases_completed"] += 1
    provider["changed"] = True
    row["status"], row["end_reason"], row["ended_at"] = "ended", reason, writes.now
    writes.lease(row)
