"""memory threads: the ordered, append-only logs behind Sequential Memory

Revision ID: m0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "m0001"
down_revision = None
branch_labels = ("memory",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "memory_thread_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("thread", sa.String(100), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("owner", "thread", "seq", name="uq_memory_thread_seq"),
    )


def downgrade() -> None:
    op.drop_table("memory_thread_entries")
