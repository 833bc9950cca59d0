"""Group commit of placements: concurrent requests share one transaction and one receipt signature.

Callers queue their requests (:mod:`compute.market.group_commit`). The writer takes everything queued, matches it
in order against the index (each match reserving there, so later requests see a fuller market), signs the
batch's lease receipts with one signature over their Merkle root, and writes the batch in a single transaction;
a lone caller writes its own placement at once, and callers that arrive during a write are committed together by
the next one.

In the transaction the capacity rows and the payers' ledger accounts are locked and read first, and each
placement is checked in order against what they really hold; the accepted ones are written with a few
multi-row statements. Locks are taken in the order placements and ends take them (provisions by id, then
ledger accounts by id); a batch PostgreSQL still picks as a deadlock victim is rerun whole.
A placement whose provision no longer holds what the index said (another process took it, or its owner
changed it) goes back to the queue against the refreshed index, until MAX_ATTEMPTS.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, and_, bindparam, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from compute.errors import ComputeError, InsufficientFunds
from compute.market.demand import MatchRequest
from compute.market.group_commit import GroupCommit, Ticket
from compute.market.index import NoMatch, ProvisionIndex, Slot
from compute.market.leases import LeaseOut, lease_message
from compute.market.pricing import compute_units, cost, platform_fee
from compute.market.proofs import lease_proofs
from compute.models import Lease, LedgerAccount, LedgerEntry, LedgerTx, Provision, aware
from compute.receipts import Domain, sign_batch
from compute.signer import platform_account
from cxmpute.errors import Conflict

MAX_ATTEMPTS = 16
MAX_BATCH = 256
# Deadlock and serialization failures: the batch is rerun whole.
TRANSIENT = {"40P01", "40001"}
RERUNS = 3

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
ENSURE_ACCOUNTS = {
    "sqlite": sqlite_insert(ACCOUNTS).on_conflict_do_nothing(),
    "postgresql": pg_insert(ACCOUNTS).on_conflict_do_nothing(),
}
SET_FREE = (
    update(PROVISIONS)
    .where(_p.id == bindparam("b_id"))
    .values(
        free_cpu=bindparam("b_cpu"),
        free_memory_mb=bindparam("b_memory"),
        free_gpu=bindparam("b_gpu"),
        free_disk_gb=bindparam("b_disk"),
        updated_at=bindparam("b_stamp"),
    )
)
ADD_BALANCE = update(ACCOUNTS).where(_a.id == bindparam("b_id")).values(balance=_a.balance + bindparam("b_delta"))
# Inserts are inline: no generated key is read back (a batch of one would otherwise ask for it), so no write
# waits for another's answer. An escrow account is found by its lease rather than by its returned id.
INSERT_LEASES = insert(LEASES).inline()
INSERT_PROOFS = insert(lease_proofs).inline()
OPEN_ESCROWS = insert(ACCOUNTS).inline()
INSERT_TXS = insert(LedgerTx.__table__).inline()
INSERT_ENTRIES = insert(LedgerEntry.__table__).inline()
INSERT_ESCROW_ENTRIES = (
    insert(LedgerEntry.__table__)
    .inline()
    .values(
        tx_id=bindparam("b_tx"),
        amount=bindparam("b_amount"),
        account_id=select(_a.id).where(_a.kind == "escrow", _a.owner == bindparam("b_lease")).scalar_subquery(),
    )
)


class NoMatchError(ComputeError, Conflict):
    def __init__(self, explanation: NoMatch):
        super().__init__(f"no provision matches: {explanation.message}", field="price_max_gwei")
        self.explanation = explanation

    def body(self) -> dict:
        return {**super().body(), "no_match": self.explanation.model_dump()}


@dataclass(eq=False)
class _Ticket(Ticket):
    """One caller's request, waiting in the queue or in a batch; its result is the lease."""

    user: str
    req: MatchRequest
    attempts: int = 0


@dataclass(eq=False)
class _Plan:
    """A ticket matched to a provision, with the lease it opens if the database agrees."""

    ticket: _Ticket
    slot: Slot
    end_ts: float
    amount: int  # what the user pays now: the escrow, or the first rental term
    lease: LeaseOut
    accepted: bool = False
    error: BaseException | None = None  # refused for a reason a retry does not change


@dataclass
class _Locked:
    """What the transaction locked and read, and the capacity and balances as its writes leave them."""

    offers: dict[str, tuple[str, int, float, str]] = field(default_factory=dict)  # id -> status, price, until, group
    free: dict[str, list[int]] = field(default_factory=dict)  # id -> [cpu, memory_mb, gpu, disk_gb]
    members: dict[str, list[str]] = field(default_factory=dict)  # capacity group -> provision ids
    touched: set[str] = field(default_factory=set)
    accounts: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (kind, owner) -> [id, balance]


class Placer(GroupCommit[_Ticket]):
    """The placement writer of one market."""

    max_batch = MAX_BATCH

    def __init__(
        self,
        engine: Engine,
        domain: Domain,
        index: ProvisionIndex,
        refresh: Callable[[str], None],
        publish: threading.Lock,
    ):
        super().__init__()
        self.engine = engine
        self.domain = domain
        self.signer = platform_account()  # resolved once: it reads the key from the settings' store
        self.index = index
        self.refresh = refresh
        # Held from a batch's commit until the index shows it, and by the market's syncs, so a sync that read
        # the database before the commit never overwrites what the batch wrote into the index.
        self.publish = publish
        # The writer's connection, passed on with the writer's role and given back to the pool when no request
        # waits: checking one out for each batch costs a round trip to test it.
        self._conn: Connection | None = None
        # While a batch holds capacity in the index that the database has not yet confirmed, a reader that finds
        # nothing free may be seeing a hold the database is about to refuse and give back.
        self._settled = threading.Condition()
        self._holding = 0  # batches written so far that held capacity; odd while one holds it

    def settle(self, timeout: float) -> bool:
        """Wait until the batch holding capacity now (if any) is committed or refused; True when one was."""
        with self._settled:
            if self._holding % 2 == 0:
                return False
            started = self._holding
            return self._settled.wait_for(lambda: self._holding != started, timeout)

    def place(self, user: str, req: MatchRequest) -> LeaseOut:
        ticket = self.submit(_Ticket(user, req))
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def idle(self) -> None:
        idle, self._conn = self._conn, None
        if idle is not None:
            idle.close()

    def write(self, batch: list[_Ticket]) -> None:
        with self._settled:
            self._holding += 1
        try:
            self._write(batch)
        finally:
            with self._settled:
                self._holding += 1
                self._settled.notify_all()

    def _write(self, batch: list[_Ticket]) -> None:
        now = time.time()
        plans: list[_Plan] = []
        for ticket in batch:
            slot = self.index.best(ticket.req, now)
            if slot is None:
                # With capacity held for this batch's earlier requests, "nothing fits" may not last: such a
                # request waits for the next batch, when this one's refusals have given their capacity back.
                if not plans:
                    ticket.finish(error=NoMatchError(self.index.scan(ticket.req, now)[1]))
                continue
            self.index.reserve(slot.id, ticket.req.resources)
            plans.append(_plan(ticket, slot, now))
        if not plans:
            return
        for plan, receipt in zip(
            plans, sign_batch(self.domain, "Lease", [lease_message(p.lease) for p in plans], self.signer)
        ):
            plan.lease.signature, plan.lease.receipt_proof = receipt.signature, receipt.proof
        try:
            self._commit(plans)
        except BaseException:
            self._reload(plans)
            raise
        for plan in plans:
            ticket = plan.ticket
            if plan.accepted:
                ticket.finish(result=plan.lease)
            elif plan.error is not None:
                ticket.finish(error=plan.error)
            else:  # stale: the index had it wrong
                self.refresh(plan.slot.id)
                ticket.attempts += 1
                if ticket.attempts >= MAX_ATTEMPTS:
                    ticket.finish(error=Conflict("capacity is being contended; retry the request", field="resources"))

    def _commit(self, plans: list[_Plan]) -> None:
        for rerun in range(RERUNS + 1):
            conn, self._conn = self._conn or self.engine.connect(), None
            try:
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock up front, as Store.write takes it
                locked = _decide(conn, plans)
                accepted = [plan for plan in plans if plan.accepted]
                if accepted:
                    with _pipelined(conn):
                        _write_capacity(conn, locked)
                        _write_leases(conn, accepted)
                        _write_ledger(conn, accepted, locked.accounts)
                with self.publish:
                    conn.commit()
                    # Every row read under lock, as the commit leaves it: this also gives back what the index
                    # reserved for requests the database refused.
                    for slot_id, free in locked.free.items():
                        self.index.set_free(slot_id, *free)
                self._conn = conn
                return
            except BaseException as exc:
                conn.close()  # rolled back, and returned to the pool (which drops it if it broke)
                # Errors from a pipeline come from the driver itself, not wrapped by SQLAlchemy.
                cause = exc.orig if isinstance(exc, DBAPIError) else exc
                if rerun == RERUNS or getattr(cause, "sqlstate", None) not in TRANSIENT:
                    raise

    def _reload(self, plans: Iterable[_Plan]) -> None:
        """After a failed write: put the index back to what the database holds, without this batch's holds."""
        for slot_id in {m for plan in plans for m in self.index.group_of(plan.slot.id)}:
            self.refresh(slot_id)


def _pipelined(conn: Connection) -> AbstractContextManager:
    """On PostgreSQL, send the batch's writes without waiting for each one's answer: none needs another's."""
    if conn.dialect.name == "postgresql":
        return conn.connection.driver_connection.pipeline()
    return nullcontext()


def _plan(ticket: _Ticket, slot: Slot, now: float) -> _Plan:
    req, r = ticket.req, ticket.req.resources
    units = compute_units(r.cpu, r.memory_mb, r.gpu_count)
    amount = cost(slot.price, units, req.span_s)
    metered = req.term == "seconds"
    started = datetime.fromtimestamp(now, tz=UTC)
    lease = LeaseOut(
        id=str(uuid.uuid4()),
        user=ticket.user,
        provider=slot.provider,
        provision_id=slot.id,
        kind=req.kind,
        cpu=r.cpu,
        memory_mb=r.memory_mb,
        gpu_count=r.gpu_count,
        disk_gb=r.disk_gb,
        compute_units=units,
        price_gwei=slot.price,
        term=req.term,
        duration_s=req.span_s,
        model=req.model,
        image=req.image,
        auto_renew=req.auto_renew and not metered,
        renewals=0,
        escrow_gwei=amount if metered else 0,
        escrow_left_gwei=amount if metered else 0,
        metered_s=0,
        paid_gwei=0 if metered else amount,
        status="active",
        end_reason=None,
        started_at=started,
        expires_at=started + timedelta(seconds=req.span_s),
        ended_at=None,
        signature="",
    )
    return _Plan(ticket, slot, now + req.span_s, amount, lease)


def _decide(conn: Connection, plans: list[_Plan]) -> _Locked:
    """Lock what the batch needs and accept, in order, each placement the locked rows can honour."""
    locked = _Locked()
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


def _lock_accounts(conn: Connection, plans: list[_Plan]) -> dict[tuple[str, str], list[int]]:
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


def _write_capacity(conn: Connection, locked: _Locked) -> None:
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


def _write_leases(conn: Connection, accepted: list[_Plan]) -> None:
    conn.execute(INSERT_LEASES, [{name: getattr(plan.lease, name) for name in LEASE_COLUMNS} for plan in accepted])
    proofs = [
        {"lease_id": plan.lease.id, "renewal": 0, "proof": plan.lease.receipt_proof}
        for plan in accepted
        if plan.lease.receipt_proof
    ]
    if proofs:
        conn.execute(INSERT_PROOFS, proofs)


def _write_ledger(conn: Connection, accepted: list[_Plan], accounts: dict[tuple[str, str], list[int]]) -> None:
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
