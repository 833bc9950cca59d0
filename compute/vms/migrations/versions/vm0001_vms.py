"""vms: users' virtual machines, their lease and snapshots

Revision ID: vm0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "vm0001"
down_revision = None
branch_labels = ("vms",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vms",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("vcpus", sa.Integer, nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("disk_mb", sa.Integer, nullable=False),
        sa.Column("image", sa.String(120), nullable=True),
        sa.Column("kernel", sa.String(120), nullable=True),
        sa.Column("initrd", sa.String(120), nullable=True),
        sa.Column("cmdline", sa.String(2048), nullable=False),
        sa.Column("ssh_key", sa.Text, nullable=False),
        sa.Column("accel", sa.String(8), nullable=False),
        sa.Column("lease_id", sa.String(36), nullable=False),
        sa.Column("provider", sa.String(42), nullable=False),
        sa.Column("segment", sa.Integer, nullable=False),
        sa.Column("running_since", TS, nullable=True),
        sa.Column("ssh_port", sa.Integer, nullable=True),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("segment_billed_s", sa.Integer, nullable=False),
        sa.Column("billed_s", sa.Integer, nullable=False),
        sa.Column("snapshots", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_vms_owner_created", "vms", ["owner", "created_at"])
    op.create_index("ix_vms_status", "vms", ["status"])


def downgrade() -> None:
    op.drop_table("vms")
