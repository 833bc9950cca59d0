"""Workflows: the document spec, validation, compilation to Prefect flows, templates and run history."""

import cxmpute  # noqa: F401  (environment defaults must be set before Prefect is imported)
