"""Settling gateway requests: exactly once each, concurrent ones in one shared transaction.

A request's settlement meters its seconds (ledger key ``inference:<request id>``), ends its lease and writes
its record in one transaction, so it happens wholly or not at all: a crash before the commit leaves the lease
active (its escrow returns to the caller when it expires) and nothing billed; settling a request again bills
nothing twice.

Settlements are group-committed, as placements are (:mod:`compute.market.placement`): a caller that finds no
writer at work becomes the writer and commits everything queued in one transaction
(:meth:`compute.market.matching.Market.close`: each closing decided against the locked rows before anything is
written, so one refusal undoes no other), then hands the role to the next queued caller. A lone request commits
at once; requests that finish while a batch is being written share the next commit, so under load each pays
a fraction of one commit rather than one per step (meter, end, record).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from compute.inference.models import RequestRecord
from compute.market.closing import Closed, Closing
from compute.market.group_commit import GroupCommit, Ticket
from compute.network import Network
from cxmpute.errors import CxmputeError

MAX_BATCH = 256
RECORD_COLUMNS = [column.name for column in RequestRecord.__table__.columns]


def _upsert(dialect_insert) -> object:
    """Write a record, replacing it when its request is settled again (as the ORM's merge would)."""
    stmt = dialect_insert(RequestRecord.__table__)
    return stmt.on_conflict_do_update(
        index_elements=["id"], set_={c: stmt.excluded[c] for c in RECORD_COLUMNS if c != "id"}
    )


WRITE_RECORDS = {"sqlite": _upsert(sqlite_insert), "postgresql": _upsert(pg_insert)}


@dataclass(eq=False)
class _Ticket(Ticket):
    """One request's record, waiting to be written with its lease's settlement."""

    record: RequestRecord


class Settler(GroupCommit[_Ticket]):
    """The settlement writer of one network."""

    max_batch = MAX_BATCH

    def __init__(self, net: Network):
        super().__init__()
        # the network's parts, not the network: it keys this writer weakly in ``_settlers``
        self.market = net.market

    def settle(self, record: RequestRecord) -> RequestRecord:
        """Bill ``record.seconds`` of its lease (none for a rental's request), end the lease and write the record;
        blocks until committed. A lease the platform can no longer bill (e.g. the sweeper ended it after its
        escrowed span) is recorded with the reason in ``error`` and billed nothing."""
        ticket = self.submit(_Ticket(record))
        if ticket.error is not None:
            raise ticket.error
        return record

    def write(self, batch: list[_Ticket]) -> None:
        try:
            self._commit(batch)
        except DBAPIError:
            # e.g. PostgreSQL chose this batch as a deadlock victim against another API's: each alone instead
            for ticket in batch:
                self._commit_alone(ticket)
        for ticket in batch:
            if not ticket.done:
                ticket.finish()

    def _commit_alone(self, ticket: _Ticket) -> None:
        try:
            self._commit([ticket])
        except BaseException as exc:  # noqa: BLE001 - the caller gets the failure; the writer goes on
            ticket.finish(error=exc)

    def _commit(self, batch: list[_Ticket]) -> None:
        billed = [t.record for t in batch if t.record.lease_id is not None and t.record.provider is not None]

        def write_records(conn: Connection, outcomes: list[Closed | CxmputeError]) -> None:
            for record, outcome in zip(billed, outcomes):
                if isinstance(outcome, CxmputeError):
                    record.amount_gwei, record.error = 0, f"not settled: {outcome.message}"[:500]
                else:
                    record.amount_gwei = outcome.amount_gwei
            conn.execute(
                WRITE_RECORDS[conn.dialect.name], [{c: getattr(t.record, c) for c in RECORD_COLUMNS} for t in batch]
            )

        self.market.close(
            [Closing(r.lease_id, r.provider, r.seconds, f"inference:{r.id}") for r in billed], write_records
        )


_settlers: weakref.WeakKeyDictionary[Network, Settler] = weakref.WeakKeyDictionary()
_settlers_lock = threading.Lock()


def settler(net: Network) -> Settler:
    """The network's one settlement writer in this process."""
    with _settlers_lock:
        found = _settlers.get(net)
        if found is None:
            found = _settlers[net] = Settler(net)
        return found
