"""Where lease receipts signed in a batch keep their Merkle proofs (see :mod:`compute.receipts`).

A lease signed alone has no row: its proof is empty. A row holds the proof of one renewal of the lease;
a later renewal is signed alone, so a row whose renewal is not the lease's current one no longer applies.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import JSON, Column, ForeignKey, Integer, String, Table, select
from sqlalchemy.orm import Session

from cxmpute.db import Base

lease_proofs = Table(
    "cx_lease_proofs",
    Base.metadata,
    Column("lease_id", String(36), ForeignKey("cx_leases.id"), primary_key=True),
    Column("renewal", Integer, nullable=False),
    Column("proof", JSON, nullable=False),
)


def proofs_of(session: Session, leases: Iterable[tuple[str, int]]) -> dict[str, list[str]]:
    """The current proof of each ``(lease id, renewal)``; leases signed alone are left out."""
    wanted = dict(leases)
    if not wanted:
        return {}
    rows = session.execute(
        select(lease_proofs.c.lease_id, lease_proofs.c.renewal, lease_proofs.c.proof).where(
            lease_proofs.c.lease_id.in_(wanted)
        )
    )
    return {lease_id: list(proof) for lease_id, renewal, proof in rows if wanted[lease_id] == renewal}
