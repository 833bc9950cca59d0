"""lease receipts signed in batches: each lease's Merkle proof up to its batch's signed root

Revision ID: c0005_lease_proofs
Revises: c0004_nonce_clients
"""

import sqlalchemy as sa
from alembic import op

revision = "c0005_lease_proofs"
down_revision = "c0004_nonce_clients"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Leases signed alone (all of them so far) need no row here: their proof is empty.
    op.create_table(
        "cx_lease_proofs",
        sa.Column("lease_id", sa.String(36), sa.ForeignKey("cx_leases.id"), primary_key=True),
        sa.Column("renewal", sa.Integer, nullable=False),
        sa.Column("proof", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cx_lease_proofs")
