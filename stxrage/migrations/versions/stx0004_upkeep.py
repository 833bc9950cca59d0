"""stxrage: the storage upkeep's holder, so platform replicas run it one at a time

Revision ID: stx0004
Revises: stx0003
"""

import sqlalchemy as sa
from alembic import op

revision = "stx0004"
down_revision = "stx0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stxrage_upkeep",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("until_ts", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stxrage_upkeep")
