"""Alembic revisions of virtual machines' tables (branch ``vms``)."""
