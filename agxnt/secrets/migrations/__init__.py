"""Alembic revisions for the secrets table (registered under ``cxmpute.migrations``)."""
