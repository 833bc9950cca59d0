"""stxrage: manifests record whether they are a file or a directory archive

Revision ID: s0002
Revises: s0001
"""
import sqlalchemy as sa
from alembic import op

revision = "s0002"
down_revision = "s0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stxrage_manifests") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="file"))


def downgrade() -> None:
    with op.batch_alter_table("stxrage_manifests") as batch:
        batch.drop_column("kind")
