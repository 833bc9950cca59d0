"""Closing metered leases in batches: bill each one's use and end it, in a few multi-row statements.

This is :func:`compute.market.leases.meter_in` followed by :func:`compute.market.leases.end_in` with a
non-failure reason, for many leases in one transaction, as :mod:`compute.market.placement` opens them: the rows
are locked and read first (leases, then the capacity they hold, then their providers, then ledger accounts by
id, the order every writer takes them in), each closing is decided in order against what they hold, and the
accepted writes go out as a handful of executemany statements (:mod:`compute.market.closing_rows`). The ORM path
costs about forty statements and most of a request's CPU for the same writes.

A closing is exactly once: the usage is keyed (a replay bills nothing and only ends the lease if it is still
open), and a closing that cannot apply (an unknown lease, another provider's, an ended or rented one) is that
item's error, leaving the others to commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace

from sqlalchemy import Connection

from compute.errors import ComputeError
from compute.market.closing_rows import (
    LOCK_LEASES,
    LOCK_PROVIDERS,
    USED,
    Capacity,
    Writes,
    lock_accounts,
    lock_capacity,
)
from compute.market.leases import FAILURES, EndReason, usage_message
from compute.market.pricing import cost, platform_fee
from compute.receipts import Domain, sign_batch
from compute.signer import platform_account
from cxmpute.errors import Conflict, CxmputeError, Forbidden, NotFound


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
    capacity = lock_capacity(conn, open_ids)
    providers = {
        row.address: row._asdict()
        for row in conn.execute(
            LOCK_PROVIDERS,
            {"addresses": sorted({row["provider"] for row in rows.values() if row["status"] == "active"})},
        )
    }
    accounts = lock_accounts(conn, rows)
    now = datetime.now(UTC)
    writes = Writes(now, platform_account())
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


def _meter(
    domain: Domain, closing: Closing, key: str, row: dict, accounts: dict[tuple[str, str], list[int]], writes: Writes
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
    capacity: Capacity,
    provider: dict,
    accounts: dict[tuple[str, str], list[int]],
    writes: Writes,
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
