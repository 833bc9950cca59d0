"""stxrage: node credentials and registration times; files are the owner's unless made public

Files stored before this revision become readable by their owner only (they were readable by anyone who
knew the CID); their owners publish the ones meant to be shared. Remote storage nodes registered before it
have no credential, so the platform cannot call them until the operator registers them again with theirs.

Revision ID: stx0003
Revises: stx0002
"""

import sqlalchemy as sa
from alembic import op

revision = "stx0003"
down_revision = "stx0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stxrage_nodes") as batch:
        batch.add_column(sa.Column("credential", sa.String(200), nullable=True))
        batch.add_column(sa.Column("registered_ts", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("stxrage_files") as batch:
        batch.add_column(sa.Column("public", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("stxrage_files") as batch:
        batch.drop_column("public")
    with op.batch_alter_table("stxrage_nodes") as batch:
        batch.drop_column("registered_ts")
        batch.drop_column("credential")
