"""The statements every batch writer of the market (placements, closings) runs, built once: building a
statement costs more than SQLite takes to run it."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from compute.models import LedgerAccount, LedgerEntry, LedgerTx, Provision

_p, _a = Provision.__table__.c, LedgerAccount.__table__.c

ENSURE_ACCOUNTS = {
    "sqlite": sqlite_insert(LedgerAccount.__table__).on_conflict_do_nothing(),
    "postgresql": pg_insert(LedgerAccount.__table__).on_conflict_do_nothing(),
}
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
ADD_BALANCE = (
    update(LedgerAccount.__table__).where(_a.id == bindparam("b_id")).values(balance=_a.balance + bindparam("b_delta"))
)
# Inserts are inline: no generated key is read back (a batch of one would otherwise ask for it), so no write
# waits for another's answer.
INSERT_TXS = insert(LedgerTx.__table__).inline()
INSERT_ENTRIES = insert(LedgerEntry.__table__).inline()
