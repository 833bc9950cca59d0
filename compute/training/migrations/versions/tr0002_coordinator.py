"""training: which platform process coordinates each job, and when it last said so

Revision ID: tr0002
Revises: tr0001
"""

import sqlalchemy as sa
from alembic import op

revision = "tr0002"
down_revision = "tr0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("coordinator", sa.String(64), nullable=True))
        batch.add_column(sa.Column("coordinator_ts", sa.Float, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("coordinator_ts")
        batch.drop_column("coordinator")
