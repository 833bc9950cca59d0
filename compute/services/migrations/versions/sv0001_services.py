"""services: container services and their replicas

Revision ID: sv0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "sv0001"
down_revision = None
branch_labels = ("services",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("image", sa.String(120), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("env", sa.JSON, nullable=False),
        sa.Column("cpu", sa.Integer, nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("pids", sa.Integer, nullable=False),
        sa.Column("min_replicas", sa.Integer, nullable=False),
        sa.Column("max_replicas", sa.Integer, nullable=False),
        sa.Column("target_inflight", sa.Integer, nullable=False),
        sa.Column("price_min_gwei", sa.BigInteger, nullable=False),
        sa.Column("price_max_gwei", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("deleted_at", TS, nullable=True),
    )
    op.create_index("ix_services_owner", "services", ["owner"])
    op.create_table(
        "service_replicas",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("service_id", sa.String(36), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(42), nullable=True),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("lease_id", sa.String(36), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("host_port", sa.Integer, nullable=True),
        sa.Column("restarts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("logs", sa.Text, nullable=False),
        sa.Column("beat_ts", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
    )
    op.create_index("ix_service_replicas_service_id", "service_replicas", ["service_id"])


def downgrade() -> None:
    op.drop_index("ix_service_replicas_service_id", "service_replicas")
    op.drop_table("service_replicas")
    op.drop_index("ix_services_owner", "services")
    op.drop_table("services")
