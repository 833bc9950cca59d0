"""functions: deployed functions, their versions, and every invocation

Revision ID: fn0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "fn0001"
down_revision = None
branch_labels = ("functions",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "function_versions",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("cid", sa.String(120), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("handler", sa.String(200), nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("timeout_s", sa.Float, nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("price_max_gwei", sa.BigInteger, nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "function_invocations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("where", sa.String(42), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("error_status", sa.Integer, nullable=True),
        sa.Column("cold", sa.Boolean, nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=True),
        sa.Column("billed_ms", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=True),
        sa.Column("queued_ms", sa.Float, nullable=True),
        sa.Column("max_rss_mb", sa.Float, nullable=True),
        sa.Column("cost_gwei", sa.BigInteger, nullable=False),
        sa.Column("stdout", sa.Text, nullable=False),
        sa.Column("stderr", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_index(
        "ix_function_invocations_owner_name_created", "function_invocations", ["owner", "name", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_function_invocations_owner_name_created", "function_invocations")
    op.drop_table("function_invocations")
    op.drop_table("function_versions")
