"""Alembic revisions of serverless functions' tables (branch ``functions``)."""
