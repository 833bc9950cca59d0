"""Cxmpute: the thin shell holding settings, logging and the root CLI."""

__version__ = "0.1.0"

from cxmpute.settings import apply_environment_defaults as _apply_environment_defaults  # noqa: E402

# Third-party libraries (Prefect, Chroma, transformers) read their environment at import time,
# so the defaults are applied as soon as any part of the platform is imported.
_apply_environment_defaults()
