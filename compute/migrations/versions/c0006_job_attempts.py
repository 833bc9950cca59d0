"""each attempt of a piece of work is recorded once: two dispatchers placing it at once cannot both bill it

Revision ID: c0006_job_attempts
Revises: c0005_lease_proofs
"""

import sqlalchemy as sa
from alembic import op

revision = "c0006_job_attempts"
down_revision = "c0005_lease_proofs"
branch_labels = None
depends_on = None

jobs = sa.table(
    "cx_jobs",
    sa.column("id", sa.String),
    sa.column("work_key", sa.String),
    sa.column("attempt", sa.Integer),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    # The race this index closes may already have left twin attempts. Every row stays (each holds a lease, and
    # perhaps a payment): the oldest twin keeps its number, the others move past the work's highest attempt.
    conn = op.get_bind()
    twins = (
        conn.execute(
            sa.select(jobs.c.work_key).group_by(jobs.c.work_key, jobs.c.attempt).having(sa.func.count() > 1).distinct()
        )
        .scalars()
        .all()
    )
    for work_key in twins:
        rows = conn.execute(
            sa.select(jobs.c.id, jobs.c.attempt)
            .where(jobs.c.work_key == work_key)
            .order_by(jobs.c.created_at, jobs.c.id)
        ).all()
        seen: set[int] = set()
        highest = max(attempt for _, attempt in rows)
        for job_id, attempt in rows:
            if attempt in seen:
                highest += 1
                conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(attempt=highest))
            seen.add(attempt)
    op.create_index("uq_cx_jobs_work_key_attempt", "cx_jobs", ["work_key", "attempt"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_cx_jobs_work_key_attempt", "cx_jobs")
