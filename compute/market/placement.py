"""Group commit of placements: concurrent requests share one transaction and one receipt signature.

Callers queue their requests (:mod:`compute.market.group_commit`). The writer takes everything queued, matches it
in order against the index (each match reserving there, so later requests see a fuller market), signs the
batch's lease receipts with one signature over their Merkle root, and writes the batch in a single transaction
(:mod:`compute.market.placement_batch`); a lone caller writes its own placement at once, and callers that arrive
during a write are committed together by the next one.

A batch PostgreSQL still picks as a deadlock victim is rerun whole. A placement whose provision no longer holds
what the index said (another process took it, or its owner changed it) goes back to the queue against the
refreshed index, until MAX_ATTEMPTS.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from compute.errors import ComputeError
from compute.market.demand import MatchRequest
from compute.market.group_commit import GroupCommit
from compute.market.index import NoMatch, ProvisionIndex, Slot
from compute.market.leases import LeaseOut, lease_message
from compute.market.placement_batch import (
    PlacementTicket,
    Plan,
    decide,
    write_capacity,
    write_leases,
    write_ledger,
)
from compute.market.pricing import compute_units, cost
from compute.receipts import Domain, sign_batch
from compute.signer import platform_account
from cxmpute.errors import Conflict

MAX_ATTEMPTS = 16
MAX_BATCH = 256
# Deadlock and serialization failures: the batch is rerun whole.
TRANSIENT = {"40P01", "40001"}
RERUNS = 3


class NoMatchError(ComputeError, Conflict):
    def __init__(self, explanation: NoMatch):
        super().__init__(f"no provision matches: {explanation.message}", field="price_max_gwei")
        self.explanation = explanation

    def body(self) -> dict:
        return {**super().body(), "no_match": self.explanation.model_dump()}


class Placer(GroupCommit[PlacementTicket]):
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

    def place(
        self, user: str, req: MatchRequest, extra: Callable[[Connection, LeaseOut], None] | None = None
    ) -> LeaseOut:
        ticket = self.submit(PlacementTicket(user, req, extra))
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def idle(self) -> None:
        idle, self._conn = self._conn, None
        if idle is not None:
            idle.close()

    def write(self, batch: list[PlacementTicket]) -> None:
        with self._settled:
            self._holding += 1
        try:
            self._write(batch)
        finally:
            with self._settled:
                self._holding += 1
                self._settled.notify_all()

    def _write(self, batch: list[PlacementTicket]) -> None:
        now = time.time()
        plans: list[Plan] = []
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

    def _commit(self, plans: list[Plan]) -> None:
        for rerun in range(RERUNS + 1):
            conn, self._conn = self._conn or self.engine.connect(), None
            try:
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock up front, as Store.write takes it
                locked = decide(conn, plans)
                accepted = [plan for plan in plans if plan.accepted]
                if accepted:
                    with _pipelined(conn):
                        write_capacity(conn, locked)
                        write_leases(conn, accepted)
                        write_ledger(conn, accepted, locked.accounts)
                    # Out of the pipeline: an extra write may read what its statement did.
                    for plan in accepted:
                        if plan.ticket.extra is not None:
                            plan.ticket.extra(conn, plan.lease)
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

    def _reload(self, plans: Iterable[Plan]) -> None:
        """After a failed write: put the index back to what the database holds, without this batch's holds."""
        for slot_id in {m for plan in plans for m in self.index.group_of(plan.slot.id)}:
            self.refresh(slot_id)


def _pipelined(conn: Connection) -> AbstractContextManager:
    """On PostgreSQL, send the batch's writes without waiting for each one's answer: none needs another's."""
    if conn.dialect.name == "postgresql":
        return conn.connection.driver_connection.pipeline()
    return nullcontext()


def _plan(ticket: PlacementTicket, slot: Slot, now: float) -> Plan:
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
    return Plan(ticket, slot, now + req.span_s, amount, lease)
