"""sign-in nonces remember the client they were issued to, so each client holds only a few at once

Revision ID: c0004_nonce_clients
Revises: c0003
"""

import sqlalchemy as sa
from alembic import op

revision = "c0004_nonce_clients"
down_revision = "c0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Outstanding nonces were issued to nobody in particular; they expire within the TTL anyway.
    op.execute("DELETE FROM cx_auth_nonces")
    with op.batch_alter_table("cx_auth_nonces") as batch:
        batch.add_column(sa.Column("client", sa.String(64), nullable=False, server_default=""))
    op.create_index("ix_cx_auth_nonces_client", "cx_auth_nonces", ["client"])
    op.create_index("ix_cx_auth_nonces_expires_at", "cx_auth_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_cx_auth_nonces_expires_at", "cx_auth_nonces")
    op.drop_index("ix_cx_auth_nonces_client", "cx_auth_nonces")
    with op.batch_alter_table("cx_auth_nonces") as batch:
        batch.drop_column("client")
