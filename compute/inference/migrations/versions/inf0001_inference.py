"""inference: provider endpoints, gateway request records, the model archive

Revision ID: inf0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "inf0001"
down_revision = None
branch_labels = ("inference",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inference_endpoints",
        sa.Column("provision_id", sa.String(36), primary_key=True),
        sa.Column("provider", sa.String(42), nullable=False, index=True),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("api_key", sa.String(200), nullable=True),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("suspended", sa.Boolean, nullable=False),
        sa.Column("paused_provision", sa.Boolean, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("registered_at", TS, nullable=False),
    )
    op.create_table(
        "inference_requests",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user", sa.String(42), nullable=False, index=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("lease_id", sa.String(36), nullable=True, index=True),
        sa.Column("provision_id", sa.String(36), nullable=True),
        sa.Column("provider", sa.String(42), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("seconds", sa.Integer, nullable=False),
        sa.Column("amount_gwei", sa.BigInteger, nullable=False),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("created_at", TS, nullable=False, index=True),
    )
    op.create_table(
        "inference_archive",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("cid", sa.String(120), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("files", sa.Integer, nullable=False),
        sa.Column("pushed_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("inference_archive")
    op.drop_table("inference_requests")
    op.drop_table("inference_endpoints")
