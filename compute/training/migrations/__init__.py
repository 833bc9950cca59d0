"""Alembic revisions of training jobs' tables (branch ``training``)."""
