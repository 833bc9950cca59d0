"""provisions of one machine share its capacity: capacity groups

Revision ID: c0003
Revises: c0002
"""

import sqlalchemy as sa
from alembic import op

revision = "c0003"
down_revision = "c0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cx_provisions") as batch:
        batch.add_column(sa.Column("capacity_group", sa.String(36), nullable=True))
    # Every provision published so far is a group of its own.
    op.execute("UPDATE cx_provisions SET capacity_group = id")
    op.create_index("ix_cx_provisions_capacity_group", "cx_provisions", ["capacity_group"])


def downgrade() -> None:
    op.drop_index("ix_cx_provisions_capacity_group", "cx_provisions")
    with op.batch_alter_table("cx_provisions") as batch:
        batch.drop_column("capacity_group")
