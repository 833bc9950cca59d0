"""stxrage catalog: nodes, blocks, fragments, manifests, refs, files

Revision ID: stx0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "stx0001"
down_revision = None
branch_labels = ("stxrage",)
depends_on = None

CID = sa.String(120)


def upgrade() -> None:
    op.create_table(
        "stxrage_nodes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("url", sa.String(500), nullable=False, unique=True),
        sa.Column("capacity_bytes", sa.BigInteger, nullable=False),
        sa.Column("price_per_gb_month", sa.Float, nullable=False),
        sa.Column("provider", sa.String(42), nullable=True, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("audit_failures", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "stxrage_blocks",
        sa.Column("cid", CID, primary_key=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
    )
    op.create_table(
        "stxrage_fragments",
        sa.Column("block_cid", CID, sa.ForeignKey("stxrage_blocks.cid", ondelete="CASCADE"), primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("fragment_cid", CID, nullable=False),
        sa.Column("node_id", sa.String(64), sa.ForeignKey("stxrage_nodes.id"), nullable=False, index=True),
        sa.Column("healthy", sa.Boolean, nullable=False),
    )
    op.create_table(
        "stxrage_manifests",
        sa.Column("cid", CID, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("private", sa.Boolean, nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
    )
    op.create_table(
        "stxrage_refs",
        sa.Column("manifest_cid", CID, primary_key=True),
        sa.Column("block_cid", CID, primary_key=True, index=True),
    )
    op.create_table(
        "stxrage_files",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("cid", CID, sa.ForeignKey("stxrage_manifests.cid"), primary_key=True, index=True),
        sa.Column("name", sa.String(500), nullable=True),
        sa.Column("private", sa.Boolean, nullable=False),
        sa.Column("pinned", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "stxrage_files",
        "stxrage_refs",
        "stxrage_manifests",
        "stxrage_fragments",
        "stxrage_blocks",
        "stxrage_nodes",
    ):
        op.drop_table(table)
