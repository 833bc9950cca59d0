"""the durable run queue: each recorded run carries what an executor needs to run it, its claim, the Prefect
flow run it became, and the executors' heartbeats

Revision ID: f0003
Revises: f0002
"""

import sqlalchemy as sa
from alembic import op

revision = "f0003"
down_revision = "f0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workflow_runs") as batch:
        # Runs recorded before the queue existed were executed by the API process: they are settled.
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="done"))
        batch.add_column(sa.Column("parameters", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("executor", sa.String(128), nullable=True))
        batch.add_column(sa.Column("claimed_until", sa.Float(), nullable=True))
        batch.add_column(sa.Column("claims", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
        # The Prefect flow run an executor created for it (runs recorded before had the flow run's own id).
        batch.add_column(sa.Column("flow_run_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))
        batch.create_index("ix_workflow_runs_status", ["status", "created_at"])
    op.create_table(
        "run_executors",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_executors")
    with op.batch_alter_table("workflow_runs") as batch:
        batch.drop_index("ix_workflow_runs_status")
        for column in (
            "tags",
            "flow_run_id",
            "finished_at",
            "claims",
            "claimed_until",
            "executor",
            "parameters",
            "status",
        ):
            batch.drop_column(column)
