"""Dxtabase: a SQL database per owner (an SQLite file, or a PostgreSQL schema and role)."""
