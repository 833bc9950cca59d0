"""Alembic revisions of the compute network's tables (branch ``compute``)."""
