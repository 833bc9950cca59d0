"""services: public services, reachable by anyone through the gateway

Revision ID: sv0002
Revises: sv0001
"""

import sqlalchemy as sa
from alembic import op

revision = "sv0002"
down_revision = "sv0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("public", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.drop_column("public")
