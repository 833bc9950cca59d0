"""stxrage: manifests record whether they are a file or a directory archive

Revision ID: stx0002
Revises: stx0001
"""

import sqlalchemy as sa
from alembic import op

revision = "stx0002"
down_revision = "stx0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stxrage_manifests") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="file"))


def downgrade() -> None:
    with op.batch_alter_table("stxrage_manifests") as batch:
        batch.drop_column("kind")
