"""Alembic revisions of inference serving's tables (branch ``inference``)."""
