"""Alembic revisions of container services' tables (branch ``services``)."""
