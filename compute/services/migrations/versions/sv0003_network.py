"""services: a service's replicas reach the internet only when it asks for network

Revision ID: sv0003
Revises: sv0002
"""

import sqlalchemy as sa
from alembic import op

revision = "sv0003"
down_revision = "sv0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("network", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.drop_column("network")
