"""Workflows: the document spec, validation, compilation to Prefect flows, templates and run history."""
