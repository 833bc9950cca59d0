"""Matching requests to provisions, and turning each match into a lease atomically.

The index proposes the best provision; the database confirms it under lock, in the same transaction that
holds the escrow and writes the lease (:mod:`compute.market.placement`, which commits concurrent
placements together). Two concurrent requests can therefore never get the same capacity, in one process
or many; a lost race refreshes that provision from the database and tries the next best.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import Connection, select

from compute.market import closing, leases
from compute.market.closing import Closed, Closing
from compute.market.demand import MatchRequest
from compute.market.follow import follow
from compute.market.index import NoMatch, ProvisionIndex, Slot
from compute.market.placement import NoMatchError, Placer
from compute.market.pricing import compute_units, cost
from compute.models import Provider, Provision, utcnow
from compute.receipts import Domain
from compute.store import Store
from cxmpute.db import get_engine
from cxmpute.errors import CxmputeError

__all__ = ["Market", "NoMatchError", "Quote", "Sweep"]

SYNC_EVERY_S = 2.0
SYNC_OVERLAP = timedelta(seconds=60)
SETTLE_WAIT_S = 5.0  # a quote that finds nothing waits at most this long for a placement in flight to settle


class Quote(BaseModel):
    matched: bool
    provision_id: str | None = None
    provider: str | None = None
    price_gwei: int | None = None
    compute_units: int
    estimated_cost_gwei: int | None = None
    no_match: NoMatch | None = None


class Sweep(BaseModel):
    expired: list[str]
    lost: list[str]


class Market:
    def __init__(self, store: Store, domain: Domain):
        self.store = store
        self.domain = domain
        self.index = ProvisionIndex()
        self._synced_at: datetime | None = None
        self._last_sync = 0.0
        self._publish = threading.Lock()
        self._engine = get_engine(store.url)
        self._placer = Placer(self._engine, domain, self.index, self.refresh, self._publish)
        follow(self._engine, self)

    def sync(self, force: bool = False) -> None:
        """Load provisions changed since the last sync (all of them the first time)."""
        if not force and time.monotonic() - self._last_sync < SYNC_EVERY_S:
            return
        with self._publish, self.store.read() as session:
            if not force and time.monotonic() - self._last_sync < SYNC_EVERY_S:
                return  # another caller synced while this one waited
            started = utcnow()
            stmt = select(Provision, Provider.reputation).join(Provider, Provider.address == Provision.provider)
            if self._synced_at is not None:
                # A row stamped before the last sync may commit after it; the overlap re-reads such rows.
                stmt = stmt.where(Provision.updated_at >= self._synced_at - SYNC_OVERLAP)
            for row, rep in session.execute(stmt):
                self.index.upsert(Slot.from_row(row, rep))
            self._synced_at, self._last_sync = started, time.monotonic()

    def refresh(self, provision_id: str) -> None:
        with self.store.read() as session:
            found = session.execute(
                select(Provision, Provider.reputation)
                .join(Provider, Provider.address == Provision.provider)
                .where(Provision.id == provision_id)
            ).first()
        if found is None:
            self.index.remove(provision_id)
        else:
            self.index.upsert(Slot.from_row(*found))

    def refresh_provider(self, provider: str) -> None:
        with self.store.read() as session:
            ids = session.scalars(select(Provision.id).where(Provision.provider == provider)).all()
        for provision_id in ids:
            self.refresh(provision_id)

    def quote(self, req: MatchRequest) -> Quote:
        self.sync()
        units = compute_units(req.resources.cpu, req.resources.memory_mb, req.resources.gpu_count)
        slot = self.index.best(req, time.time())
        if slot is None and self._placer.settle(timeout=SETTLE_WAIT_S):
            slot = self.index.best(req, time.time())  # what a placement held and the database refused is back
        if slot is None:
            return Quote(matched=False, compute_units=units, no_match=self.index.scan(req, time.time())[1])
        return Quote(
            matched=True,
            provision_id=slot.id,
            provider=slot.provider,
            price_gwei=slot.price,
            compute_units=units,
            estimated_cost_gwei=cost(slot.price, units, req.span_s),
        )

    def place(
        self, user: str, req: MatchRequest, extra: Callable[[Connection, leases.LeaseOut], None] | None = None
    ) -> leases.LeaseOut:
        """Reserve the best provision for ``user`` and open a lease, or raise with the reason. ``extra`` writes
        what belongs with the lease, in the same transaction (it may be called again if the batch is rerun)."""
        self.sync()
        return self._placer.place(user, req, extra)

    def close(
        self, closings: list[Closing], extra: Callable[[Connection, list[Closed | CxmputeError]], None] | None = None
    ) -> list[Closed | CxmputeError]:
        """Bill and end metered leases together (:mod:`compute.market.closing`); one outcome per closing, in
        order. ``extra`` writes, knowing the outcomes, in the same transaction. The capacity the closings free is
        in the index when this returns."""
        with self._engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock up front, as Store.write takes it
            batch = closing.close(conn, self.domain, closings)
            if extra is not None:
                extra(conn, batch.outcomes)
            with self._publish:  # no sync that read before this commit overwrites what it frees
                conn.commit()
                self._show_free(batch.free)
        return batch.outcomes

    def show_free(self, free: dict[str, list[int]]) -> None:
        """Put committed free capacity (:attr:`compute.market.closing.Batch.free`) in the index."""
        with self._publish:
            self._show_free(free)

    def _show_free(self, free: dict[str, list[int]]) -> None:
        for slot_id, values in free.items():
            self.index.set_free(slot_id, *values)

    def end(self, lease_id: str, reason: leases.EndReason, caller: str | None) -> leases.LeaseOut:
        return leases.end(self.store, lease_id, reason, caller)

    def sweep(self) -> Sweep:
        """Renew or expire leases past their term and end those of providers that went silent."""
        report = Sweep(expired=leases.expire_due(self.store, self.domain), lost=leases.reap_lost(self.store))
        self.sync(force=True)
        return report
